"""Events: one stored row per decided face track, in the gallery's database (schema v2).

Evidence rules (see DESIGN.md, "accountable by design"):

- a KNOWN subject's event keeps the best aligned crop (PNG) until the subject is removed
  from the gallery (``Gallery.remove`` erases the crops; the rows stay, ``subject_id``
  becomes NULL through the foreign key);
- an UNKNOWN face's event keeps no crop, unless ``keep_unknown`` (a duration) is given:
  then the crop is kept with ``expires_at = now + keep_unknown`` and
  :meth:`EventStore.purge_expired` erases it (the row and its scores stay).
"""

from __future__ import annotations

import builtins
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from PIL import Image

from faceledger.db import Store, engine_with_schema
from faceledger.db.engine import write_txn
from faceledger.db.schema import events, outbox, reviews, subjects
from faceledger.errors import NotFoundError
from faceledger.gallery.watchlists import reviews_needed

if TYPE_CHECKING:
    from faceledger.video.scan import TrackDecision

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware (UTC)."""

EVENTS_SCHEMA = 4
"""The gallery schema version whose events table this module writes (v2 made the table,
v4 added the review columns)."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """Fixed-width UTC ISO text (microseconds), so that text order is time order in SQL."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def engine_of(store: Store) -> sa.Engine:
    """The engine of a gallery, checked to hold the events tables (schema v2 or later)."""
    return engine_with_schema(store, EVENTS_SCHEMA, "events tables")


INSUFFICIENT = "insufficient_quality"
"""The status of an event whose track was too poor to decide (no one named)."""


@dataclass(frozen=True)
class EventRecord:
    """One stored event. ``crop_png`` is loaded by :meth:`EventStore.get` only."""

    id: int
    created_at: str
    source: str
    camera: str | None
    track_id: int
    first_t: float
    last_t: float
    started_at: str | None
    subject: str | None
    subject_id: int | None
    score: float
    threshold: float
    threshold_fmr: float
    model_id: str
    status: str
    has_crop: bool
    expires_at: str | None
    review: str | None = None
    """None (no review asked), pending, confirmed or rejected."""
    reviews_needed: int = 0
    crop_png: bytes | None = field(default=None, repr=False)

    @property
    def known(self) -> bool:
        return self.subject is not None

    @property
    def decision(self) -> str:
        """match, unknown or insufficient_quality (the track was too poor to decide)."""
        if self.status == INSUFFICIENT:
            return INSUFFICIENT
        return "match" if self.subject is not None else "unknown"

    def as_json(self) -> dict[str, Any]:
        """What sinks receive: everything but the crop itself."""
        return {
            "id": self.id,
            "created_at": self.created_at,
            "source": self.source,
            "camera": self.camera,
            "track": self.track_id,
            "first_t": round(self.first_t, 3),
            "last_t": round(self.last_t, 3),
            "started_at": self.started_at,
            "decision": self.decision,
            "subject": self.subject,
            "score": round(self.score, 4),
            "threshold": round(self.threshold, 4),
            "threshold_fmr": self.threshold_fmr,
            "model": self.model_id,
            "status": self.status,
            "has_crop": self.has_crop,
            "expires_at": self.expires_at,
            "review": self.review,
            "reviews_needed": self.reviews_needed,
        }


_COLUMNS = (
    events.c.id,
    events.c.created_at,
    events.c.source,
    events.c.camera,
    events.c.track_id,
    events.c.first_t,
    events.c.last_t,
    events.c.started_at,
    events.c.subject,
    events.c.subject_id,
    events.c.score,
    events.c.threshold,
    events.c.threshold_fmr,
    events.c.model_id,
    events.c.status,
    events.c.best_crop_png.is_not(None).label("has_crop"),
    events.c.expires_at,
    events.c.review,
    events.c.reviews_needed,
)


