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

from faceledger.db import Store, database_of, engine_with_schema
from faceledger.db.engine import lock_ledger, top_seq, write_txn
from faceledger.db.schema import ledger
from faceledger.errors import StorageError
from faceledger.events.store import Clock, iso, utc_now

LEDGER_SCHEMA = 3
"""The first gallery schema version that holds the ledger table."""
GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry."""
MAX_TEXT = 4096
"""Longest string accepted in a result: a summary, not a place for encoded images."""
MAX_DEPTH = 32
"""Deepest nesting accepted in a result: summaries are shallow."""

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
class LedgerRecord:
    """What one entry says before it is chained: who (actor, role), what (action), why
    (purpose, case reference), on what (sha256 of the inputs), what came back, with which
    model. Made by ``faceledger.operations`` from its acting context."""

    actor: str
    role: str
    action: str
    purpose: str | None = None
    case_ref: str | None = None
    inputs: tuple[str, ...] = ()
    result: Any = None
    model: str | None = None


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


def ledger_engine(store: Store) -> sa.Engine:
    """The engine of a gallery, checked to hold the ledger table (schema v3 or later)."""
    return engine_with_schema(store, LEDGER_SCHEMA, "ledger")


def _summary(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data; refuses anything that could carry an image."""
    if depth > MAX_DEPTH:
        raise ValueError(f"ledger result is nested more than {MAX_DEPTH} levels deep")
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
            out[key] = _summary(item, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_summary(item, depth + 1) for item in value]
    raise ValueError(f"ledger result holds a {type(value).__name__}, which is not plain JSON")


def _inputs(inputs: Iterable[str]) -> list[str]:
    out = []
    for digest in inputs:
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ValueError(f"ledger inputs are sha256 hex digests, not {digest!r}")
        out.append(digest)
    return out


