"""Keys, watch lists, retention and the ledger itself, on the record."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import IO, Any

from sqlalchemy.engine import Connection

from faceledger.access import ApiKey, Role
from faceledger.events.store import erase_expired_crops
from faceledger.gallery.watchlists import WatchList
from faceledger.ledger.audit import key_summary
from faceledger.ledger.chain import LedgerEntry, LedgerRecord, VerifyReport
from faceledger.ledger.retention import Policy, RetentionReport, run_retention
from faceledger.operations.acting import Acting
from faceledger.operations.base import OperationsBase, Recorded


class AdminOperations(OperationsBase):
    # ---- API keys -----------------------------------------------------------------------

    def create_key(self, acting: Acting, name: str, role: Role) -> Recorded[tuple[str, ApiKey]]:
        """A new key: (the token, shown only now; its record)."""
        done: list[LedgerEntry] = []

        def record(key: ApiKey) -> LedgerRecord:
            return acting.record("key.create", key_summary(key))

        token, key = self.keys.create(name, role, acting.actor, self._hook(record, done))
        return Recorded((token, key), done[0])

    def revoke_key(self, acting: Acting, key_id: str) -> Recorded[ApiKey]:
        done: list[LedgerEntry] = []

        def record(key: ApiKey) -> LedgerRecord:
            return acting.record("key.revoke", key_summary(key))

        return Recorded(self.keys.revoke(key_id, self._hook(record, done)), done[0])

    def list_keys(self) -> list[ApiKey]:
        return self.keys.all()

    def authenticate(self, token: str) -> ApiKey | None:
        return self.keys.authenticate(token)

    # ---- watch lists --------------------------------------------------------------------

    def create_watchlist(
        self, acting: Acting, name: str, review: bool = False, two_person: bool = False
    ) -> Recorded[WatchList]:
        done: list[LedgerEntry] = []

        def record(made: WatchList) -> LedgerRecord:
            return acting.record("watchlist.create", made.as_json())

        made = self.watchlists.create(name, review, two_person, self._hook(record, done))
        return Recorded(made, done[0])

    def add_to_watchlist(
        self, acting: Acting, name: str, subjects: Sequence[str]
    ) -> Recorded[list[str]]:
        """Put enrolled subjects on a watch list: all of them or none."""
        wanted = list(dict.fromkeys(subjects))
        with self.db.write() as conn:
            for subject in wanted:
                self.watchlists.add(conn, subject, [name])
            record = acting.record("watchlist.add", {"watchlist": name, "subjects": wanted})
            entry = self._log_in(conn, record)
        return Recorded(wanted, entry)

    def list_watchlists(self) -> list[WatchList]:
        return self.watchlists.all()

    def watchlists_of(self, subject: str) -> list[str]:
        return self.watchlists.of(subject)

    # ---- retention ----------------------------------------------------------------------

    def run_retention(self, acting: Acting, policy: Policy | None = None) -> RetentionReport:
        """Delete what outlived its configured lifetime; the deletions and their entry are
        one transaction."""
        policy = policy or Policy(self.config.keep_events, self.config.keep_evidence)

        def record(conn: Connection, counts: dict[str, Any]) -> LedgerEntry:
            return self._log_in(conn, acting.record("retention.run", counts))

        return run_retention(self.gallery, policy, record, clock=self.clock)

    def purge_expired(self, acting: Acting) -> int:
        """Erase strangers' crops whose time is up (kept only with --keep-unknown); when
        any were, the erasure and its entry are one transaction. Returns how many."""
        with self.db.write() as conn:
            erased = erase_expired_crops(conn, self.clock())
            if erased:
                self._log_in(conn, acting.record("retention.expired", {"unknown_erased": erased}))
        if erased:
            self.db.scrub()
        return erased

    # ---- the ledger, read ---------------------------------------------------------------

    def audit_entries(
        self,
        since: datetime | None = None,
        action: str | None = None,
        actor: str | None = None,
        limit: int | None = None,
        *,
        newest: bool = False,
    ) -> list[LedgerEntry]:
        return self.ledger.entries(since, action, actor, limit, newest=newest)

    def audit_verify(self, expected_head: str | None = None) -> VerifyReport:
        return self.ledger.verify(expected_head)

    def audit_export(self, fp: IO[str]) -> int:
        return self.ledger.export(fp)

    def audit_head(self) -> str:
        return self.ledger.head()

    def status(self) -> dict[str, Any]:
        """What a status page shows: models, gallery size, queues, retention, cameras."""
        engine = self.engine  # made, not loaded: the model cards and settings
        subjects = self.gallery.subjects()
        config = self.config

        def days(value: timedelta | None) -> float | None:
            return None if value is None else round(value.total_seconds() / 86400, 3)

        return {
            "profile": config.profile,
            "model": self.model_id,
            "detector": self.detector_id,
            "models_loaded": self.loaded,
            "schema_version": self.schema_version,
            "database": self.db_name,
            "strictness": config.strictness,
            "quality_floor": engine.quality_floor,
            "gallery": {
                "subjects": len(subjects),
                "templates": sum(s.templates for s in subjects),
                "watchlists": len(self.watchlists.all()),
            },
            "queues": self.events.queue_counts(),
            "retention": {
                "keep_events_days": days(config.keep_events),
                "keep_evidence_days": days(config.keep_evidence),
                "keep_unknown_days": days(config.keep_unknown),
            },
            "cameras": self.events.cameras(),
        }

    def queue_counts(self) -> dict[str, int]:
        """Pending reviews and undelivered outbox rows (for metrics)."""
        return self.events.queue_counts()