class EventStore:
    """Events in the gallery database; pass a :class:`Gallery` or its ``sa.Engine``."""

    def __init__(self, store: Store, *, clock: Clock = utc_now) -> None:
        self.engine = engine_of(store)
        self.clock = clock

    def add(
        self,
        decision: TrackDecision,
        camera: str | None,
        model_id: str,
        keep_unknown: timedelta | None = None,
        *,
        started_at: datetime | None = None,
        within: Callable[[sa.Connection, int, TrackDecision], None] | None = None,
    ) -> int:
        """Store one decision; returns the event id. ``started_at``: wall clock of first_t.
        ``within(conn, event_id, stored)`` runs inside the insert's transaction (its ledger
        entry), with the decision as stored: one naming a subject erased after the match
        was made is stored ``unknown``, their name kept nowhere (the erasure came first)."""
        match = decision.match
        stamp = self.clock()
        crop: bytes | None = None
        expires_at: str | None = None
        needed = 0
        # Holding the write lock from the start: the subject (and its watch lists) read here
        # cannot be removed before the insert names it.
        with write_txn(self.engine) as conn:
            subject_id = None
            if match.subject is not None:
                subject_id = conn.execute(
                    sa.select(subjects.c.id).where(subjects.c.name == match.subject)
                ).scalar()
                # A subject removed meanwhile leaves no crop behind, as Gallery.remove does.
                if subject_id is not None and decision.best_crop is not None:
                    crop = _png(decision.best_crop)
                if subject_id is not None:
                    needed = reviews_needed(conn, subject_id)
                else:  # erased between the match and now
                    decision = _unnamed(decision)
                    match = decision.match
            elif keep_unknown is not None and decision.best_crop is not None:
                crop = _png(decision.best_crop)
                expires_at = iso(stamp + keep_unknown)
            inserted = conn.execute(
                events.insert().values(
                    created_at=iso(stamp),
                    source=decision.source,
                    camera=camera,
                    track_id=decision.track_id,
                    first_t=float(decision.first_t),
                    last_t=float(decision.last_t),
                    started_at=None if started_at is None else iso(started_at),
                    subject=match.subject,
                    subject_id=subject_id,
                    score=float(match.score),
                    threshold=float(match.threshold.value),
                    threshold_fmr=float(match.threshold.fmr),
                    model_id=model_id,
                    status=INSUFFICIENT if match.decision == INSUFFICIENT else "decided",
                    best_crop_png=crop,
                    expires_at=expires_at,
                    review="pending" if needed else None,
                    reviews_needed=needed,
                )
            )
            event_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
            if within is not None:
                within(conn, event_id, decision)
            return event_id

    def list(
        self,
        *,
        source: str | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        review: str | None = None,
        camera: str | None = None,
    ) -> builtins.list[EventRecord]:
        """The newest ``limit`` events (newest first), optionally filtered; no crops loaded."""
        query = sa.select(*_COLUMNS).order_by(events.c.id.desc()).limit(limit)
        if review is not None:
            query = query.where(events.c.review == review)
        if camera is not None:
            query = query.where(events.c.camera == camera)
        if source is not None:
            query = query.where(events.c.source == source)
        if subject is not None:
            query = query.where(events.c.subject == subject)
        if since is not None:
            query = query.where(events.c.created_at >= iso(since))
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query).all()]

    def get(self, event_id: int) -> EventRecord:
        """One event with its crop (if one is kept); NotFoundError if there is none."""
        query = sa.select(*_COLUMNS, events.c.best_crop_png).where(events.c.id == event_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"no event {event_id}")
        crop = row.best_crop_png
        return _record(row, None if crop is None else bytes(crop))

    def changed(
        self, after_event: int, after_review: int, limit: int = 200
    ) -> tuple[builtins.list[EventRecord], int, int]:
        """Events made after event ``after_event``, then events reviewed after review
        ``after_review`` (at most ``limit`` of each, oldest first), and the cursor to ask
        from next: (events, last event id, last review id). ``changed(-1, -1)`` returns
        nothing but the cursor (now)."""
        with self.engine.connect() as conn:
            if after_event < 0:
                top_event = conn.execute(sa.select(sa.func.max(events.c.id))).scalar()
                top_review = conn.execute(sa.select(sa.func.max(reviews.c.id))).scalar()
                return [], int(top_event or 0), int(top_review or 0)
            made = conn.execute(
                sa.select(*_COLUMNS)
                .where(events.c.id > after_event)
                .order_by(events.c.id)
                .limit(limit)
            ).all()
            decided = conn.execute(
                sa.select(reviews.c.id, reviews.c.event_id)
                .where(reviews.c.id > after_review)
                .order_by(reviews.c.id)
                .limit(limit)
            ).all()
            found = [_record(row) for row in made]
            sent = {r.id for r in found}
            wanted = list(dict.fromkeys(e for _, e in decided if e not in sent))
            if wanted:  # their state now, after the reviews counted
                query = sa.select(*_COLUMNS).where(events.c.id.in_(wanted)).order_by(events.c.id)
                found += [_record(row) for row in conn.execute(query).all()]
        next_event = found[len(made) - 1].id if made else after_event
        next_review = int(decided[-1][0]) if decided else after_review
        return found, next_event, next_review

    def cameras(self) -> builtins.list[dict[str, Any]]:
        """The cameras that events came from: name, event count, last event time."""
        query = (
            sa.select(events.c.camera, sa.func.count(), sa.func.max(events.c.created_at))
            .where(events.c.camera.is_not(None))
            .group_by(events.c.camera)
            .order_by(events.c.camera)
        )
        with self.engine.connect() as conn:
            return [
                {"camera": name, "events": int(n), "last_event_at": last}
                for name, n, last in conn.execute(query).all()
            ]

    def queue_counts(self) -> dict[str, int]:
        """Events waiting for review, and webhook deliveries waiting in the outbox."""
        with self.engine.connect() as conn:
            pending = conn.execute(
                sa.select(sa.func.count()).where(events.c.review == "pending")
            ).scalar()
            queued = conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar()
        return {"pending_reviews": int(pending or 0), "outbox": int(queued or 0)}

    def purge_expired(self) -> int:
        """Erase the crops whose time is up; the events (and expires_at) stay. Returns count."""
        with self.engine.begin() as conn:
            return erase_expired_crops(conn, self.clock())


def erase_expired_crops(conn: sa.Connection, moment: datetime) -> int:
    """Erase, inside the caller's transaction, the crops whose ``expires_at`` is past at
    ``moment`` (strangers' crops kept with --keep-unknown); returns how many."""
    result = conn.execute(
        events.update()
        .where(events.c.best_crop_png.is_not(None))
        .where(events.c.expires_at <= iso(moment))
        .values(best_crop_png=None)
    )
    return int(result.rowcount)


def _record(row: Any, crop: bytes | None = None) -> EventRecord:
    values = {k: v for k, v in row._mapping.items() if k != "best_crop_png"}
    values["has_crop"] = bool(values["has_crop"])
    return EventRecord(**values, crop_png=crop)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _unnamed(decision: TrackDecision) -> TrackDecision:
    """``decision`` as if its subject had never been enrolled: unknown, and the erased
    name dropped from the candidates too."""
    from dataclasses import replace

    from faceledger.types import Match

    gone = decision.match.subject
    match = decision.match
    kept = tuple(c for c in match.candidates if c.subject != gone)
    unnamed = Match(None, match.score, match.threshold, kept, match.quality)
    return replace(decision, match=unnamed, best_crop=None)
