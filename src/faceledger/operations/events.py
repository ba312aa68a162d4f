"""Stored events on the record: listing them, viewing evidence, human review."""

from __future__ import annotations

import builtins
import hashlib
from datetime import datetime

from sqlalchemy.engine import Connection

from faceledger.errors import NotFoundError
from faceledger.events.review import Review, ReviewState
from faceledger.events.store import EventRecord
from faceledger.gallery.store import TemplateInfo
from faceledger.ledger.chain import MAX_TEXT, LedgerEntry
from faceledger.operations.acting import Acting
from faceledger.operations.base import OperationsBase, Recorded
from faceledger.text import free_text

COMMENT_MAX = MAX_TEXT // 2
"""The longest review comment kept, in characters."""


class EventOperations(OperationsBase):
    def _require_event_id(self, event_id: int) -> None:
        if self._no_such_id(event_id):
            raise NotFoundError(f"no event {event_id} in {self.db.name}")

    def _event(self, event_id: int) -> EventRecord:
        self._require_event_id(event_id)
        return self.events.get(event_id)

    def list_events(
        self,
        *,
        source: str | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        review: str | None = None,
        camera: str | None = None,
    ) -> builtins.list[EventRecord]:
        """The newest events (newest first), without their crops."""
        return self.events.list(
            source=source, subject=subject, since=since, limit=limit, review=review, camera=camera
        )

    def event(self, event_id: int) -> tuple[EventRecord, tuple[Review, ...]]:
        """One event (its crop withheld: see :meth:`view_evidence`) and its reviews."""
        record = self._event(event_id)
        plain = EventRecord(**{**record.__dict__, "crop_png": None})
        return plain, self.reviews.of(event_id)

    def event_record(self, event_id: int) -> LedgerEntry | None:
        """The ledger entry written with the event: who ran the scan or stream that decided
        it, for which purpose and case (None for events stored without one)."""
        self._require_event_id(event_id)
        return self.ledger.recording_event(event_id)

    def view_evidence(self, acting: Acting, event_id: int) -> Recorded[bytes]:
        """The event's face crop (PNG); each viewing is recorded before the bytes are
        returned. NotFoundError when no crop is kept."""
        record = self._event(event_id)
        if record.crop_png is None:
            raise NotFoundError(f"event {event_id} keeps no face crop")
        digest = hashlib.sha256(record.crop_png).hexdigest()  # exactly what left
        entry = self._log(acting.record("event.crop.view", {"event": event_id}, inputs=[digest]))
        return Recorded(record.crop_png, entry)

    def changed_events(
        self, after_event: int, after_review: int
    ) -> tuple[builtins.list[EventRecord], int, int]:
        """Events made or reviewed since a cursor (a live view's feed):
        :meth:`faceledger.events.store.EventStore.changed`."""
        return self.events.changed(after_event, after_review)

    def cameras(self) -> builtins.list[dict[str, object]]:
        """The cameras events came from, with their event count and last event time."""
        return self.events.cameras()

    def event_templates(self, event_id: int) -> builtins.list[TemplateInfo]:
        """The enrolled templates of the subject an event named (to set beside its
        evidence); none when it named no one or the subject was erased since."""
        record = self._event(event_id)
        if record.subject is None or record.subject_id is None:
            return []
        if not self.gallery.has_subject(record.subject):
            return []
        return self.gallery.subject(record.subject)[1]

    def view_event_template(
        self, acting: Acting, event_id: int, template_id: int
    ) -> Recorded[bytes]:
        """One enrolled template's crop of the subject an event named (a reviewer compares
        it with the evidence); each viewing is recorded. NotFoundError when the template is
        not that subject's."""
        if self._no_such_id(template_id) or template_id not in {
            t.id for t in self.event_templates(event_id)
        }:
            raise NotFoundError(f"event {event_id}'s subject has no template {template_id}")
        _, png = self.gallery.template_crop(template_id)
        digest = hashlib.sha256(png).hexdigest()
        result = {"event": event_id, "template": template_id}
        entry = self._log(acting.record("template.crop.view", result, inputs=[digest]))
        return Recorded(png, entry)

    def review(
        self, acting: Acting, event_id: int, decision: str, comment: str | None = None
    ) -> Recorded[ReviewState]:
        """One reviewer's decision (the acting person); on a two-person list a second,
        different person must confirm. The comment is cleaned (:func:`faceledger.text.
        free_text`); ConfigError when it is longer than :data:`COMMENT_MAX`."""
        comment = free_text(comment, "comment", COMMENT_MAX)
        self._require_event_id(event_id)
        done: list[LedgerEntry] = []

        def within(conn: Connection, state: ReviewState) -> None:
            result = {**state.as_json(), "decision": decision}
            done.append(self._log_in(conn, acting.record("event.review", result)))

        state = self.reviews.decide(event_id, acting.actor, decision, comment, within)
        return Recorded(state, done[0])
