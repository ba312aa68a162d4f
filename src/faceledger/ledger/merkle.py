"""A Merkle tree with RFC 9162 hashing: roots, inclusion and consistency proofs.

Pure functions over a list of *leaf hashes* (make them with :func:`leaf_hash`)::

    leaf_hash(d)    = SHA-256(0x00 || d)
    node_hash(l, r) = SHA-256(0x01 || l || r)
    MTH([])         = SHA-256("")
    MTH([h])        = h
    MTH(D[n])       = node_hash(MTH(D[0:k]), MTH(D[k:n]))   k: the largest power of two < n

Proofs are made as RFC 9162 section 2.1.3.1 (``PATH``) and 2.1.4.1 (``SUBPROOF``) define
them and checked with the algorithms of sections 2.1.3.2 and 2.1.4.2, so they interoperate
with Certificate Transparency and C2SP tlog tooling. Indices are 0-based; sizes count
leaves. A verifier answers ``False`` for anything malformed (a wrong length, an index
past the tree); only a proof *request* that names no proof raises ``ValueError``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the tree of no leaves."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def leaf_hashes(leaves: Iterable[bytes]) -> list[bytes]:
    """The leaf hash of each leaf's bytes, in order."""
    return [leaf_hash(data) for data in leaves]


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2): where RFC 9162 splits a tree."""
    if n < 2:
        raise ValueError(f"a tree of {n} leaves does not split")
    return 1 << ((n - 1).bit_length() - 1)


def root(hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves whose hashes are ``hashes``."""
    return _root(hashes, 0, len(hashes)) if hashes else EMPTY_ROOT


def _root(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH of ``hashes[lo:hi]`` (hi > lo), without copying the list."""
    if hi - lo == 1:
        return hashes[lo]
    mid = lo + split(hi - lo)
    return node_hash(_root(hashes, lo, mid), _root(hashes, mid, hi))


def inclusion_proof(hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``hashes`` (RFC 9162 ``PATH``),
    from the leaf's sibling up to the root's child."""
    n = len(hashes)
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of {n} leaves")
    path: list[bytes] = []
    lo, hi = 0, n
    while hi - lo > 1:  # walk down; siblings are collected top first, then reversed
        mid = lo + split(hi - lo)
        if index < mid:
            path.append(_root(hashes, mid, hi))
            hi = mid
        else:
            path.append(_root(hashes, lo, mid))
            lo = mid
    return path[::-1]


def consistency_proof(hashes: Sequence[bytes], m: int) -> list[bytes]:
    """The proof that the tree of the first ``m`` of ``hashes`` is a prefix of the tree of
    all of them (RFC 9162 ``PROOF``; empty when m is 0 or every leaf)."""
    n = len(hashes)
    if not 0 <= m <= n:
        raise ValueError(f"a tree of {n} leaves has no prefix of {m}")
    if m in (0, n):
        return []
    proof: list[bytes] = []
    lo, hi, whole = 0, n, True
    while m != hi - lo:  # SUBPROOF(m, D[lo:hi], whole), unrolled; siblings top first
        k = split(hi - lo)
        if m <= k:
            proof.append(_root(hashes, lo + k, hi))
            hi = lo + k
        else:
            proof.append(_root(hashes, lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        proof.append(_root(hashes, lo, hi))
    return proof[::-1]


def _well_formed(proof: Sequence[bytes]) -> bool:
    return all(isinstance(p, bytes) and len(p) == HASH_SIZE for p in proof)


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root that ``proof`` leads to from leaf hash ``leaf`` at ``index`` in a tree of
    ``size`` leaves (RFC 9162 section 2.1.3.2); None when the proof cannot be one."""
    if not 0 <= index < size or not _well_formed(proof):
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """Does ``proof`` show leaf hash ``leaf`` at ``index`` in the tree of ``size`` leaves
    whose root is ``expected_root``?"""
    return root_from_inclusion(leaf, index, size, proof) == expected_root


def verify_consistency(
    first_size: int,
    second_size: int,
    proof: Sequence[bytes],
    first_root: bytes,
    second_root: bytes,
) -> bool:
    """Does ``proof`` show the tree of ``first_size`` leaves (``first_root``) to be a prefix
    of the tree of ``second_size`` leaves (``second_root``)? (RFC 9162 section 2.1.4.2; an
    empty first tree is a prefix of every tree, with an empty proof.)"""
    if not 0 <= first_size <= second_size or not _well_formed(proof):
        return False
    if first_size == 0:
        return not proof
    if first_size == second_size:
        return not proof and first_root == second_root
    path = list(proof)
    if first_size & (first_size - 1) == 0:  # an exact power of two: the old root is a node
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first_size - 1, second_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
