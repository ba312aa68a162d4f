"""The gallery: subjects (with their legal basis) and templates, in SQL via SQLAlchemy Core.

SQLite is the embedded default; the tables use only portable types so a server database can
follow. The schema is versioned in the ``meta`` table and upgraded by ``MIGRATIONS`` in order,
each inside one transaction. Every write that belongs together (one subject's enrollment, a
re-embedding of the whole gallery) is one transaction: on any error nothing is written.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faceledger.errors import (
    ConfigError,
    ConflictError,
    ModelMismatchError,
    NotFoundError,
    StorageError,
)

APP_ID = "faceledger-gallery"
metadata = sa.MetaData()

meta_table = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
subjects = sa.Table(
    "subjects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("legal_basis", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)
templates = sa.Table(
    "templates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "subject_id", sa.Integer, sa.ForeignKey("subjects.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("model_id", sa.String(100), nullable=False, index=True),
    sa.Column("embedding", sa.LargeBinary, nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("legal_basis", sa.Text, nullable=False),
    sa.Column("source_name", sa.Text, nullable=False),
    sa.Column("source_sha256", sa.String(64), nullable=False),
    sa.Column("quality", sa.Float, nullable=False),
    sa.Column("det_score", sa.Float, nullable=False),
    sa.Column("crop_png", sa.LargeBinary, nullable=False),
    sa.Column("crop_geometry", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)
# v2: what video scanning decided (one row per face track; see faceledger.events.store)
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("camera", sa.String(200), nullable=True),
    sa.Column("track_id", sa.Integer, nullable=False),
    sa.Column("first_t", sa.Float, nullable=False),
    sa.Column("last_t", sa.Float, nullable=False),
    sa.Column("started_at", sa.String(40), nullable=True),
    sa.Column("subject", sa.String(200), nullable=True),
    sa.Column(
        "subject_id",
        sa.Integer,
        sa.ForeignKey("subjects.id", ondelete="SET NULL"),
        nullable=True,
        index=True,
    ),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("threshold_fmr", sa.Float, nullable=False),
    sa.Column("model_id", sa.String(100), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("best_crop_png", sa.LargeBinary, nullable=True),
    sa.Column("expires_at", sa.String(40), nullable=True, index=True),
    # v4: human review. review: NULL (none asked), pending, confirmed or rejected;
    # reviews_needed: distinct confirmations required (2 on a two-person watch list)
    sa.Column("review", sa.String(20), nullable=True, index=True),
    sa.Column("reviews_needed", sa.Integer, nullable=False, server_default="0"),
    sqlite_autoincrement=True,  # ids are handed out (webhooks): never reuse one
)
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event_id", sa.Integer, nullable=True),
    sa.Column("sink", sa.Text, nullable=False, index=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.String(40), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sqlite_autoincrement=True,  # a row id is the delivery's Idempotency-Key
)
# v3: the append-only, hash-chained audit ledger (see faceledger.ledger)
ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("action", sa.String(100), nullable=False, index=True),
    sa.Column("purpose", sa.Text, nullable=True),
    sa.Column("case_ref", sa.Text, nullable=True),
    sa.Column("inputs", sa.Text, nullable=False),  # JSON list of sha256 hex
    sa.Column("result", sa.Text, nullable=False),  # JSON
    sa.Column("gallery", sa.Text, nullable=False),
    sa.Column("model", sa.String(100), nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sqlite_autoincrement=True,  # a seq is never reused, even after a deletion
)


# v4: the service: API keys, watch lists (with their review rules) and human reviews
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("prefix", sa.String(20), nullable=False, unique=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("revoked_at", sa.String(40), nullable=True),
    sqlite_autoincrement=True,
)
watchlists = sa.Table(
    "watchlists",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("review", sa.Boolean, nullable=False),
    sa.Column("two_person", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)
watchlist_members = sa.Table(
    "watchlist_members",
    metadata,
    sa.Column(
        "watchlist_id",
        sa.Integer,
        sa.ForeignKey("watchlists.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "subject_id", sa.Integer, sa.ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True
    ),
)
reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "event_id",
        sa.Integer,
        sa.ForeignKey("events.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("reviewer", sa.Text, nullable=False),
    sa.Column("decision", sa.String(10), nullable=False),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("at", sa.String(40), nullable=False),
)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[meta_table, subjects, templates])


def _v2(conn: Connection) -> None:
    metadata.create_all(conn, tables=[events, outbox])


def _v3(conn: Connection) -> None:
    metadata.create_all(conn, tables=[ledger])
    if conn.dialect.name == "sqlite":
        # Defence in depth: the hash chain detects tampering, these make it deliberate.
        for verb in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER ledger_no_{verb.lower()} BEFORE {verb} ON ledger "
                "BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END"
            )


def _v4(conn: Connection) -> None:
    metadata.create_all(conn, tables=[api_keys, watchlists, watchlist_members, reviews])
    have = {c["name"] for c in sa.inspect(conn).get_columns("events")}
    for column in ("review", "reviews_needed"):
        if column not in have:  # galleries created before v4 (new ones get them in _v2)
            kind = "VARCHAR(20)" if column == "review" else "INTEGER NOT NULL DEFAULT 0"
            conn.exec_driver_sql(f"ALTER TABLE events ADD COLUMN {column} {kind}")
    # the index new galleries get with the column (events.c.review has index=True)
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_events_review ON events (review)")


MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_v1, _v2, _v3, _v4)
"""MIGRATIONS[i] upgrades schema version i to i+1."""
SCHEMA_VERSION = len(MIGRATIONS)


@contextlib.contextmanager
def write_txn(engine: sa.Engine) -> Iterator[Connection]:
    """One write transaction that holds the write lock from its start (SQLite: BEGIN
    IMMEDIATE), so what it reads cannot change before it writes; commits or rolls back."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


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
    """One gallery database. Opening it checks it is ours and brings its schema up to date."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{path}: cannot create its folder ({exc})") from exc
        self.engine = sa.create_engine(f"sqlite:///{path}", future=True)
        sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self._open()
            # Only once the file is known to be ours: WAL is recorded in the file's header.
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        except sa.exc.DatabaseError as exc:
            self.engine.dispose()
            raise StorageError(f"{path}: not a usable faceledger gallery ({exc.orig})") from None
        except BaseException:
            self.engine.dispose()
            raise

    def _open(self) -> None:
        with self.engine.begin() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if not tables:
                meta_table.create(conn)
                conn.execute(meta_table.insert(), [{"key": "app", "value": APP_ID}])
                version = 0
            elif "meta" not in tables:
                found = ", ".join(sorted(tables))
                raise StorageError(
                    f"{self.path}: not a faceledger gallery (it holds tables {found})"
                )
            else:
                values = dict(conn.execute(sa.select(meta_table.c.key, meta_table.c.value)).all())
                if values.get("app") != APP_ID:
                    raise StorageError(f"{self.path}: not a faceledger gallery")
                version = int(values.get("schema_version", "0"))
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path}: gallery schema v{version} is newer than this faceledger "
                    f"(v{SCHEMA_VERSION}); upgrade faceledger"
                )
        for step in range(version, SCHEMA_VERSION):
            with self.engine.begin() as conn:
                MIGRATIONS[step](conn)
                self._set_meta(conn, "schema_version", str(step + 1))

    @staticmethod
    def _set_meta(conn: Connection, key: str, value: str) -> None:
        conn.execute(meta_table.delete().where(meta_table.c.key == key))
        conn.execute(meta_table.insert().values(key=key, value=value))

    def close(self) -> None:
        self.engine.dispose()

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
                f"{self.path}: gallery holds {found}, which cannot be compared with {model_id} "
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
                f"{self.path}: templates for {name!r} come from several models "
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
                raise NotFoundError(f"no subject named {name!r} in {self.path}")
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
                raise ConflictError(f"a subject named {name!r} exists already in {self.path}")
            conn.execute(
                subjects.insert().values(name=name, legal_basis=legal_basis, created_at=stamp)
            )
            if within is not None:
                within(conn, True)
        return SubjectInfo(name, legal_basis, stamp, 0, ())

    def flush_erased(self) -> None:
        """Copy the write-ahead log into the database and empty it, so erased crops do not
        linger in old WAL pages (secure_delete zeroes them in the main file). Best effort:
        readers still open keep their pages until they finish."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

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
                    f"subject {name!r} has no template {template_id} in {self.path}"
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
                raise StorageError(f"{self.path}: templates changed during re-embedding; retry")
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
                sa.func.group_concat(sa.distinct(templates.c.model_id)),
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
            raise NotFoundError(f"no subject named {name!r} in {self.path}")
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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Erased crops and templates are overwritten, not left in free pages (SQLite's
    # default is off; some builds, e.g. Debian's, turn it on).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def engine_with_schema(store: Gallery | sa.Engine, version: int, holding: str) -> sa.Engine:
    """The engine of a gallery, checked to be at schema ``version`` or later (it holds
    ``holding``, named in the error)."""
    engine = store.engine if isinstance(store, Gallery) else store
    try:
        with engine.connect() as conn:
            query = sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            found = int(conn.execute(query).scalar() or 0)
    except sa.exc.DatabaseError as exc:
        raise StorageError(f"{engine.url}: not a faceledger gallery ({exc.orig})") from None
    if found < version:
        raise StorageError(
            f"{engine.url}: gallery schema v{found} has no {holding}; "
            "open it once with faceledger's Gallery to upgrade it"
        )
    return engine