class BadEntryError(StorageError):
    """A stored entry that cannot be read back (crafted or corrupted in the database)."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(
            f"ledger entry {seq} is unreadable: {reason} (see: faceledger audit verify)"
        )
        self.seq = seq
        self.reason = reason


def _entry(row: Any) -> LedgerEntry:
    """A stored row as an entry; BadEntryError names it when its JSON cannot be read (too
    deep for the parser, malformed, the wrong shape) instead of failing with the parser's
    own error."""
    values = dict(row._mapping)
    try:
        values["inputs"] = tuple(_load(values["inputs"]))
        values["result"] = _load(values["result"])
        return LedgerEntry(**values)
    except (ValueError, TypeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise BadEntryError(int(values.get("seq") or 0), reason) from None


def _load(text: Any) -> Any:
    """JSON text of a stored field (the parser raises RecursionError, caught by
    :func:`_entry`, for nesting too deep for it)."""
    if not isinstance(text, str):
        raise TypeError(f"a stored field holds {type(text).__name__}, not JSON text")
    return json.loads(text)


_ENTRIES = sa.select(*(ledger.c[name] for name in (*_FIELDS, "hash")))
"""Every stored field of an entry (a query to narrow)."""


class Ledger:
    """The audit ledger in the gallery database; pass a :class:`Gallery` or its engine.

    ``gallery``: the name recorded in each entry (default: the gallery's path, or the
    database named in the engine's URL).
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = utc_now,
        gallery: str | None = None,
    ) -> None:
        self.engine = ledger_engine(store)
        self.clock = clock
        if gallery is None:
            db = database_of(store)
            gallery = db.name if db is not None else str(self.engine.url.database)
        self.gallery = gallery

    def append(self, record: LedgerRecord) -> LedgerEntry:
        """Add one entry, chained to the last one, in its own write transaction."""
        with write_txn(self.engine) as conn:
            return self.append_in(conn, record)

    def append_many(self, records: Iterable[LedgerRecord]) -> list[LedgerEntry]:
        """Add several entries, in order, in one write transaction: all of them or none.
        The chain is the one that appending them one at a time would make (each entry
        links to the one before it); only the commits are fewer (a bulk search records a
        batch of answers at once, before any of them is shown)."""
        records = list(records)
        if not records:
            return []
        with write_txn(self.engine) as conn:
            return self.append_many_in(conn, records)

    def append_in(self, conn: sa.Connection, record: LedgerRecord) -> LedgerEntry:
        """Add one entry inside the caller's write transaction, so that a change and its
        record commit together; the head is locked until that transaction ends."""
        return self.append_many_in(conn, [record])[0]

    def append_many_in(self, conn: sa.Connection, records: list[LedgerRecord]) -> list[LedgerEntry]:
        """:meth:`append_in` for several records, in order: every one checked first, then
        one lock, one read of the head and one insert for all of them."""
        checked = []
        for record in records:
            for name in ("actor", "role", "action"):
                text = getattr(record, name)
                if not isinstance(text, str) or not text:
                    raise ValueError(f"a ledger entry needs a non-empty {name}")
            checked.append((record, _inputs(record.inputs), _summary(record.result)))
        if not checked:
            return []
        lock_ledger(conn)
        last = conn.execute(
            sa.select(ledger.c.hash).order_by(ledger.c.seq.desc()).limit(1)
        ).scalar()
        seq = top_seq(conn, ledger, ledger.c.seq)
        prev = last or GENESIS
        rows, entries = [], []
        for record, digests, summary in checked:
            seq += 1
            fields: dict[str, Any] = {
                "seq": seq,
                "at": iso(self.clock()),
                "actor": record.actor,
                "role": record.role,
                "action": record.action,
                "purpose": record.purpose,
                "case_ref": record.case_ref,
                "inputs": digests,
                "result": summary,
                "gallery": self.gallery,
                "model": record.model,
                "prev_hash": prev,
            }
            digest = entry_hash(fields)
            rows.append(
                {**fields, "inputs": _json(digests), "result": _json(summary), "hash": digest}
            )
            entries.append(LedgerEntry(**{**fields, "inputs": tuple(digests), "hash": digest}))
            prev = digest
        conn.execute(ledger.insert(), rows)
        return entries

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
        *,
        newest: bool = False,
    ) -> list[LedgerEntry]:
        """Entries in ledger order (oldest first), optionally filtered; ``newest``: the
        last ``limit`` of them instead, newest first."""
        return list(self._iter(since, action, actor, limit, newest=newest))

    def _iter(
        self,
        since: datetime | None = None,
        action: str | None = None,
        actor: str | None = None,
        limit: int | None = None,
        *,
        newest: bool = False,
    ) -> Iterator[LedgerEntry]:
        order = ledger.c.seq.desc() if newest else ledger.c.seq
        query = _ENTRIES.order_by(order)
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

    def mentioning(
        self, texts: Iterable[str], actions: Iterable[str], limit: int = 1000
    ) -> list[LedgerEntry]:
        """Entries of ``actions`` whose result's JSON holds any of ``texts`` (oldest first):
        a coarse filter for the caller to refine."""
        needles = [_json(t)[1:-1] for t in texts]
        return self._containing(ledger.c.action.in_(list(actions)), needles, limit)

    def recording_event(self, event_id: int) -> LedgerEntry | None:
        """The entry that recorded event ``event_id`` (a scan's or a stream's decided
        track, ``*.track``, written with it), or None."""
        needles = [f'"event":{int(event_id)},', f'"event":{int(event_id)}}}']
        for entry in self._containing(ledger.c.action.like("%.track"), needles):
            if isinstance(entry.result, dict) and entry.result.get("event") == event_id:
                return entry
        return None

    def _containing(
        self, actions: sa.ColumnElement[bool], needles: list[str], limit: int | None = None
    ) -> list[LedgerEntry]:
        """Entries matching ``actions`` whose result's JSON text holds any of ``needles``."""
        query = (
            _ENTRIES.where(
                actions, sa.or_(*(ledger.c.result.contains(n, autoescape=True) for n in needles))
            )
            .order_by(ledger.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(query)]

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
                except BadEntryError as exc:
                    reason = f"entry {row.seq} unreadable: {exc.reason}"
                    return VerifyReport(False, count, row.seq, reason)
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
