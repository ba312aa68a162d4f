"""The retention job: delete what has outlived its configured lifetime, and log it.

- events older than ``keep_events`` are deleted, with their reviews;
- known subjects' face crops in events older than ``keep_evidence`` are erased (the event,
  its scores and its review stay until ``keep_events``);
- strangers' crops (kept only when asked, see ``keep_unknown``) are erased when they expire;
- the audit ledger is never deleted.

The deletions and the ledger entry that records them are one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Connection

from faceledger.db import Store, database_of, engine_with_schema
from faceledger.db.engine import write_txn
from faceledger.db.schema import events
from faceledger.events.store import EVENTS_SCHEMA, Clock, erase_expired_crops, iso, utc_now
from faceledger.ledger.chain import LedgerEntry


@dataclass(frozen=True)
class Policy:
    keep_events: timedelta
    keep_evidence: timedelta


@dataclass(frozen=True)
class RetentionReport:
    events_deleted: int
    evidence_erased: int
    unknown_erased: int
    events_before: str
    evidence_before: str
    ledger_seq: int

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def run_retention(
    store: Store,
    policy: Policy,
    record: Callable[[Connection, dict[str, Any]], LedgerEntry],
    *,
    clock: Clock = utc_now,
) -> RetentionReport:
    """Apply ``policy`` now; returns what was removed. ``record(conn, counts)`` writes the
    run's ledger entry inside the same transaction."""
    engine = engine_with_schema(store, EVENTS_SCHEMA, "events tables")
    moment = clock()
    events_before = iso(moment - policy.keep_events)
    evidence_before = iso(moment - policy.keep_evidence)
    with write_txn(engine) as conn:
        deleted = conn.execute(events.delete().where(events.c.created_at < events_before))
        evidence = conn.execute(
            events.update()
            .where(events.c.subject.is_not(None))
            .where(events.c.best_crop_png.is_not(None))
            .where(events.c.created_at < evidence_before)
            .values(best_crop_png=None)
        )
        counts = {
            "events_deleted": int(deleted.rowcount),
            "evidence_erased": int(evidence.rowcount),
            "unknown_erased": erase_expired_crops(conn, moment),
            "events_before": events_before,
            "evidence_before": evidence_before,
        }
        entry = record(conn, counts)
    db = database_of(store)
    if db is not None:
        db.scrub()
    return RetentionReport(**counts, ledger_seq=entry.seq)  # type: ignore[arg-type]
