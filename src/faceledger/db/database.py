"""One faceledger database, opened, checked to be ours and brought to the current schema."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faceledger.db import engine as dialect
from faceledger.db.migrate import HEAD, SCHEMA_VERSION, current, upgrade
from faceledger.db.schema import APP_ID, meta_table
from faceledger.db.url import DatabaseUrl, parse_db
from faceledger.errors import ConfigError, StorageBusyError, StorageError


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
        self._scrub_pending = False
        self._lock = threading.Lock()
        try:
            self._open()
            dialect.enable_wal(self.engine)
        except sa.exc.DatabaseError as exc:
            self.engine.dispose()
            raise StorageError(f"{self.name}: not a usable faceledger gallery ({exc.orig})") from None
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
        if self._scrub_pending:
            self.scrub()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def scrub(self) -> None:
        """After an erasure: no erased bytes left in the files beyond what the engine keeps
        for readers still open; retried after later writes until it completes."""
        with self._lock:
            try:
                self._scrub_pending = not dialect.scrub(self.engine)
            except StorageBusyError:
                self._scrub_pending = True

    def close(self) -> None:
        if self._scrub_pending:
            with contextlib.suppress(StorageError, sa.exc.DatabaseError):
                self.scrub()
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
