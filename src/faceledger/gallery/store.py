"""The gallery: subjects (with their legal basis) and templates, in SQL via SQLAlchemy Core.

The tables, their migrations and the SQLite/PostgreSQL differences are in
``faceledger.db``; this module reads and writes subjects and templates. Every write that
belongs together (one subject's enrollment, a re-embedding of the whole gallery) is one
transaction: on any error nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faceledger.db import Database, DatabaseUrl
from faceledger.db.engine import distinct_agg, write_txn
from faceledger.db.schema import events, meta_table, subjects, templates
from faceledger.errors import (
    ConfigError,
    ConflictError,
    ModelMismatchError,
    NotFoundError,
    StorageError,
)

Within = Callable[[Connection, bool], None]
"""Called inside a write's transaction, before it commits (e.g. to append the ledger
entry that records it, so the write and its record land together or not at all)."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class NewTemplate:
    embedding: np.ndarray
    model_id: str
    source_name: str
    source_sha256: str
    quality: float
    det_score: float
    crop_png: bytes
    crop_geometry: dict[str, Any]
    """Box and landmarks of the face inside the stored crop."""


@dataclass(frozen=True)
class SubjectInfo:
    name: str
    legal_basis: str
    created_at: str
    templates: int
    models: tuple[str, ...]


@dataclass(frozen=True)
class TemplateInfo:
    id: int
    model_id: str
    source_name: str
    source_sha256: str
    quality: float
    legal_basis: str
    created_at: str


@dataclass(frozen=True)
class Erasure:
    """What removing a subject erased (for its ledger entry: counts and hashes only)."""

    name: str
    templates: int
    evidence_crops: int
    source_sha256: tuple[str, ...]


@dataclass(frozen=True)
class StoredCrop:
    template_id: int
    crop_png: bytes
    geometry: dict[str, Any]


