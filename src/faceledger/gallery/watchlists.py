"""Watch lists: named groups of subjects with a review rule (schema v4).

A list with ``review`` makes every event that names one of its subjects wait as
``pending`` until a person confirms it; ``two_person`` asks for two different reviewers
(the EU AI Act's rule for remote biometric identification). A subject on several lists
gets the strictest rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faceledger.db import Store, engine_with_schema
from faceledger.db.engine import write_txn
from faceledger.db.schema import subjects, watchlist_members, watchlists
from faceledger.errors import ConfigError, ConflictError, NotFoundError
from faceledger.gallery.store import now

SERVICE_SCHEMA = 4
"""The first gallery schema version with API keys, watch lists and reviews."""


@dataclass(frozen=True)
class WatchList:
    name: str
    review: bool
    two_person: bool
    created_at: str
    subjects: tuple[str, ...]

    @property
    def reviews_needed(self) -> int:
        return 2 if self.two_person else (1 if self.review else 0)

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "review": self.review,
            "two_person": self.two_person,
            "reviews_needed": self.reviews_needed,
            "created_at": self.created_at,
            "subjects": list(self.subjects),
        }


class WatchLists:
    """The watch lists of one gallery; pass a :class:`Gallery` or its engine."""

    def __init__(self, store: Store) -> None:
        self.engine = engine_with_schema(store, SERVICE_SCHEMA, "watch lists")

    def create(
        self,
        name: str,
        review: bool = False,
        two_person: bool = False,
        within: Callable[[Connection, WatchList], None] | None = None,
    ) -> WatchList:
        """A new, empty list; ``two_person`` implies ``review``."""
        name = name.strip()
        if not name:
            raise ConfigError("a watch list needs a name")
        review = review or two_person
        with write_txn(self.engine) as conn:
            taken = conn.execute(sa.select(watchlists.c.id).where(watchlists.c.name == name))
            if taken.first() is not None:
                raise ConflictError(f"a watch list named {name!r} exists already")
            stamp = now()
            conn.execute(
                watchlists.insert().values(
                    name=name, review=review, two_person=two_person, created_at=stamp
                )
            )
            made = WatchList(name, review, two_person, stamp, ())
            if within is not None:
                within(conn, made)
        return made

    def add(self, conn: Connection, subject: str, names: Sequence[str]) -> None:
        """Put ``subject`` on the lists ``names`` inside the caller's transaction."""
        subject_id = conn.execute(sa.select(subjects.c.id).where(subjects.c.name == subject))
        sid = subject_id.scalar()
        if sid is None:
            raise NotFoundError(f"no subject named {subject!r}")
        for name in names:
            wid = conn.execute(sa.select(watchlists.c.id).where(watchlists.c.name == name)).scalar()
            if wid is None:
                raise NotFoundError(f"no watch list named {name!r}; create it first")
            member = watchlist_members.c
            present = conn.execute(
                sa.select(member.watchlist_id)
                .where(member.watchlist_id == wid)
                .where(member.subject_id == sid)
            ).first()
            if present is None:
                conn.execute(watchlist_members.insert().values(watchlist_id=wid, subject_id=sid))

    def all(self) -> list[WatchList]:
        query = (
            sa.select(
                watchlists.c.name,
                watchlists.c.review,
                watchlists.c.two_person,
                watchlists.c.created_at,
                subjects.c.name.label("subject"),
            )
            .select_from(
                watchlists.outerjoin(watchlist_members).outerjoin(
                    subjects, subjects.c.id == watchlist_members.c.subject_id
                )
            )
            .order_by(watchlists.c.name, subjects.c.name)
        )
        found: dict[str, WatchList] = {}
        with self.engine.connect() as conn:
            for name, review, two, created, subject in conn.execute(query):
                old = found.get(name) or WatchList(name, bool(review), bool(two), created, ())
                members = (*old.subjects, subject) if subject is not None else old.subjects
                found[name] = WatchList(name, old.review, old.two_person, created, members)
        return list(found.values())

    def of(self, subject: str) -> list[str]:
        """The names of the lists ``subject`` is on."""
        query = (
            sa.select(watchlists.c.name)
            .select_from(
                watchlists.join(watchlist_members).join(
                    subjects, subjects.c.id == watchlist_members.c.subject_id
                )
            )
            .where(subjects.c.name == subject)
            .order_by(watchlists.c.name)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())


def reviews_needed(conn: Connection, subject_id: int) -> int:
    """Confirmations an event naming ``subject_id`` needs: 0, 1, or 2 (two-person rule)."""
    query = (
        sa.select(watchlists.c.review, watchlists.c.two_person)
        .join(watchlist_members)
        .where(watchlist_members.c.subject_id == subject_id)
    )
    needed = 0
    for review, two in conn.execute(query):
        needed = max(needed, 2 if two else (1 if review else 0))
    return needed
