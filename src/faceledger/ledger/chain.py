"""The audit ledger: append-only, hash-chained, in the gallery's database (schema v3).

Each entry records who (actor and role), when, what (action), why (purpose, case
reference), on what (sha256 of the input images, never the images), what came back
(subjects and scores, or unknown), with which gallery and model, and the hash of the entry
before it. An entry's ``hash`` is the sha256 of the canonical JSON of all its other fields
(``seq`` and ``prev_hash`` included)::

    json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

so anyone can check an :meth:`Ledger.export` with a few lines of any language. The first
entry's ``prev_hash`` is :data:`GENESIS` (64 zeros). A chain alone cannot show that its
last entries were cut off: note :meth:`Ledger.head` somewhere else and pass it back to
:meth:`Ledger.verify` as ``expected_head``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import numpy as np
import sqlalchemy as sa

from faceledger.events.store import Clock, iso, utc_now
from faceledger.gallery.store import Gallery, engine_with_schema, ledger, write_txn

LEDGER_SCHEMA = 3
"""The first gallery schema version that holds the ledger table."""
GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry."""
MAX_TEXT = 4096
"""Longest string accepted in a result: a summary, not a place for encoded images."""

_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIELDS = (
    "seq",
    "at",
    "actor",
    "role",
    "action",
    "purpose",
    "case_ref",
    "inputs",
    "result",
    "gallery",
    "model",
    "prev_hash",
)


