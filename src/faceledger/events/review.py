"""Human review of events: confirm or reject, with the two-person rule (schema v4).

An event whose subject is on a watch list with ``review`` starts ``pending``; it becomes
``confirmed`` once as many *different* reviewers as its ``reviews_needed`` (2 on a
two-person list) have confirmed it, and ``rejected`` as soon as one reviewer rejects it.
A decided event takes no more reviews. Events that asked for no review may still be
confirmed or rejected by one reviewer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faceledger.db import Store, engine_with_schema
from faceledger.db.engine import write_txn
from faceledger.db.schema import events, reviews
from faceledger.errors import ConfigError, ConflictError, NotFoundError
from faceledger.events.store import EVENTS_SCHEMA, Clock, iso, utc_now

Decision = Literal["confirm", "reject"]
DECISIONS: tuple[str, ...] = ("confirm", "reject")


@dataclass(frozen=True)
class Review:
    reviewer: str
    decision: str
    comment: str | None
    at: str

    def as_json(self) -> dict[str, Any]:
        return {"reviewer": self.reviewer, "decision": self.decision, "comment": self.comment,
                "at": self.at}  # fmt: skip


@dataclass(frozen=True)
class ReviewState:
    """An event's review after a decision: its state and every review so far."""

    event_id: int
    review: str
    confirmations: int
    needed: int
    reviews: tuple[Review, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "event": self.event_id,
            "review": self.review,
            "confirmations": self.confirmations,
            "needed": self.needed,
            "reviews": [r.as_json() for r in self.reviews],
        }


class Reviews:
    """Reviews of the events in one gallery; pass a :class:`Gallery` or its engine."""

    def __init__(self, store: Store, *, clock: Clock = utc_now) -> None:
        self.engine = engine_with_schema(store, EVENTS_SCHEMA, "reviews")
        self.clock = clock

    def decide(
        self,
        event_id: int,
        reviewer: str,
        decision: str,
        comment: str | None = None,
        within: Callable[[Connection, ReviewState], None] | None = None,
    ) -> ReviewState:
        """Record one reviewer's decision; ``within`` runs before the commit."""
        if decision not in DECISIONS:
            raise ConfigError(
                f"a review decision is one of {', '.join(DECISIONS)}, not {decision!r}"
            )
        if not reviewer:
            raise ConfigError("a review needs the reviewer's name")
        with write_txn(self.engine) as conn:
            row = conn.execute(
                sa.select(events.c.review, events.c.reviews_needed).where(events.c.id == event_id)
            ).first()
            if row is None:
                raise NotFoundError(f"no event {event_id}")
            if row.review in ("confirmed", "rejected"):
                raise ConflictError(
                    f"event {event_id} is already {row.review}; it takes no more reviews"
                )
            before = _reviews(conn, event_id)
            if any(r.reviewer == reviewer for r in before):
                raise ConflictError(
                    f"{reviewer} has already reviewed event {event_id}; "
                    "a different reviewer must decide (two-person rule)"
                )
            conn.execute(
                reviews.insert().values(
                    event_id=event_id,
                    reviewer=reviewer,
                    decision=decision,
                    comment=comment,
                    at=iso(self.clock()),
                )
            )
            done = _reviews(conn, event_id)
            needed = max(1, int(row.reviews_needed))
            confirmations = sum(1 for r in done if r.decision == "confirm")
            if decision == "reject":
                state = "rejected"
            else:
                state = "confirmed" if confirmations >= needed else "pending"
            conn.execute(events.update().where(events.c.id == event_id).values(review=state))
            outcome = ReviewState(event_id, state, confirmations, needed, tuple(done))
            if within is not None:
                within(conn, outcome)
        return outcome

    def of(self, event_id: int) -> tuple[Review, ...]:
        with self.engine.connect() as conn:
            return _reviews(conn, event_id)


def _reviews(conn: Connection, event_id: int) -> tuple[Review, ...]:
    query = (
        sa.select(reviews.c.reviewer, reviews.c.decision, reviews.c.comment, reviews.c.at)
        .where(reviews.c.event_id == event_id)
        .order_by(reviews.c.id)
    )
    return tuple(Review(*row) for row in conn.execute(query))
