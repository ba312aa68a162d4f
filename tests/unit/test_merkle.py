"""The Merkle tree (RFC 9162 hashing): hand-computed small trees, the RFC 6962 test
vectors of Certificate Transparency, and every proof of every tree up to 40 leaves."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import pytest

from faceledger.ledger.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    leaf_hashes,
    node_hash,
    root,
    root_from_inclusion,
    split,
    verify_consistency,
    verify_inclusion,
)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaves(n: int) -> list[bytes]:
    return leaf_hashes(f"entry {i}".encode() for i in range(n))


# ---- hashing and small trees, computed by hand ------------------------------------------


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"abc") == sha(b"\x00abc")
    assert node_hash(b"L" * 32, b"R" * 32) == sha(b"\x01" + b"L" * 32 + b"R" * 32)
    assert leaf_hash(b"") != sha(b"")
    assert root([]) == EMPTY_ROOT == sha(b"")


@pytest.mark.parametrize(
    ("n", "k"), [(2, 1), (3, 2), (4, 2), (5, 4), (7, 4), (8, 4), (9, 8), (17, 16), (33, 32)]
)
def test_split_is_the_largest_power_of_two_below_n(n: int, k: int) -> None:
    assert split(n) == k


def test_split_refuses_a_single_leaf() -> None:
    with pytest.raises(ValueError, match="does not split"):
        split(1)


def test_roots_of_small_trees_by_hand() -> None:
    a, b, c, d, e = (leaf_hash(x) for x in (b"a", b"b", b"c", b"d", b"e"))
    ab, cd = node_hash(a, b), node_hash(c, d)
    assert root([a]) == a
    assert root([a, b]) == ab
    assert root([a, b, c]) == node_hash(ab, c)
    assert root([a, b, c, d]) == node_hash(ab, cd)
    assert root([a, b, c, d, e]) == node_hash(node_hash(ab, cd), e)


def test_proofs_of_small_trees_by_hand() -> None:
    a, b, c, d, e = (leaf_hash(x) for x in (b"a", b"b", b"c", b"d", b"e"))
    ab, cd = node_hash(a, b), node_hash(c, d)
    tree = [a, b, c, d, e]
    assert inclusion_proof(tree, 0) == [b, cd, e]
    assert inclusion_proof(tree, 3) == [c, ab, e]
    assert inclusion_proof(tree, 4) == [node_hash(ab, cd)]
    assert inclusion_proof([a], 0) == []
    # 3 of 5: the old tree (ab, c) is not a node of the new one.
    assert consistency_proof(tree, 3) == [c, d, ab, e]
    # 2 of 5: the old root ab is a node, so it is left out of the proof.
    assert consistency_proof(tree, 2) == [cd, e]
    assert consistency_proof(tree, 4) == [e]
    assert consistency_proof(tree, 5) == consistency_proof(tree, 0) == []
    assert verify_consistency(3, 5, [c, d, ab, e], root(tree[:3]), root(tree))
    assert verify_consistency(2, 5, [cd, e], ab, root(tree))


# ---- the RFC 6962 test vectors (Certificate Transparency's merkle_tree_test) ----------------

h = bytes.fromhex
CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
             "606162636465666768696a6b6c6d6e6f"]  # fmt: skip
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT = leaf_hashes(h(x) for x in CT_LEAVES)


@pytest.mark.parametrize("n", range(1, 9))
def test_ct_roots(n: int) -> None:
    assert root(CT[:n]).hex() == CT_ROOTS[n - 1]


def test_ct_inclusion_and_consistency_vectors() -> None:
    path = [h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]  # fmt: skip
    assert inclusion_proof(CT, 5) == path
    assert verify_inclusion(CT[5], 5, 8, path, h(CT_ROOTS[7]))
    assert not verify_inclusion(CT[5], 4, 8, path, h(CT_ROOTS[7]))
    assert inclusion_proof(CT[:3], 2) == [h(CT_ROOTS[1])]
    proof = [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
             h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
             h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]  # fmt: skip
    assert consistency_proof(CT, 6) == proof
    assert verify_consistency(6, 8, proof, h(CT_ROOTS[5]), h(CT_ROOTS[7]))
    assert not verify_consistency(6, 8, proof, h(CT_ROOTS[4]), h(CT_ROOTS[7]))
    two_of_five = [
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    ]
    assert consistency_proof(CT[:5], 2) == two_of_five
    assert verify_consistency(2, 5, two_of_five, h(CT_ROOTS[1]), h(CT_ROOTS[4]))


# ---- against the RFC's recursive definitions, for every tree up to 40 leaves -------------


def ref_root(d: Sequence[bytes]) -> bytes:
    if not d:
        return EMPTY_ROOT
    if len(d) == 1:
        return d[0]
    k = split(len(d))
    return node_hash(ref_root(d[:k]), ref_root(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = split(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_root(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_root(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_root(d)]
    k = split(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_root(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_root(d[:k])]


TREE = leaves(40)


@pytest.mark.parametrize("n", range(1, 41))
def test_every_inclusion_proof_matches_the_rfc_and_verifies(n: int) -> None:
    tree = TREE[:n]
    top = root(tree)
    assert top == ref_root(tree)
    for i in range(n):
        proof = inclusion_proof(tree, i)
        assert proof == ref_path(i, tree)
        assert verify_inclusion(tree[i], i, n, proof, top)
        assert root_from_inclusion(tree[i], i, n, proof) == top
        assert not verify_inclusion(leaf_hash(b"other"), i, n, proof, top)
        assert not verify_inclusion(tree[i], i, n, [*proof, top], top)
        if proof:
            assert not verify_inclusion(tree[i], i, n, proof[:-1], top)
        if n > 1:
            assert not verify_inclusion(tree[i], (i + 1) % n, n, proof, top)


@pytest.mark.parametrize("n", range(1, 41))
def test_every_consistency_proof_matches_the_rfc_and_verifies(n: int) -> None:
    tree = TREE[:n]
    new = root(tree)
    for m in range(1, n):
        old = root(tree[:m])
        proof = consistency_proof(tree, m)
        assert proof == ref_subproof(m, tree, True)
        assert verify_consistency(m, n, proof, old, new)
        assert not verify_consistency(m, n, proof, new, old)
        assert not verify_consistency(m, n, proof, old, leaf_hash(b"other"))
        assert not verify_consistency(m, n, proof, leaf_hash(b"other"), new)
        assert not verify_consistency(m, n, proof[:-1], old, new)
        assert not verify_consistency(m, n, [*proof, new], old, new)
        if m + 1 < n:
            assert not verify_consistency(m + 1, n, proof, old, new)
    assert verify_consistency(n, n, [], new, new)
    assert verify_consistency(0, n, [], EMPTY_ROOT, new)
    assert not verify_consistency(n, n, [new], new, new)


def test_a_changed_leaf_breaks_consistency_with_the_old_root() -> None:
    rng = random.Random(13)
    for _ in range(200):
        n = rng.randint(2, 40)
        m = rng.randint(1, n - 1)
        tree = TREE[:n]
        changed = list(tree)
        where = rng.randrange(m)  # inside the old tree
        changed[where] = leaf_hash(b"rewritten")
        old = root(tree[:m])
        assert root(changed[:m]) != old
        proof = consistency_proof(changed, m)
        assert not verify_consistency(m, n, proof, old, root(changed))


def test_malformed_proofs_and_requests() -> None:
    tree = TREE[:5]
    top = root(tree)
    assert not verify_inclusion(tree[0], 5, 5, [], top)  # index past the tree
    assert not verify_inclusion(tree[0], -1, 5, [], top)
    assert not verify_inclusion(tree[0], 0, 5, [b"short"], top)
    assert not verify_consistency(6, 5, [], top, top)
    assert not verify_consistency(3, 5, [b"x" * 31], top, top)
    with pytest.raises(ValueError, match="not in a tree of 5"):
        inclusion_proof(tree, 5)
    with pytest.raises(ValueError, match="no prefix of 6"):
        consistency_proof(tree, 6)