def canonical(fields: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash is taken over."""
    text = json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def entry_hash(fields: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of ``fields`` without ``hash``."""
    return hashlib.sha256(canonical({k: v for k, v in fields.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    at: str
    actor: str
    role: str
    action: str
    purpose: str | None
    case_ref: str | None
    inputs: tuple[str, ...]
    result: Any
    gallery: str
    model: str | None
    prev_hash: str
    hash: str

    def as_json(self) -> dict[str, Any]:
        """Every field, hashes included: one line of an export."""
        out = {name: getattr(self, name) for name in (*_FIELDS, "hash")}
        out["inputs"] = list(self.inputs)
        return out


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    entries: int
    first_bad: int | None
    """The seq of the first entry found wrong (for a truncation: the first one missing)."""
    reason: str


def ledger_engine(store: Gallery | sa.Engine) -> sa.Engine:
    """The engine of a gallery, checked to hold the ledger table (schema v3 or later)."""
    return engine_with_schema(store, LEDGER_SCHEMA, "ledger")


def _summary(value: Any) -> Any:
    """``value`` as plain JSON data; refuses anything that could carry an image."""
    if value is None or isinstance(value, bool | int | str):
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise ValueError(
                f"ledger result holds a string of {len(value)} characters (at most {MAX_TEXT}): "
                "the ledger keeps summaries, never images"
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"ledger result holds {value}, which JSON cannot carry")
        return value
    if isinstance(value, bytes | bytearray | memoryview | np.ndarray):
        raise ValueError(
            f"ledger result holds {type(value).__name__} data: "
            "no face images (or other raw data) in the ledger"
        )
    if isinstance(value, np.generic):
        return _summary(value.item())
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"ledger result keys must be strings, not {key!r}")
            out[key] = _summary(item)
        return out
    if isinstance(value, list | tuple):
        return [_summary(item) for item in value]
    raise ValueError(f"ledger result holds a {type(value).__name__}, which is not plain JSON")


def _inputs(inputs: Iterable[str]) -> list[str]:
    out = []
    for digest in inputs:
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ValueError(f"ledger inputs are sha256 hex digests, not {digest!r}")
        out.append(digest)
    return out


def _entry(row: Any) -> LedgerEntry:
    values = dict(row._mapping)
    values["inputs"] = tuple(json.loads(values["inputs"]))
    values["result"] = json.loads(values["result"])
    return LedgerEntry(**values)


class Ledger:
    """The audit ledger in the gallery database; pass a :class:`Gallery` or its engine.

    ``gallery``: the name recorded in each entry (default: the gallery's path, or the
    database named in the engine's URL).
    """

    def __init__(
        self, store: Gallery | sa.Engine, *, clock: Clock = utc_now, gallery: str | None = None
    ) -> None:
        self.engine = ledger_engine(store)
        self.clock = clock
        if gallery is None:
            gallery = str(store.path) if isinstance(store, Gallery) else str(store.url.database)
        self.gallery = gallery

    def append(
        self,
        actor: str,
        role: str,
        action: str,
        *,
        purpose: str | None = None,
        case_ref: str | None = None,
        inputs: Iterable[str] = (),
        result: Any = None,
        model: str | None = None,
    ) -> LedgerEntry:
        """Add one entry, chained to the last one, in its own write transaction."""
        with write_txn(self.engine) as conn:
            return self.append_in(
                conn,
                actor,
                role,
                action,
                purpose=purpose,
                case_ref=case_ref,
                inputs=inputs,
                result=result,
                model=model,
            )

    def append_in(
        self,
        conn: sa.Connection,
        actor: str,
        role: str,
        action: str,
        *,
        purpose: str | None = None,
        case_ref: str | None = None,
        inputs: Iterable[str] = (),
        result: Any = None,
        model: str | None = None,
    ) -> LedgerEntry:
        """Add one entry inside the caller's write transaction (see ``write_txn``: it must
        hold the write lock before this reads the head), so that a change and its record
        commit together."""
        for name, text in (("actor", actor), ("role", role), ("action", action)):
            if not isinstance(text, str) or not text:
                raise ValueError(f"a ledger entry needs a non-empty {name}")
        digests = _inputs(inputs)
        summary = _summary(result)
        last = conn.execute(
            sa.select(ledger.c.hash).order_by(ledger.c.seq.desc()).limit(1)
        ).scalar()
        seq = self._next_seq(conn)
        fields: dict[str, Any] = {
            "seq": seq,
            "at": iso(self.clock()),
            "actor": actor,
            "role": role,
            "action": action,
            "purpose": purpose,
            "case_ref": case_ref,
            "inputs": digests,
            "result": summary,
            "gallery": self.gallery,
            "model": model,
            "prev_hash": last or GENESIS,
        }
        digest = entry_hash(fields)
        row = {**fields, "inputs": _json(digests), "result": _json(summary), "hash": digest}
        conn.execute(ledger.insert().values(**row))
        return LedgerEntry(**{**fields, "inputs": tuple(digests), "hash": digest})

    @staticmethod
    def _next_seq(conn: sa.Connection) -> int:
        # SQLite's AUTOINCREMENT counter: a seq whose entry was deleted is never reused,
        # so an entry appended after a truncation still leaves a visible gap.
        if conn.dialect.name == "sqlite":
            top = conn.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'ledger'"))
        else:
            top = conn.execute(sa.select(sa.func.max(ledger.c.seq)))
        return int(top.scalar() or 0) + 1

    def head(self) -> str:
        """The hash of the last entry (GENESIS when empty): note it to detect truncation."""
        with self.engine.connect() as conn:
            query = sa.select(ledger.c.hash).order_by(ledger.c.seq.desc()).limit(1)
            return str(conn.execute(query).scalar() or GENESIS)

    def entries(
        self,
        since: datetime | None = None,
        action: str | None = None,
        actor: str | None = None,
        limit: int | None = None,
    ) -> list[LedgerEntry]:
        """Entries in ledger order (oldest first), optionally filtered."""
        return list(self._iter(since, action, actor, limit))

    def _iter(
        self,
        since: datetime | None = None,
        action: str | None = None,
        actor: str | None = None,
        limit: int | None = None,
    ) -> Iterator[LedgerEntry]:
        query = sa.select(*(ledger.c[name] for name in (*_FIELDS, "hash"))).order_by(ledger.c.seq)
        if since is not None:
            query = query.where(ledger.c.at >= iso(since))
        if action is not None:
            query = query.where(ledger.c.action == action)
        if actor is not None:
            query = query.where(ledger.c.actor == actor)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                yield _entry(row)

    def export(self, fp: IO[str]) -> int:
        """Write every entry as one JSON line (hashes included); returns the count."""
        count = 0
        for entry in self._iter():
            fp.write(json.dumps(entry.as_json(), sort_keys=True, ensure_ascii=False) + "\n")
            count += 1
        return count

    def verify(self, expected_head: str | None = None) -> VerifyReport:
        """Check every entry's hash and its link to the one before.

        ``expected_head``: a head noted earlier. It must be the hash of some entry (the
        ledger may have grown since); otherwise entries were cut off the end.
        """
        count = 0
        prev_seq, prev_hash = 0, GENESIS
        seen = {GENESIS}
        query = sa.select(ledger).order_by(ledger.c.seq)
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                count += 1
                try:
                    entry = _entry(row)
                    recomputed = entry_hash(entry.as_json())
                except (ValueError, TypeError) as exc:
                    return VerifyReport(False, count, row.seq, f"entry {row.seq} unreadable: {exc}")
                if entry.seq != prev_seq + 1 and entry.prev_hash != prev_hash:
                    missing = _span(prev_seq + 1, entry.seq - 1)
                    reason = f"{missing} missing before entry {entry.seq} (deleted)"
                    return VerifyReport(False, count, entry.seq, reason)
                if recomputed != entry.hash:
                    reason = f"entry {entry.seq} was altered: its hash does not match its fields"
                    return VerifyReport(False, count, entry.seq, reason)
                if entry.prev_hash != prev_hash:
                    after = f"entry {prev_seq}" if prev_seq else "the genesis"
                    reason = (
                        f"entry {entry.seq} does not follow {after}: "
                        "the chain is broken (entries reordered, replaced or deleted)"
                    )
                    return VerifyReport(False, count, entry.seq, reason)
                if entry.seq != prev_seq + 1:
                    missing = _span(prev_seq + 1, entry.seq - 1)
                    return VerifyReport(False, count, entry.seq, f"{missing} missing (deleted)")
                prev_seq, prev_hash = entry.seq, entry.hash
                seen.add(entry.hash)
        if expected_head is not None and expected_head not in seen:
            reason = (
                f"expected head {expected_head} is not in the ledger, which ends at entry "
                f"{prev_seq}: entries were cut off the end (or the ledger was replaced)"
            )
            return VerifyReport(False, count, prev_seq + 1, reason)
        return VerifyReport(True, count, None, f"{count} entries verified")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _span(first: int, last: int) -> str:
    return f"entry {first}" if first == last else f"entries {first}-{last}"
