"""One faceledger database, opened, checked to be ours and brought to the current schema."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faceledger.db import engine as dialect
from faceledger.db.migrate import HEAD, SCHEMA_VERSION, current, upgrade
from faceledger.db.schema import APP_ID, meta_table
from faceledger.db.url import DatabaseUrl, parse_db
from faceledger.errors import ConfigError, StorageError


class Database:
    """A SQLite file or a PostgreSQL database holding one faceledger gallery.

    Opening checks that the database is faceledger's (or empty) and upgrades its schema
    (Alembic, one process at a time). ``create=False`` refuses a SQLite file that does not
    exist yet, so that commands which only read leave no empty gallery behind."""

    def __init__(
        self,
        target: str | Path | DatabaseUrl,
        *,
        create: bool = True,
        busy_timeout_s: float = dialect.BUSY_TIMEOUT_S,
    ) -> None:
        self.url = parse_db(target)
        self.name = self.url.shown
        """What messages and ledger entries call this database (no password)."""
        path = self.url.path
        if path is not None:
            if not create and not path.exists():
                raise ConfigError(f"{path}: no gallery there (give --db, or enroll someone first)")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"{path}: cannot create its folder ({exc})") from exc
        self.engine = dialect.create_engine(self.url, busy_timeout_s)
        self.busy_timeout_s = busy_timeout_s
        self._scrub_pending = False
        self._lock = threading.Lock()
        if self.url.dialect == "sqlite":
            sa.event.listen(self.engine.pool, "checkin", self._after_use)
        try:
            self._open()
            dialect.enable_wal(self.engine)
        except sa.exc.DatabaseError as exc:
            self.engine.dispose()
            reason = f"not a usable faceledger gallery ({exc.orig})"
            raise StorageError(f"{self.name}: {reason}") from None
        except BaseException:
            self.engine.dispose()
            raise

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _open(self) -> None:
        with self.engine.connect() as conn:
            if self._check(conn) == HEAD:
                return
        with dialect.write_txn(self.engine) as conn:
            dialect.lock_migration(conn)
            self._check(conn)  # another process may have upgraded it meanwhile
            upgrade(conn)

    def _check(self, conn: Connection) -> str | None:
        """The database's revision; StorageError unless it is faceledger's (or empty)."""
        tables = set(sa.inspect(conn).get_table_names())
        if not tables:
            return None
        if "meta" not in tables:
            found = ", ".join(sorted(tables)[:8])
            raise StorageError(f"{self.name}: not a faceledger gallery (it holds tables {found})")
        values = dict(conn.execute(sa.select(meta_table.c.key, meta_table.c.value)).all())
        if values.get("app") != APP_ID:
            raise StorageError(f"{self.name}: not a faceledger gallery")
        version = int(values.get("schema_version", "0") or 0)
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.name}: gallery schema v{version} is newer than this faceledger "
                f"(v{SCHEMA_VERSION}); upgrade faceledger"
            )
        return current(conn)

    # ---- transactions ------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction holding the write lock from its start; commits at the end."""
        with dialect.write_txn(self.engine) as conn:
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def scrub(self) -> None:
        """After an erasure: leave no erased bytes in the database's files. SQLite: the
        write-ahead log is checkpointed and truncated now if no reader holds it, otherwise
        as soon as a connection of this database is next used with none left (nothing ever
        waits for a reader). PostgreSQL: see ``faceledger.db.engine``."""
        if self.url.dialect != "sqlite":
            return
        self._scrub_pending = True
        raw = self.engine.raw_connection()
        try:
            self._try_scrub(raw.driver_connection)
        finally:
            raw.close()

    def _after_use(self, dbapi_conn: Any, _record: Any) -> None:
        if self._scrub_pending and dbapi_conn is not None:
            self._try_scrub(dbapi_conn)

    def _try_scrub(self, dbapi_conn: Any) -> None:
        if not self._lock.acquire(blocking=False):
            return  # another thread is at it
        try:
            if self._scrub_pending:
                self._scrub_pending = not dialect.checkpoint(dbapi_conn, self.busy_timeout_s)
        finally:
            self._lock.release()

    def close(self) -> None:
        if self._scrub_pending:
            with contextlib.suppress(StorageError, sa.exc.DatabaseError):
                self.scrub()
        self.engine.dispose()

    @property
    def scrub_pending(self) -> bool:
        """True while erased bytes may still be in the write-ahead log (a reader holds it)."""
        return self._scrub_pending

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HasDatabase(Protocol):
    """Anything standing on a :class:`Database` (a ``Gallery``, the operations)."""

    db: Database


Store = Database | HasDatabase | sa.Engine
"""What the stores (events, reviews, keys, the ledger) accept: a database, something that
stands on one, or a bare engine."""


def database_of(store: Store) -> Database | None:
    if isinstance(store, Database):
        return store
    if isinstance(store, sa.Engine):
        return None
    return store.db


def engine_with_schema(store: Store, version: int, holding: str) -> sa.Engine:
    """The engine of a store, checked to be at schema ``version`` or later (it holds
    ``holding``, named in the error)."""
    if isinstance(store, sa.Engine):
        engine, shown = store, store.url.render_as_string(hide_password=True)
    else:
        db = store if isinstance(store, Database) else store.db
        engine, shown = db.engine, db.name
    try:
        with engine.connect() as conn:
            query = sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            found = int(conn.execute(query).scalar() or 0)
    except sa.exc.DatabaseError as exc:
        raise StorageError(f"{shown}: not a faceledger gallery ({exc.orig})") from None
    if found < version:
        raise StorageError(
            f"{shown}: gallery schema v{found} has no {holding}; "
            "open it once with faceledger to upgrade it"
        )
    return engine
