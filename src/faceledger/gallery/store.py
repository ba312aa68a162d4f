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
from faceledger.db.schema import events, meta_table, subjects, template_log, templates
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
    quality_score: float | None = None
    """The face quality score (0-1) the photo was enrolled at (faceledger.faces.quality);
    ``quality`` is the aligned crop's sharpness."""


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
    quality_score: float | None = None
    """The face quality score (0-1) at enrollment; None for templates from before v7."""


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
        query = sa.select(templates.c.model_id).where(templates.c.model_id != model_id).limit(1)
        with self.engine.connect() as conn:
            if conn.execute(query).first() is None:  # the model index answers at once
                return
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
                        "quality_score": t.quality_score,
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
                templates.c.quality_score,
            )
            .join(subjects)
            .where(subjects.c.name == name)
            .order_by(templates.c.id)
        )
        with self.engine.connect() as conn:
            return info, [TemplateInfo(*row) for row in conn.execute(query).all()]

    def template_crop(self, template_id: int) -> tuple[str, bytes]:
        """A template's stored face crop (PNG) and its subject's name; NotFoundError."""
        query = (
            sa.select(subjects.c.name, templates.c.crop_png)
            .join(subjects)
            .where(templates.c.id == template_id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"no template {template_id} in {self.name}")
        return str(row[0]), bytes(row[1])

    def vectors(self, model_id: str) -> tuple[np.ndarray, np.ndarray]:
        """All templates as ((n, d) float32 vectors, (n,) subject names); checks the model."""
        loaded = self.load_templates(model_id)
        if loaded.size == 0:
            return np.zeros((0, 0), np.float32), np.zeros((0,), dtype=object)
        names = self.names_of(loaded.subject_ids)
        labels = np.array([names[int(s)] for s in loaded.subject_ids], dtype=object)
        return loaded.vectors, labels

    def load_templates(self, model_id: str, ids: np.ndarray | None = None) -> LoadedTemplates:
        """The embeddings of every template (or of those of ``ids`` that exist), in id order,
        read in one pass into one preallocated array (no per-row arrays, no second copy)."""
        self.require_model(model_id)
        with self.engine.connect() as conn:
            if ids is None:
                return _read_templates(conn, [sa.true()])
            wanted = np.unique(np.asarray(ids, dtype=np.int64))
            chunks = [
                templates.c.id.in_([int(i) for i in wanted[at : at + ID_CHUNK]])
                for at in range(0, wanted.size, ID_CHUNK)
            ]
            return _read_templates(conn, chunks)

    def names_of(self, subject_ids: np.ndarray | Sequence[int]) -> dict[int, str]:
        """Subject id -> name for those of ``subject_ids`` that exist (an erased subject's
        id is missing: a search must not name them)."""
        wanted = sorted({int(i) for i in np.asarray(subject_ids).reshape(-1)})
        found: dict[int, str] = {}
        with self.engine.connect() as conn:
            for at in range(0, len(wanted), ID_CHUNK):
                query = sa.select(subjects.c.id, subjects.c.name).where(
                    subjects.c.id.in_(wanted[at : at + ID_CHUNK])
                )
                found.update({int(i): str(n) for i, n in conn.execute(query)})
        return found

    # ---- the template log (v6): what changed since a saved index ------------------------

    def log_head(self) -> LogPosition:
        """Where the template log stands: its last seq, that row, and the log's epoch."""
        with self.engine.connect() as conn:
            seq = int(conn.execute(sa.select(sa.func.max(template_log.c.seq))).scalar() or 0)
            epoch = conn.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "index_epoch")
            ).scalar()
            return LogPosition(seq, self._log_row(conn, seq), str(epoch or ""))

    def log_row(self, seq: int) -> str:
        """A fingerprint of the log row ``seq`` ('' for none): a saved index checks that the
        log it caught up with is still this database's."""
        with self.engine.connect() as conn:
            return self._log_row(conn, seq)

    @staticmethod
    def _log_row(conn: Connection, seq: int) -> str:
        if seq <= 0:
            return ""
        row = conn.execute(
            sa.select(template_log.c.template_id, template_log.c.op, template_log.c.nonce).where(
                template_log.c.seq == seq
            )
        ).first()
        return "" if row is None else f"{row.template_id}:{row.op}:{row.nonce}"

    def changed_since(self, after: int, upto: int) -> np.ndarray:
        """The ids of templates added, removed or changed in log rows (after, upto]."""
        query = (
            sa.select(template_log.c.template_id)
            .where(template_log.c.seq > after)
            .where(template_log.c.seq <= upto)
            .distinct()
        )
        with self.engine.connect() as conn:
            return np.fromiter(conn.execute(query).scalars(), dtype=np.int64)

    def crops(self) -> Iterator[StoredCrop]:
        query = sa.select(templates.c.id, templates.c.crop_png, templates.c.crop_geometry).order_by(
            templates.c.id
        )
        with self.engine.connect() as conn:
            for template_id, png, geometry in conn.execute(query):
                yield StoredCrop(int(template_id), bytes(png), json.loads(geometry))


ID_CHUNK = 5000
"""Ids per ``IN (...)`` list (well below SQLite's and psycopg's parameter limits)."""


@dataclass(frozen=True)
class LoadedTemplates:
    vectors: np.ndarray
    """(n, d) float32, one row per template, in id order."""
    ids: np.ndarray
    """(n,) int64 template ids."""
    subject_ids: np.ndarray
    """(n,) int64: the subject each template belongs to."""

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True)
class LogPosition:
    seq: int
    row: str
    """A fingerprint of the row at ``seq``."""
    epoch: str
    """``meta.index_epoch``: which database's log this is."""


def _read_templates(conn: Connection, where: Sequence[sa.ColumnElement[bool]]) -> LoadedTemplates:
    """Rows of ``templates`` matching any of ``where``, into arrays sized by a count first."""
    n = dim = 0
    for w in where:
        count, widest = conn.execute(
            sa.select(sa.func.count(), sa.func.max(templates.c.dim)).where(w)
        ).one()
        n, dim = n + int(count or 0), max(dim, int(widest or 0))
    vectors = np.empty((n, dim), np.float32)
    ids = np.empty(n, np.int64)
    subject_ids = np.empty(n, np.int64)
    at = 0
    for w in where:
        query = (
            sa.select(templates.c.id, templates.c.subject_id, templates.c.embedding)
            .where(w)
            .order_by(templates.c.id)
        )
        result = conn.execution_options(yield_per=20_000).execute(query)
        for part in result.partitions():
            # rows that arrived after the count are left for the next catch-up
            rows = part[: n - at]
            count = len(rows)
            if not count:
                break
            blob = b"".join(bytes(r[2]) for r in rows)
            if len(blob) != count * dim * 4:
                raise StorageError(
                    f"templates {rows[0][0]}..{rows[-1][0]} hold embeddings of another size "
                    f"than {dim} floats: the gallery mixes dimensions"
                )
            vectors[at : at + count] = np.frombuffer(blob, dtype="<f4").reshape(count, dim)
            ids[at : at + count] = [r[0] for r in rows]
            subject_ids[at : at + count] = [r[1] for r in rows]
            at += count
    if at < n:  # rows deleted after the count
        vectors, ids, subject_ids = vectors[:at], ids[:at], subject_ids[:at]
    return LoadedTemplates(vectors, ids, subject_ids)


def _model_ids(joined: str | None) -> tuple[str, ...]:
    """GROUP_CONCAT's text -> sorted model ids (none for a subject without templates)."""
    return tuple(sorted(m for m in (joined or "").split(",") if m))
