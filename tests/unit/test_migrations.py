"""Alembic migrations: real galleries made by old faceledger code reach the head schema
with their data intact, and a fresh database (SQLite and PostgreSQL) matches the head.

The old galleries are ``tests/data/galleries/vN.sql``, dumped from galleries that the code
at each schema version's commit made (see the README there and ``make_old_galleries.py``);
``manifest.json`` says what each holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from faceledger.db.migrate import HEAD, SCHEMA_VERSION, current, script_directory, upgrade
from faceledger.db.schema import APP_ID, metadata
from faceledger.errors import StorageError
from faceledger.ledger.chain import GENESIS, entry_hash

GALLERIES = Path(__file__).resolve().parents[1] / "data" / "galleries"
MANIFEST: dict[str, Any] = json.loads((GALLERIES / "manifest.json").read_text("utf-8"))
OLD = ["v1", "v2", "v3", "v4"]
"""Each made from scratch by the code of its own schema version."""
UPGRADED_BY_OLD_CODE = "v4-from-v3"
"""Made by the v3 code, then opened (so upgraded to v4) and filled by the v4 code."""
LEDGER_FIELDS = (
    "seq", "at", "actor", "role", "action", "purpose", "case_ref", "inputs", "result",
    "gallery", "model", "prev_hash",
)  # fmt: skip
"""What ``Ledger`` hashes (every column but ``hash``; see faceledger.ledger.chain)."""
A_LEDGER_ROW = (
    "INSERT INTO ledger (at, actor, role, action, inputs, result, gallery, prev_hash, hash) "
    f"VALUES ('2026-01-01T00:00:00+00:00', 'test', 'admin', 'test', '[]', 'null', 'g', "
    f"'{GENESIS}', '{'1' * 64}')"
)


# ---- helpers --------------------------------------------------------------------------------


def load(name: str, into: Path) -> Path:
    """A SQLite file holding the old gallery ``name`` (from its SQL dump)."""
    path = into / f"{name}.db"
    conn = sqlite3.connect(path)
    try:
        conn.executescript((GALLERIES / f"{name}.sql").read_text("utf-8"))
    finally:
        conn.close()
    return path


def engine_for(url: str) -> sa.Engine:
    """An engine for a ``db_url`` value: a plain path is SQLite; postgresql:// is psycopg 3."""
    if url.startswith("postgresql://"):
        return sa.create_engine("postgresql+psycopg://" + url.removeprefix("postgresql://"))
    if "://" in url:
        return sa.create_engine(url)
    return sqlite_engine(Path(url))


def sqlite_engine(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")

    def pragmas(dbapi_conn: Any, _record: Any) -> None:  # as faceledger's own engines
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    sa.event.listen(engine, "connect", pragmas)
    return engine


@contextlib.contextmanager
def write(engine: sa.Engine) -> Iterator[Connection]:
    """One transaction, as faceledger's writers hold it: on SQLite ``BEGIN IMMEDIATE``
    (pysqlite would otherwise run DDL outside any transaction), committed at the end."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
        yield conn
        conn.commit()


def upgraded(engine: sa.Engine) -> None:
    with write(engine) as conn:
        upgrade(conn)


def differences(conn: Connection) -> list[Any]:
    """What autogenerate would change to reach the head metadata (alembic_version and
    sqlite_sequence are left out by Alembic itself)."""
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


def schema_version(conn: Connection) -> str | None:
    query = sa.text("SELECT value FROM meta WHERE key = 'schema_version'")
    return conn.execute(query).scalar()


def sqlite_schema(path: Path) -> dict[tuple[str, str], str]:
    """Every table, index and trigger of a SQLite file: (type, name) -> its SQL, with
    runs of white space made one space."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'"
        ).fetchall()
    finally:
        conn.close()
    return {(kind, name): " ".join(sql.split()) for kind, name, sql in rows}


