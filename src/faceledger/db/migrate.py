"""Bring a database to the head schema with Alembic, inside the caller's transaction.

The revisions are the scripts in ``faceledger.db.migrations.versions`` (``v1`` .. ``v8``),
run programmatically: no ``alembic.ini``, no ``env.py``. Galleries made before Alembic
have no ``alembic_version`` table but ``meta.schema_version`` = N (1..4): they are stamped
``vN`` first, then upgraded. After every upgrade ``meta.schema_version`` holds
:data:`SCHEMA_VERSION`, so that a faceledger from before Alembic refuses a newer database
with its own message ("gallery schema vN is newer than this faceledger").
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from faceledger.db.schema import APP_ID, meta_table
from faceledger.errors import StorageError

HEAD = "v8"
"""The revision of the head schema (:mod:`faceledger.db.schema`)."""
SCHEMA_VERSION = 5
"""The integer kept in ``meta.schema_version`` (the version faceledger used before Alembic)."""
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
"""The Alembic script directory (its ``versions`` folder holds the revisions)."""
VERSION_TABLE = "alembic_version"


@cache
def script_directory() -> ScriptDirectory:
    """faceledger's revisions (read once per process)."""
    config = Config()
    # ConfigParser interpolates '%': a path holding one must be escaped.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return ScriptDirectory.from_config(config)


def upgrade(conn: Connection) -> None:
    """Bring the database on ``conn`` to :data:`HEAD`, inside the caller's transaction.

    Nothing is committed: the caller commits (or rolls back, leaving the database as it
    was) and holds whatever lock keeps other processes from upgrading at the same time.
    If ``conn`` has no transaction yet one is begun, for the caller to end. On SQLite,
    DDL is only transactional inside an explicit ``BEGIN``; when the driver has none open
    (pysqlite defers it to the first INSERT) this issues ``BEGIN IMMEDIATE`` itself.

    An empty database is upgraded from base (``v1`` makes ``meta`` with its ``app`` row).
    A database from before Alembic is stamped with the revision of its
    ``meta.schema_version`` first. StorageError if the database is not faceledger's (tables
    but no ``meta``, or another ``app``) or is newer than this faceledger.
    """
    if not conn.in_transaction():
        conn.begin()
    _sqlite_begin(conn)
    script = script_directory()
    legacy = _legacy_revision(conn)
    context = _context(conn, script)
    if legacy is not None:
        context.stamp(script, legacy)
    stamped = context.get_current_revision()
    if stamped is not None:
        try:
            script.get_revision(stamped)
        except CommandError:
            raise StorageError(
                f"the database is at schema revision {stamped}, which this faceledger does "
                f"not know (its newest is {HEAD}): it was upgraded by a newer faceledger; "
                "upgrade faceledger"
            ) from None
    with Operations.context(context):
        context.run_migrations()
    _set_schema_version(conn)


def current(conn: Connection) -> str | None:
    """The database's revision: the one stamped in ``alembic_version``, else ``vN`` for a
    gallery from before Alembic at ``meta.schema_version`` N (>= 1), else None (empty, or
    never migrated)."""
    inspector = sa.inspect(conn)
    if inspector.has_table(VERSION_TABLE):
        return MigrationContext.configure(conn).get_current_revision()
    version = _meta_version(conn, inspector.has_table("meta"))
    return f"v{version}" if version is not None and version >= 1 else None


# ---- helpers ----------------------------------------------------------------------------


def _context(conn: Connection, script: ScriptDirectory) -> MigrationContext:
    def to_head(heads: Any, _context: MigrationContext) -> list[RevisionStep]:
        # what alembic's own `upgrade` command hands the context (heads: a tuple of
        # revisions, although _upgrade_revs is annotated with str)
        return script._upgrade_revs("head", heads)

    return MigrationContext.configure(
        connection=conn,
        opts={"script": script, "fn": to_head, "destination_rev": "head"},
    )


def _sqlite_begin(conn: Connection) -> None:
    if conn.dialect.name != "sqlite" or conn.dialect.driver != "pysqlite":
        return
    # pysqlite opens a transaction only before INSERT/UPDATE/DELETE; DDL before that runs
    # (and is committed) on its own
    if not getattr(conn.connection.dbapi_connection, "in_transaction", True):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _legacy_revision(conn: Connection) -> str | None:
    """The revision to stamp on a database from before Alembic (None: nothing to stamp);
    StorageError for a database that is not faceledger's or is too new."""
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    if VERSION_TABLE in tables:
        version = _meta_version(conn, "meta" in tables)
        if version is not None and version > SCHEMA_VERSION:
            raise _too_new(version)
        return None
    if not tables:
        return None
    if "meta" not in tables:
        found = ", ".join(sorted(tables)[:8])
        raise StorageError(f"not a faceledger database (it holds tables {found})")
    app = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "app")).scalar()
    if app != APP_ID:
        raise StorageError(f"not a faceledger database (meta.app is {app!r})")
    version = _meta_version(conn, True) or 0
    if version > SCHEMA_VERSION:
        raise _too_new(version)
    return f"v{version}" if version >= 1 else None


def _meta_version(conn: Connection, has_meta: bool) -> int | None:
    if not has_meta:
        return None
    query = sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
    text = conn.execute(query).scalar()
    try:
        return None if text is None or not str(text).strip() else int(text)
    except ValueError:
        raise StorageError(f"meta.schema_version is {text!r}, not a number") from None


def _too_new(version: int) -> StorageError:
    return StorageError(
        f"gallery schema v{version} is newer than this faceledger (v{SCHEMA_VERSION}); "
        "upgrade faceledger"
    )


def _set_schema_version(conn: Connection) -> None:
    key = meta_table.c.key == "schema_version"
    found = conn.execute(sa.select(meta_table.c.value).where(key)).scalar()
    if found is None:
        conn.execute(meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
    elif found != str(SCHEMA_VERSION):
        conn.execute(meta_table.update().where(key).values(value=str(SCHEMA_VERSION)))