class Gallery:
    """The subjects and templates of one database (a :class:`Database`, or what ``--db``
    names: a SQLite file or a PostgreSQL URL, opened here and closed with the gallery)."""

    def __init__(self, target: Database | str | Path | DatabaseUrl) -> None:
        self._owns = not isinstance(target, Database)
        self.db = target if isinstance(target, Database) else Database(target)
        self.engine = self.db.engine
        self.name = self.db.name
        """The database's name in messages (a file's path; a URL without its password)."""
        self.path: Path | str = self.db.url.path or self.db.name
        """The SQLite file (for a server: its name, as :attr:`name`)."""

    def close(self) -> None:
        if self._owns:
            self.db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- models -------------------------------------------------------------------------

    def model_counts(self) -> dict[str, int]:
        query = sa.select(templates.c.model_id, sa.func.count()).group_by(templates.c.model_id)
        with self.engine.connect() as conn:
            return {m: int(n) for m, n in conn.execute(query).all()}

    def require_model(self, model_id: str) -> None:
        """Raise ModelMismatchError when templates of another model are present."""
        others = {m: n for m, n in self.model_counts().items() if m != model_id}
        if others:
            found = ", ".join(f"{n} templates of {m}" for m, n in sorted(others.items()))
            raise ModelMismatchError(
                f"{self.name}: gallery holds {found}, which cannot be compared with {model_id} "
                f"vectors. Re-embed it first: faceledger gallery reembed --profile <profile>"
            )

    # ---- writes -------------------------------------------------------------------------

    def enroll(
        self,
        name: str,
        legal_basis: str | None,
        new: Sequence[NewTemplate],
        within: Within | None = None,
    ) -> bool:
        """Add ``new`` templates to subject ``name`` in one transaction; True if created.

        ``within(conn, created)`` runs inside that transaction, before it commits."""
        if not new:
            raise StorageError(f"no templates to enroll for {name!r}")
        model_ids = sorted({t.model_id for t in new})
        if len(model_ids) > 1:
            raise ModelMismatchError(
                f"{self.name}: templates for {name!r} come from several models "
                f"({', '.join(model_ids)}); enroll with one embedder"
            )
        self.require_model(model_ids[0])
        stamp = now()
        with write_txn(self.engine) as conn:
            row = conn.execute(
                sa.select(subjects.c.id, subjects.c.legal_basis).where(subjects.c.name == name)
            ).first()
            created = row is None
            if row is None:
                if not legal_basis:
                    raise StorageError(
                        f"subject {name!r} is new: a legal basis is required (--basis)"
                    )
                inserted = conn.execute(
                    subjects.insert().values(name=name, legal_basis=legal_basis, created_at=stamp)
                )
                subject_id = inserted.inserted_primary_key[0]  # type: ignore[index]
            else:
                subject_id = row.id
                legal_basis = legal_basis or row.legal_basis
            conn.execute(
                templates.insert(),
                [
                    {
                        "subject_id": subject_id,
                        "model_id": t.model_id,
                        "embedding": np.asarray(t.embedding, dtype="<f4").tobytes(),
                        "dim": int(np.size(t.embedding)),
                        "legal_basis": legal_basis,
                        "source_name": t.source_name,
                        "source_sha256": t.source_sha256,
                        "quality": float(t.quality),
                        "det_score": float(t.det_score),
                        "crop_png": t.crop_png,
                        "crop_geometry": json.dumps(t.crop_geometry),
                        "created_at": stamp,
                    }
                    for t in new
                ],
            )
            self._bump(conn)
            if within is not None:
                within(conn, created)
        return created

    def remove(self, name: str, within: Callable[[Connection, Erasure], None] | None = None) -> int:
        """Erase a subject: its templates, their crops, the evidence crops of its events and
        its watch-list memberships, in one transaction; returns templates removed.

        Its events stay (name, scores: the record of what was decided) with ``subject_id``
        set NULL by the foreign key. ``within(conn, erasure)`` runs before the commit.
        """
        with write_txn(self.engine) as conn:
            subject_id = conn.execute(
                sa.select(subjects.c.id).where(subjects.c.name == name)
            ).scalar()
            if subject_id is None:
                raise NotFoundError(f"no subject named {name!r} in {self.name}")
            digests = tuple(
                conn.execute(
                    sa.select(templates.c.source_sha256)
                    .where(templates.c.subject_id == subject_id)
                    .order_by(templates.c.id)
                ).scalars()
            )
            crops = conn.execute(
                events.update()
                .where(events.c.subject_id == subject_id)
                .where(events.c.best_crop_png.is_not(None))
                .values(best_crop_png=None)
            )
            removed = conn.execute(templates.delete().where(templates.c.subject_id == subject_id))
            conn.execute(subjects.delete().where(subjects.c.id == subject_id))
            self._bump(conn)
            if within is not None:
                within(conn, Erasure(name, int(removed.rowcount), int(crops.rowcount), digests))
        self.flush_erased()
        return int(removed.rowcount)

    def create_subject(
        self, name: str, legal_basis: str, within: Within | None = None
    ) -> SubjectInfo:
        """A subject with no templates yet (the API enrolls photos into it afterwards)."""
        name, legal_basis = name.strip(), legal_basis.strip()
        if not name or not legal_basis:
            raise ConfigError("a subject needs a name and the legal basis for enrolling them")
        stamp = now()
        with write_txn(self.engine) as conn:
            taken = conn.execute(sa.select(subjects.c.id).where(subjects.c.name == name)).first()
            if taken is not None:
                raise ConflictError(f"a subject named {name!r} exists already in {self.name}")
            conn.execute(
                subjects.insert().values(name=name, legal_basis=legal_basis, created_at=stamp)
            )
            if within is not None:
                within(conn, True)
        return SubjectInfo(name, legal_basis, stamp, 0, ())

    def flush_erased(self) -> None:
        """Leave no erased bytes in the database's files (see ``Database.scrub``); never
        waits for readers: a pending scrub completes after a later write."""
        self.db.scrub()

    def remove_template(
        self,
        name: str,
        template_id: int,
        within: Callable[[Connection, Erasure], None] | None = None,
    ) -> Erasure:
        """Delete one template (and its crop) of subject ``name``."""
        with write_txn(self.engine) as conn:
            row = conn.execute(
                sa.select(templates.c.id, templates.c.source_sha256)
                .join(subjects)
                .where(subjects.c.name == name)
                .where(templates.c.id == template_id)
            ).first()
            if row is None:
                raise NotFoundError(
                    f"subject {name!r} has no template {template_id} in {self.name}"
                )
            conn.execute(templates.delete().where(templates.c.id == template_id))
            self._bump(conn)
            erasure = Erasure(name, 1, 0, (row.source_sha256,))
            if within is not None:
                within(conn, erasure)
        self.flush_erased()
        return erasure

    def revision(self) -> int:
        """A number that changes whenever templates change (in any process)."""
        query = sa.select(meta_table.c.value).where(meta_table.c.key == "templates_revision")
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    @staticmethod
    def _bump(conn: Connection) -> None:
        key = meta_table.c.key == "templates_revision"
        current = conn.execute(sa.select(meta_table.c.value).where(key)).scalar()
        if current is None:
            conn.execute(meta_table.insert().values(key="templates_revision", value="1"))
        else:
            conn.execute(meta_table.update().where(key).values(value=str(int(current) + 1)))

    def replace_embeddings(
        self, model_id: str, vectors: dict[int, np.ndarray], within: Within | None = None
    ) -> None:
        """Swap every template's embedding for one of ``model_id`` (one transaction);
        ``within(conn, False)`` runs before it commits."""
        with write_txn(self.engine) as conn:
            self._bump(conn)
            ids = set(conn.execute(sa.select(templates.c.id)).scalars())
            if ids != set(vectors):
                raise StorageError(f"{self.name}: templates changed during re-embedding; retry")
            for template_id, vector in vectors.items():
                conn.execute(
                    templates.update()
                    .where(templates.c.id == template_id)
                    .values(
                        model_id=model_id,
                        embedding=np.asarray(vector, dtype="<f4").tobytes(),
                        dim=int(np.size(vector)),
                    )
                )
            if within is not None:
                within(conn, False)

    # ---- reads --------------------------------------------------------------------------

    def has_subject(self, name: str) -> bool:
        with self.engine.connect() as conn:
            query = sa.select(subjects.c.id).where(subjects.c.name == name)
            return conn.execute(query).first() is not None

    def subjects(self) -> list[SubjectInfo]:
        query = (
            sa.select(
                subjects.c.name,
                subjects.c.legal_basis,
                subjects.c.created_at,
                sa.func.count(templates.c.id),
                distinct_agg(templates.c.model_id, self.engine.dialect.name),
            )
            .select_from(subjects.outerjoin(templates))
            .group_by(subjects.c.id)
            .order_by(subjects.c.name)
        )
        with self.engine.connect() as conn:
            return [
                SubjectInfo(name, basis, created, int(n), _model_ids(models))
                for name, basis, created, n, models in conn.execute(query).all()
            ]

    def subject(self, name: str) -> tuple[SubjectInfo, list[TemplateInfo]]:
        info = next((s for s in self.subjects() if s.name == name), None)
        if info is None:
            raise NotFoundError(f"no subject named {name!r} in {self.name}")
        query = (
            sa.select(
                templates.c.id,
                templates.c.model_id,
                templates.c.source_name,
                templates.c.source_sha256,
                templates.c.quality,
                templates.c.legal_basis,
                templates.c.created_at,
            )
            .join(subjects)
            .where(subjects.c.name == name)
            .order_by(templates.c.id)
        )
        with self.engine.connect() as conn:
            return info, [TemplateInfo(*row) for row in conn.execute(query).all()]

    def vectors(self, model_id: str) -> tuple[np.ndarray, np.ndarray]:
        """All templates as ((n, d) float32 vectors, (n,) subject names); checks the model."""
        self.require_model(model_id)
        query = (
            sa.select(templates.c.embedding, subjects.c.name)
            .join(subjects)
            .order_by(templates.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return np.zeros((0, 0), np.float32), np.zeros((0,), dtype=object)
        vectors = np.stack([np.frombuffer(blob, dtype="<f4") for blob, _ in rows])
        names = np.array([name for _, name in rows], dtype=object)
        return vectors.astype(np.float32), names

    def crops(self) -> Iterator[StoredCrop]:
        query = sa.select(templates.c.id, templates.c.crop_png, templates.c.crop_geometry).order_by(
            templates.c.id
        )
        with self.engine.connect() as conn:
            for template_id, png, geometry in conn.execute(query):
                yield StoredCrop(int(template_id), bytes(png), json.loads(geometry))


def _model_ids(joined: str | None) -> tuple[str, ...]:
    """GROUP_CONCAT's text -> sorted model ids (none for a subject without templates)."""
    return tuple(sorted(m for m in (joined or "").split(",") if m))