def contents(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a SQLite file, in rowid order."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables}
    finally:
        conn.close()


def to_revision(conn: Connection, revision: str) -> None:
    """Run the migrations from base to ``revision`` only (no stamping of legacy galleries,
    no meta.schema_version): what each step creates on its own."""
    script = script_directory()
    context = MigrationContext.configure(
        connection=conn,
        opts={"script": script, "fn": lambda heads, _: script._upgrade_revs(revision, heads)},
    )
    with Operations.context(context):
        context.run_migrations()


def check_ledger(conn: Connection, expected: dict[str, Any]) -> None:
    """Every entry's hash recomputes from its fields, the chain links, the head is known."""
    rows = conn.execute(sa.text("SELECT * FROM ledger ORDER BY seq")).mappings().all()
    assert len(rows) == expected["ledger_entries"]
    prev = GENESIS
    for number, row in enumerate(rows, start=1):
        fields = {name: row[name] for name in LEDGER_FIELDS}
        fields["inputs"] = json.loads(fields["inputs"])
        fields["result"] = json.loads(fields["result"])
        assert row["seq"] == number
        assert row["prev_hash"] == prev
        assert entry_hash(fields) == row["hash"], f"ledger entry {number} does not recompute"
        prev = row["hash"]
    assert prev == expected["ledger_head"] == expected["reported_ledger_head"]


def refused(engine: sa.Engine, statement: str) -> str:
    """Run ``statement`` in its own transaction; the database's error message (the
    transaction is rolled back either way)."""
    with engine.connect() as conn:
        try:
            conn.exec_driver_sql(statement)
        except sa.exc.DatabaseError as exc:
            conn.rollback()
            return str(exc.orig)
        conn.rollback()
    raise AssertionError(f"{statement!r} was not refused")


# ---- old galleries --------------------------------------------------------------------------


def test_the_old_galleries_are_what_the_manifest_says() -> None:
    galleries = MANIFEST["galleries"]
    assert set(galleries) == {*OLD, UPGRADED_BY_OLD_CODE}
    for name in OLD:
        (made_by,) = galleries[name]["made_by"]
        assert made_by["schema_version"] == int(name[1:])
        assert galleries[name]["meta"]["schema_version"] == name[1:]
    assert [m["schema_version"] for m in galleries[UPGRADED_BY_OLD_CODE]["made_by"]] == [3, 4]
    for name in galleries:
        assert (GALLERIES / f"{name}.sql").stat().st_size < 200_000


@pytest.mark.parametrize("name", [*OLD, UPGRADED_BY_OLD_CODE])
def test_an_old_gallery_keeps_its_data(name: str, tmp_path: Path) -> None:
    expected = MANIFEST["galleries"][name]
    path = load(name, tmp_path)
    before = contents(path)
    engine = sqlite_engine(path)
    with engine.connect() as conn:
        assert current(conn) == f"v{expected['meta']['schema_version']}"
    upgraded(engine)
    after = contents(path)

    for table, rows in before.items():
        if table == "meta":
            continue
        if table == "events" and "review" not in expected["events_columns"]:
            # v2/v3: the v4 step added review (NULL) and reviews_needed (0) at the end
            assert [row[:-2] for row in after[table]] == rows
            assert {row[-2:] for row in after[table]} <= {(None, 0)}
        elif table == "templates":
            # v7 added quality_score at the end: unknown (NULL) for what was enrolled before
            assert [row[:-1] for row in after[table]] == rows, "templates changed"
            assert {row[-1] for row in after[table]} <= {None}
        else:
            assert after[table] == rows, f"{table} changed"
    meta = dict(after["meta"])
    assert re.fullmatch("[0-9a-f]{32}", meta.pop("index_epoch"))  # v6: names the template log
    assert meta == {**expected["meta"], "schema_version": str(SCHEMA_VERSION)}
    assert dict(after["meta"])["app"] == APP_ID
    counts = {t: len(after[t]) for t in expected["tables"]}
    assert counts == {**expected["tables"], "meta": expected["tables"]["meta"] + 1}
    assert after["template_log"] == []  # templates from before v6 are in no saved index
    embeddings = {str(row[0]): hashlib.sha256(row[3]).hexdigest() for row in after["templates"]}
    assert embeddings == expected["template_embeddings_sha256"]
    with engine.connect() as conn:
        subjects = conn.execute(sa.text("SELECT name FROM subjects ORDER BY id")).scalars()
        assert list(subjects) == expected["subjects"]
        if "ledger_entries" in expected:
            check_ledger(conn, expected)
        if "api_keys" in expected:
            keys = conn.execute(
                sa.text("SELECT prefix, role, name, revoked_at FROM api_keys ORDER BY id")
            )
            assert [list(k) for k in keys] == expected["api_keys"]
            token = expected["reported_key_token"]
            stored = conn.execute(
                sa.text("SELECT secret_sha256 FROM api_keys WHERE prefix = :p"),
                {"p": expected["reported_key_prefix"]},
            ).scalar()
            assert stored == hashlib.sha256(token.encode()).hexdigest()
            reviews = conn.execute(sa.text("SELECT id, review, reviews_needed FROM events"))
            assert {str(i): [r, n] for i, r, n in reviews} == expected["event_reviews"]
        assert current(conn) == HEAD
        assert schema_version(conn) == str(SCHEMA_VERSION)
    engine.dispose()


@pytest.mark.parametrize(
    "name",
    [
        *OLD,
        UPGRADED_BY_OLD_CODE,  # lacked ix_events_review: revision v5 adds it
    ],
)
def test_an_old_gallery_reaches_the_head_schema(name: str, tmp_path: Path) -> None:
    engine = sqlite_engine(load(name, tmp_path))
    upgraded(engine)
    with engine.connect() as conn:
        assert differences(conn) == []
        assert current(conn) == HEAD
        assert schema_version(conn) == str(SCHEMA_VERSION)
        stamped = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        assert list(stamped) == [HEAD]
    engine.dispose()


def test_a_v4_gallery_upgraded_by_the_old_code_gets_ix_events_review_from_v5(
    tmp_path: Path,
) -> None:
    """The old code left this gallery at schema v4 without the index; v5 adds it."""
    path = load(UPGRADED_BY_OLD_CODE, tmp_path)
    index = "SELECT count(*) FROM sqlite_master WHERE type='index' AND name='ix_events_review'"
    with sqlite3.connect(path) as conn:
        assert conn.execute(index).fetchone() == (0,)
    engine = sqlite_engine(path)
    upgraded(engine)
    engine.dispose()
    with sqlite3.connect(path) as conn:
        assert conn.execute(index).fetchone() == (1,)


@pytest.mark.parametrize("name", OLD)
def test_each_migration_creates_what_the_old_code_created(name: str, tmp_path: Path) -> None:
    """From an empty file, revisions v1..vN give the very DDL (tables, indexes, triggers,
    AUTOINCREMENT) that the old code wrote into gallery vN."""
    path = tmp_path / "fresh.db"
    engine = sqlite_engine(path)
    with write(engine) as conn:
        to_revision(conn, name)
    engine.dispose()
    assert sqlite_schema(path) == sqlite_schema(load(name, tmp_path))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT key, value FROM meta").fetchall() == [("app", APP_ID)]


@pytest.mark.parametrize("name", ["v3", "v4", UPGRADED_BY_OLD_CODE])
def test_the_ledger_of_an_old_gallery_stays_append_only(name: str, tmp_path: Path) -> None:
    engine = sqlite_engine(load(name, tmp_path))
    upgraded(engine)
    for statement in ("UPDATE ledger SET actor = 'mallory'", "DELETE FROM ledger"):
        assert "the ledger is append-only" in refused(engine, statement)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM ledger")).scalar()
    assert count == MANIFEST["galleries"][name]["ledger_entries"]
    engine.dispose()


@pytest.mark.parametrize("name", [*OLD, UPGRADED_BY_OLD_CODE])
def test_upgrading_twice_changes_nothing(name: str, tmp_path: Path) -> None:
    path = load(name, tmp_path)
    engine = sqlite_engine(path)
    upgraded(engine)
    schema, rows = sqlite_schema(path), contents(path)
    with write(engine) as conn:
        dbapi = conn.connection.dbapi_connection
        assert isinstance(dbapi, sqlite3.Connection)
        changes = dbapi.total_changes
        upgrade(conn)
        assert dbapi.total_changes == changes, "the second upgrade wrote rows"
    assert sqlite_schema(path) == schema
    assert contents(path) == rows
    engine.dispose()


def test_an_upgrade_rolled_back_leaves_the_old_gallery_as_it_was(tmp_path: Path) -> None:
    path = load("v2", tmp_path)
    schema, rows = sqlite_schema(path), contents(path)
    engine = sqlite_engine(path)
    with engine.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        upgrade(conn)
        assert current(conn) == HEAD
        conn.rollback()
    assert sqlite_schema(path) == schema
    assert contents(path) == rows
    with engine.connect() as conn:
        assert current(conn) == "v2"
    engine.dispose()


def test_upgrade_makes_sqlite_ddl_transactional_itself(tmp_path: Path) -> None:
    """A caller that only said ``engine.begin()`` (pysqlite sends no BEGIN before DDL) still
    gets one transaction: rolled back, nothing was created."""
    path = tmp_path / "gallery.db"
    engine = sqlite_engine(path)
    with engine.connect() as conn:
        conn.begin()
        upgrade(conn)
        conn.rollback()
    assert sqlite_schema(path) == {}
    with engine.begin() as conn:
        upgrade(conn)
    with engine.connect() as conn:
        assert current(conn) == HEAD
        assert differences(conn) == []
    engine.dispose()


def test_a_gallery_left_at_schema_version_0_is_upgraded_from_base(tmp_path: Path) -> None:
    """The old Gallery made ``meta`` and its ``app`` row before its first migration: a crash
    in between left a gallery with only that, which v1 completes."""
    path = tmp_path / "gallery.db"
    with sqlite3.connect(path) as conn:
        conn.execute('CREATE TABLE meta ("key" VARCHAR(64) NOT NULL, value TEXT NOT NULL, '
                     'PRIMARY KEY ("key"))')  # fmt: skip
        conn.execute("INSERT INTO meta VALUES ('app', ?)", (APP_ID,))
    engine = sqlite_engine(path)
    with engine.connect() as conn:
        assert current(conn) is None
    upgraded(engine)
    with engine.connect() as conn:
        assert current(conn) == HEAD
        assert differences(conn) == []
        meta = {k: v for k, v in conn.execute(sa.text("SELECT key, value FROM meta"))}
        assert re.fullmatch("[0-9a-f]{32}", meta.pop("index_epoch"))
        assert meta == {"app": APP_ID, "schema_version": str(SCHEMA_VERSION)}
    engine.dispose()


# ---- what upgrade refuses -------------------------------------------------------------------


def test_a_gallery_newer_than_this_faceledger_is_refused(tmp_path: Path) -> None:
    path = load("v4", tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    engine = sqlite_engine(path)
    with engine.connect() as conn, pytest.raises(StorageError, match="v6 is newer"):
        upgrade(conn)
    engine.dispose()


def test_a_revision_this_faceledger_does_not_know_is_refused(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path / "gallery.db")
    upgraded(engine)
    with write(engine) as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'v9'"))
    with engine.connect() as conn:
        assert current(conn) == "v9"
        with pytest.raises(StorageError, match="v9, which this faceledger does not know"):
            upgrade(conn)
    engine.dispose()


def test_a_database_that_is_not_faceledgers_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    engine = sqlite_engine(path)
    with engine.connect() as conn:
        assert current(conn) is None
        with pytest.raises(StorageError, match="invoices"):
            upgrade(conn)
    engine.dispose()


# ---- a fresh database, SQLite and PostgreSQL ------------------------------------------------


def test_a_fresh_database_is_upgraded_to_the_head_schema(db_url: str) -> None:
    engine = engine_for(db_url)
    with engine.connect() as conn:
        assert current(conn) is None
    upgraded(engine)
    with engine.connect() as conn:
        assert differences(conn) == []
        assert current(conn) == HEAD
        meta = {k: v for k, v in conn.execute(sa.text("SELECT key, value FROM meta"))}
        assert re.fullmatch("[0-9a-f]{32}", meta.pop("index_epoch"))
        assert meta == {"app": APP_ID, "schema_version": str(SCHEMA_VERSION)}
        tables = set(sa.inspect(conn).get_table_names())
        assert tables == {*metadata.tables, "alembic_version"}
    upgraded(engine)  # again: nothing to do
    with engine.connect() as conn:
        assert differences(conn) == []
        stamped = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        assert list(stamped) == [HEAD]

    with write(engine) as conn:
        conn.exec_driver_sql(A_LEDGER_ROW)
        # reviews_needed has its server default on every path
        conn.exec_driver_sql(
            "INSERT INTO events (created_at, source, track_id, first_t, last_t, score, "
            "threshold, threshold_fmr, model_id, status) "
            "VALUES ('t', 's', 1, 0.0, 1.0, 0.5, 0.5, 0.001, 'm', 'decided')"
        )
        assert conn.exec_driver_sql("SELECT reviews_needed FROM events").scalar() == 0
    statements = ["UPDATE ledger SET actor = 'mallory'", "DELETE FROM ledger"]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE ledger")
    for statement in statements:
        assert "the ledger is append-only" in refused(engine, statement)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM ledger").scalar() == 1
    engine.dispose()


def test_a_fresh_postgresql_database_gets_the_head_ddl(pg_url: str) -> None:
    """The migrated schema is what ``metadata.create_all`` makes (column order, types,
    defaults, constraint and index names; compared in the catalogue, beyond what autogenerate looks
    at), plus the ledger's guards: one function and three triggers."""
    engine = engine_for(pg_url)
    upgraded(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA head")
        metadata.create_all(conn.execution_options(schema_translate_map={None: "head"}))
    with engine.connect() as conn:
        migrated, head = pg_catalogue(conn, "public"), pg_catalogue(conn, "head")
        assert migrated.pop("alembic_version") == {
            "column version_num": "#1 character varying(32) NOT NULL DEFAULT None",
            "constraint alembic_version_pkc": "PRIMARY KEY (version_num)",
            "index alembic_version_pkc": "CREATE UNIQUE INDEX alembic_version_pkc "
            "ON alembic_version USING btree (version_num)",
        }
        assert migrated == head
        triggers = conn.exec_driver_sql(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.ledger'::regclass "
            "AND NOT tgisinternal ORDER BY tgname"
        ).scalars()
        assert list(triggers) == ["ledger_no_delete", "ledger_no_truncate", "ledger_no_update"]
        function = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_proc WHERE proname = 'faceledger_ledger_append_only'"
        ).scalar()
        assert function == 1
    engine.dispose()


def pg_catalogue(conn: Connection, schema: str) -> dict[str, dict[str, str]]:
    """table -> {"column|constraint|index NAME": its definition}, schema names dropped."""
    out: dict[str, dict[str, str]] = {}
    columns = conn.execute(
        sa.text(
            "SELECT table_name, column_name, '#' || ordinal_position || ' ' || "
            "format_type(a.atttypid, a.atttypmod) || CASE WHEN is_nullable = 'NO' "
            "THEN ' NOT NULL' ELSE '' END || ' DEFAULT ' || coalesce(column_default, 'None') "
            "FROM information_schema.columns c JOIN pg_attribute a "
            "ON a.attrelid = (quote_ident(c.table_schema) || '.' || quote_ident(c.table_name))"
            "::regclass AND a.attname = c.column_name "
            "WHERE table_schema = :s ORDER BY table_name, ordinal_position"
        ),
        {"s": schema},
    )
    constraints = conn.execute(
        sa.text(
            "SELECT r.relname, conname, pg_get_constraintdef(x.oid) FROM pg_constraint x "
            "JOIN pg_class r ON r.oid = x.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace "
            "WHERE n.nspname = :s"
        ),
        {"s": schema},
    )
    indexes = conn.execute(
        sa.text("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = :s"),
        {"s": schema},
    )
    for kind, rows in (("column", columns), ("constraint", constraints), ("index", indexes)):
        for table, name, definition in rows:
            text = str(definition).replace(f"{schema}.", "")
            out.setdefault(table, {})[f"{kind} {name}"] = text
    return out
