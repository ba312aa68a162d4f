"""Signed checkpoints of the ledger and proofs against them, on the record.

A checkpoint made by :meth:`CheckpointOperations.checkpoint` covers **every entry before
its own**: it is computed and signed inside the write transaction that appends its
``audit.checkpoint`` entry, with the ledger's head locked, so a checkpoint of size ``n``
is always recorded as entry ``n + 1`` (and is itself covered by the next checkpoint).

Signing keys live in files, never in the database; their public halves are recorded
(``audit.key.create``), and only a recorded key signs checkpoints. Rotating a key is
creating another one. Verifying and proving read the ledger and write nothing.
See docs/AUDIT.md for what this does and does not protect against.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from faceledger.db import lock_ledger
from faceledger.errors import ConfigError, InputError, NotFoundError, StorageError
from faceledger.ledger.chain import BadEntryError, LedgerEntry, VerifyReport
from faceledger.ledger.checkpoint import (
    BadSignatureError,
    Checkpoint,
    SigningKey,
    Verifier,
    entry_leaf,
    key_file_problem,
)
from faceledger.ledger.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
)
from faceledger.operations.acting import Acting
from faceledger.operations.base import OperationsBase, Recorded

PROOF_FORMAT = "faceledger-inclusion-proof/1"
KEY_CREATE = "audit.key.create"
CHECKPOINT = "audit.checkpoint"


@dataclass(frozen=True)
class SignedCheckpoint:
    """What :meth:`CheckpointOperations.checkpoint` made: the note to publish."""

    note: str
    checkpoint: Checkpoint
    vkey: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckpointReport:
    """Is today's ledger an append-only extension of a signed checkpoint?

    ``failure``: None when it is; else ``"bad signature"``, ``"origin"``, ``"truncated"``,
    ``"rewritten"`` or ``"broken"`` (the entries' own hash chain fails)."""

    ok: bool
    failure: str | None
    reason: str
    origin: str | None = None
    checkpoint_size: int | None = None
    checkpoint_root: str | None = None
    ledger_size: int | None = None
    ledger_root: str | None = None
    first_bad: int | None = None
    """The seq of the first entry found different (for a rewrite: when it can be told)."""
    consistency_proof: tuple[str, ...] = ()
    """Hex hashes proving the checkpoint's tree a prefix of today's (RFC 9162)."""

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["consistency_proof"] = list(self.consistency_proof)
        return out


def _sanitised(name: str) -> str:
    return re.sub(r"[\s+]+", "-", name).strip("-") or "gallery"


class CheckpointOperations(OperationsBase):
    # ---- names -------------------------------------------------------------------------

    @property
    def checkpoint_origin(self) -> str:
        """The default origin line: ``faceledger/<database name>`` (a SQLite file's name
        without its suffix, or the PostgreSQL database's name)."""
        url = self.db.url
        name = url.path.stem if url.path is not None else str(url.url.database)
        return f"faceledger/{_sanitised(name)}"

    # ---- keys --------------------------------------------------------------------------

    def create_signing_key(
        self, acting: Acting, path: Path, name: str | None = None
    ) -> Recorded[Verifier]:
        """A new Ed25519 signing key in ``path`` (mode 0600, never overwritten); its public
        half is recorded as ``audit.key.create``. Returns its verifier (``.vkey``)."""
        key = SigningKey.generate(name or self.checkpoint_origin)
        key.save(path)
        verifier = key.verifier
        summary = {
            "name": verifier.name,
            "algorithm": "ed25519",
            "key_hash": verifier.key_hash.hex(),
            "vkey": verifier.vkey,
            "file": str(path.resolve()),
        }
        try:
            entry = self._log(acting.record(KEY_CREATE, summary))
        except BaseException:
            path.unlink(missing_ok=True)  # a key that is not on the record signs nothing
            raise
        return Recorded(verifier, entry)

    def signing_keys(self) -> list[LedgerEntry]:
        """The ``audit.key.create`` entries: every key that ever signed (or may sign)."""
        return self.ledger.entries(action=KEY_CREATE)

    def _recorded(self, verifier: Verifier) -> bool:
        return any(
            isinstance(e.result, dict) and e.result.get("vkey") == verifier.vkey
            for e in self.signing_keys()
        )

    # ---- checkpoints -------------------------------------------------------------------

    def checkpoint(
        self, acting: Acting, key_path: Path, origin: str | None = None
    ) -> Recorded[SignedCheckpoint]:
        """Sign a checkpoint of every entry so far and record it (``audit.checkpoint``,
        with its size, root and note) as the next entry."""
        key = SigningKey.load(key_path)
        warning = key_file_problem(key_path)
        verifier = key.verifier
        if not self._recorded(verifier):
            raise ConfigError(
                f"{key_path}: key {verifier.name}+{verifier.key_hash.hex()} was not created for "
                f"this ledger ({self.db_name}); make one with: faceledger audit signing-key create"
            )
        origin = origin or self.checkpoint_origin
        with self.db.write() as conn:
            lock_ledger(conn)  # no entry can come between the tree and its record
            hashes = [leaf_hash(entry_leaf(e)) for e in self.ledger.entries()]
            made = Checkpoint(origin, len(hashes), root(hashes))
            note = made.to_note(key)
            summary = {
                "origin": origin,
                "size": made.size,
                "root": made.root.hex(),
                "key": f"{verifier.name}+{verifier.key_hash.hex()}",
                "note": note,
            }
            entry = self._log_in(conn, acting.record(CHECKPOINT, summary))
            if entry.seq != made.size + 1:
                raise StorageError(
                    f"{self.db_name}: the checkpoint of {made.size} entries would be recorded as "
                    f"entry {entry.seq}; the ledger's numbering has gaps (faceledger audit verify)"
                )
        warnings = (warning,) if warning else ()
        return Recorded(SignedCheckpoint(note, made, verifier.vkey, warnings), entry)

    def verify_checkpoint(
        self, note: str, vkey: str, origin: str | None = None
    ) -> CheckpointReport:
        """Check ``note`` (signed by ``vkey``) against today's ledger: the signature, the
        origin, that the ledger has at least the checkpoint's entries, that its first
        ``size`` entries still have the checkpoint's root, the consistency proof to today's
        tree, and the entries' own hash chain. Raises only for malformed input."""
        verifier = Verifier.parse(vkey)
        try:
            stated = Checkpoint.parse(note, verifier)
        except BadSignatureError as exc:
            return CheckpointReport(False, "bad signature", str(exc))
        expected = origin or self.checkpoint_origin
        base: dict[str, Any] = {
            "origin": stated.origin,
            "checkpoint_size": stated.size,
            "checkpoint_root": stated.root.hex(),
        }
        if stated.origin != expected:
            reason = (
                f"origin: the checkpoint is of {stated.origin!r}, this ledger is {expected!r} "
                "(another ledger's checkpoint, or give its origin)"
            )
            return CheckpointReport(False, "origin", reason, **base)
        return _compare(stated, self._tree(), self.ledger.verify(), verifier, self._notes())

    def _tree(self) -> list[bytes] | BadEntryError:
        try:
            return [leaf_hash(entry_leaf(e)) for e in self.ledger.entries()]
        except BadEntryError as exc:
            return exc

    def _notes(self) -> list[tuple[int, str]]:
        """(seq, note) of each checkpoint the ledger itself records."""
        return [
            (e.seq, e.result["note"])
            for e in self.ledger.entries(action=CHECKPOINT)
            if isinstance(e.result, dict) and isinstance(e.result.get("note"), str)
        ]

    # ---- proofs ------------------------------------------------------------------------

    def prove(
        self, seq: int, checkpoint: str | None = None, origin: str | None = None
    ) -> dict[str, Any]:
        """An inclusion proof document for entry ``seq``: relative to ``checkpoint`` (a
        signed note, which must still match the ledger) or else to today's root."""
        entries = self.ledger.entries()
        hashes = [leaf_hash(entry_leaf(e)) for e in entries]
        if checkpoint is not None:
            stated = Checkpoint.parse_unverified(checkpoint)
            size, origin = stated.size, stated.origin
            if size > len(hashes) or root(hashes[:size]) != stated.root:
                raise ConfigError(
                    f"the ledger no longer matches this checkpoint of {size} entries "
                    "(faceledger audit verify --checkpoint CP --vkey VKEY says how)"
                )
        else:
            size, origin = len(hashes), origin or self.checkpoint_origin
        if not 1 <= seq <= size:
            covered = "the checkpoint covers" if checkpoint is not None else "the ledger has"
            raise NotFoundError(f"no entry {seq} to prove: {covered} entries 1..{size}")
        if entries[seq - 1].seq != seq:
            raise StorageError(
                f"{self.db_name}: entry {seq} is not the ledger's entry number {seq}: its "
                "numbering has gaps (faceledger audit verify)"
            )
        tree = hashes[:size]
        return {
            "format": PROOF_FORMAT,
            "origin": origin,
            "tree_size": size,
            "leaf_index": seq - 1,
            "entry": entries[seq - 1].as_json(),
            "leaf_hash": tree[seq - 1].hex(),
            "audit_path": [h.hex() for h in inclusion_proof(tree, seq - 1)],
            "root": root(tree).hex(),
            "checkpoint": checkpoint,
        }


# ---- comparing a checkpoint with today's ledger -----------------------------------------------


def _compare(
    stated: Checkpoint,
    tree: list[bytes] | BadEntryError,
    chain: VerifyReport,
    verifier: Verifier,
    notes: list[tuple[int, str]],
) -> CheckpointReport:
    size = stated.size
    base: dict[str, Any] = {
        "origin": stated.origin,
        "checkpoint_size": size,
        "checkpoint_root": stated.root.hex(),
    }
    if isinstance(tree, BadEntryError):
        failure = "rewritten" if tree.seq <= size else "broken"
        reason = f"{failure}: entry {tree.seq} is unreadable ({tree.reason})"
        return CheckpointReport(False, failure, reason, first_bad=tree.seq, **base)
    n, today = len(tree), root(tree)
    base |= {"ledger_size": n, "ledger_root": today.hex()}
    if n < size:
        reason = f"truncated: the ledger has {n} entries, the checkpoint covers {size}"
        return CheckpointReport(False, "truncated", reason, first_bad=n + 1, **base)
    if root(tree[:size]) != stated.root:
        first, where = _first_difference(stated, tree, chain, verifier, notes)
        reason = f"rewritten: entries 1..{size} no longer hash to the checkpoint's root ({where})"
        return CheckpointReport(False, "rewritten", reason, first_bad=first, **base)
    proof = consistency_proof(tree, size)
    if not verify_consistency(size, n, proof, stated.root, today):  # pragma: no cover
        reason = f"rewritten: no consistency proof leads from {size} to {n} entries"
        return CheckpointReport(False, "rewritten", reason, **base)
    base["consistency_proof"] = tuple(p.hex() for p in proof)
    if not chain.ok:
        reason = f"broken: the entries match the checkpoint, but {chain.reason}"
        return CheckpointReport(False, "broken", reason, first_bad=chain.first_bad, **base)
    reason = (
        f"the ledger ({n} entries) is an append-only extension of the checkpoint "
        f"({size} entries, signed by {verifier.name}+{verifier.key_hash.hex()})"
    )
    return CheckpointReport(True, None, reason, **base)


def _first_difference(
    stated: Checkpoint,
    tree: list[bytes],
    chain: VerifyReport,
    verifier: Verifier,
    notes: list[tuple[int, str]],
) -> tuple[int | None, str]:
    """Where a rewrite starts, as far as the ledger can tell: the hash chain names an
    entry edited without recomputing the chain; otherwise the checkpoints the ledger
    records (only those still signed by ``verifier``) bound it."""
    size = stated.size
    if not chain.ok and chain.entries <= size:  # entries before the bad one are in order
        return chain.entries, f"first differing entry {chain.entries}: {chain.reason}"
    low, low_seq, high = 0, None, size  # entries 1..low still match; one of low+1..high differs
    for seq, note in notes:
        try:
            earlier = Checkpoint.parse(note, verifier)
        except (BadSignatureError, InputError, ConfigError, ValueError):
            continue  # signed by another key, altered, or malformed: no evidence either way
        if earlier.origin != stated.origin or earlier.size > size:
            continue
        if root(tree[: earlier.size]) == earlier.root:
            if earlier.size > low:
                low, low_seq = earlier.size, seq
        else:
            high = min(high, earlier.size)
    if low + 1 == high:
        return high, f"first differing entry {high}"
    if low_seq is not None:
        return None, (
            f"the first differing entry is one of {low + 1}..{high}; entries 1..{low} still "
            f"match the signed checkpoint recorded in entry {low_seq}"
        )
    return None, (
        f"the first differing entry is one of 1..{high}: no earlier signed checkpoint in the "
        "ledger still matches"
    )
