"""Engines, transactions and every difference between SQLite and PostgreSQL.

Nothing outside ``faceledger.db`` branches on the dialect: what differs is a function here.

- **Write transactions** hold the write lock from their start, so what a write reads
  cannot change before it writes: SQLite ``BEGIN IMMEDIATE``; PostgreSQL a
  transaction-scoped advisory lock (:data:`WRITE_LOCK`) taken first, so writers on several
  machines are serialised exactly as SQLite serialises them (reads never wait). Every
  store's read-then-write (a subject's id, then an event naming it; the ledger's head, then
  the entry after it) relies on this.
- **The ledger's head** is therefore serialised too (:func:`lock_ledger` also locks it for
  a writer outside :func:`write_txn`): writers in several processes or machines never fork
  the chain or reuse a sequence number.
- **Busy or unreachable databases** become :class:`~faceledger.errors.StorageBusyError`
  (retry later: the API answers 503 with ``Retry-After``), never a driver traceback.
- **Erasure**: SQLite overwrites freed pages (``secure_delete``) and the write-ahead log is
  truncated at the next checkpoint that no reader blocks (:func:`checkpoint`); PostgreSQL's
  DELETE leaves dead row versions until VACUUM marks their space reusable — VACUUM does not
  zero them on disk either; see docs/SERVICE.md.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from faceledger.db.url import DatabaseUrl
from faceledger.errors import StorageBusyError

BUSY_TIMEOUT_S = 5.0
"""How long a statement waits for a lock held by another writer before giving up."""
LEDGER_LOCK = 0x6661_6365_6C65_6467 & 0x7FFF_FFFF_FFFF_FFFF
"""PostgreSQL advisory lock key of the ledger's head ("faceledg")."""
MIGRATE_LOCK = LEDGER_LOCK - 1
"""PostgreSQL advisory lock key held while the schema is upgraded."""
WRITE_LOCK = LEDGER_LOCK - 2
"""PostgreSQL advisory lock key every write transaction holds (one writer at a time)."""


def create_engine(target: DatabaseUrl, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sa.Engine:
    """An engine for ``target`` with faceledger's per-dialect settings and error mapping."""
    timeout_ms = int(busy_timeout_s * 1000)
    if target.dialect == "sqlite":
        engine = sa.create_engine(target.url)

        def pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            # Erased crops and templates are overwritten, not left in free pages (SQLite's
            # default is off; some builds, e.g. Debian's, turn it on).
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.execute(f"PRAGMA busy_timeout={timeout_ms}")
            cursor.close()

        sa.event.listen(engine, "connect", pragmas)
    else:
        engine = sa.create_engine(
            target.url,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": max(1, int(busy_timeout_s)),
                "options": f"-c lock_timeout={timeout_ms} "
                "-c idle_in_transaction_session_timeout=60000",
                "application_name": "faceledger",
            },
        )
    shown = target.shown
    sa.event.listen(engine, "handle_error", lambda ctx: _busy(ctx, shown, busy_timeout_s))
    return engine


def _busy(ctx: sa.engine.ExceptionContext, shown: str, timeout_s: float) -> None:
    """Turn "locked", "lock timeout" and "cannot connect" into StorageBusyError."""
    orig = ctx.original_exception
    reason = None
    if isinstance(orig, sqlite3.OperationalError):
        text = str(orig)
        if "locked" in text or "busy" in text:
            reason = f"locked by another writer for more than {timeout_s:g} s"
    else:
        reason = _postgres_busy(orig, timeout_s)
    if reason is not None:
        busy = StorageBusyError(f"{shown}: the database is busy ({reason}); try again")
        busy.retry_after_s = max(1, math.ceil(timeout_s))
        raise busy from None


def _postgres_busy(orig: BaseException, timeout_s: float) -> str | None:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    if isinstance(orig, psycopg.errors.LockNotAvailable):
        return f"a lock was held by another writer for more than {timeout_s:g} s"
    if isinstance(orig, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected):
        return "a concurrent write conflicted with this one"
    if isinstance(orig, psycopg.errors.AdminShutdown | psycopg.errors.CannotConnectNow):
        return "the server is shutting down or starting"
    if type(orig) is psycopg.OperationalError:  # no server answered (a subclass names a state)
        first = str(orig).strip().splitlines()
        return f"cannot reach the server: {first[0] if first else 'no answer'}"
    return None


@contextlib.contextmanager
def write_txn(engine: sa.Engine) -> Iterator[Connection]:
    """One write transaction that holds the write lock from its start (SQLite: BEGIN
    IMMEDIATE), so what it reads cannot change before it writes; commits or rolls back."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK})
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def lock_ledger(conn: Connection) -> None:
    """Serialise appends to the ledger until ``conn``'s transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LEDGER_LOCK})
    # SQLite: the transaction's BEGIN IMMEDIATE already excludes every other writer.


def lock_migration(conn: Connection) -> None:
    """Let one process at a time upgrade the schema (until ``conn``'s transaction ends)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK})


def top_seq(conn: Connection, table: sa.Table, column: sa.Column[Any]) -> int:
    """The highest sequence number ever handed out in ``table`` (0 when none).

    SQLite: its AUTOINCREMENT counter, so a number whose row was deleted is never reused
    and an entry appended after a truncation still leaves a visible gap. PostgreSQL: the
    highest stored value (rows cannot be deleted there: triggers refuse it)."""
    if conn.dialect.name == "sqlite":
        query = sa.text("SELECT seq FROM sqlite_sequence WHERE name = :name")
        top = conn.execute(query, {"name": table.name}).scalar()
        if top is not None:
            return int(top)
    return int(conn.execute(sa.select(sa.func.max(column))).scalar() or 0)


def enable_wal(engine: sa.Engine) -> None:
    """SQLite: readers never block the writer (recorded in the file; once per open)."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")


def checkpoint(dbapi_conn: Any, busy_timeout_s: float = BUSY_TIMEOUT_S) -> bool:
    """SQLite, after an erasure: copy the write-ahead log into the main file (where
    secure_delete has zeroed the freed pages) and truncate it, without waiting for anyone;
    True when done. A reader still open keeps the log in use: then nothing is waited for,
    and the caller tries again later (``Database`` does, after every use of a connection).
    """
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=0")
        row = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return row is None or int(row[0]) == 0
    except sqlite3.OperationalError:  # locked: another connection is writing
        return False
    finally:
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()


def distinct_agg(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[Any]:
    """Comma-joined distinct values of ``column`` per group (GROUP_CONCAT / string_agg)."""
    if dialect == "postgresql":
        return sa.func.string_agg(sa.distinct(column), sa.literal_column("','"))
    return sa.func.group_concat(sa.distinct(column))
