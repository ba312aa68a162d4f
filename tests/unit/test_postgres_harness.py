"""The throw-away PostgreSQL server of faceledger.testing.postgres, against a real server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from faceledger.testing.postgres import PostgresCluster, port_is_free, unavailable


def _databases(cluster: PostgresCluster) -> set[str]:
    with cluster.connect() as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def test_unavailable_is_none_or_a_reason() -> None:
    reason = unavailable()
    assert reason is None or (isinstance(reason, str) and reason)


def test_cluster_serves_on_loopback_only(postgres: PostgresCluster) -> None:
    assert postgres.running
    assert postgres.host == "127.0.0.1"
    assert postgres.url() == f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres"
    assert postgres.url("other").endswith(f":{postgres.port}/other")
    with postgres.connect() as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('listen_addresses', 'port', 'fsync', 'max_connections', 'server_encoding')"
            ).fetchall()
        )
        version = conn.execute("SHOW server_version_num").fetchone()
    assert settings["listen_addresses"] == "127.0.0.1"
    assert int(settings["port"]) == postgres.port
    assert settings["fsync"] == "off"
    assert int(settings["max_connections"]) == 200
    assert settings["server_encoding"] == "UTF8"
    assert version is not None
    assert int(version[0]) >= 120000


def test_connect_and_create_a_table(pg_url: str, postgres: PostgresCluster) -> None:
    name = pg_url.rsplit("/", 1)[1]
    assert re.fullmatch(r"t_[0-9a-f]{12}", name)
    with postgres.connect(name) as conn:
        conn.execute("CREATE TABLE subjects (id serial PRIMARY KEY, label text NOT NULL)")
        conn.execute("INSERT INTO subjects (label) VALUES (%s), (%s)", ("ada", "grace"))
        conn.commit()
    with postgres.connect(name) as conn:
        rows = conn.execute("SELECT label FROM subjects ORDER BY id").fetchall()
    assert rows == [("ada",), ("grace",)]


def test_pg_url_is_a_fresh_database_each_time(pg_url: str, postgres: PostgresCluster) -> None:
    with postgres.connect(pg_url.rsplit("/", 1)[1]) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_create_and_drop_database(postgres: PostgresCluster) -> None:
    url = postgres.create_database("harness_probe")
    try:
        assert url == postgres.url("harness_probe")
        assert "harness_probe" in _databases(postgres)
        held = postgres.connect("harness_probe")  # drop_database must end it, not wait on it
        held.execute("CREATE TABLE t (x int)")
        held.commit()
        postgres.drop_database("harness_probe")
        assert "harness_probe" not in _databases(postgres)
        assert held.closed or held.broken or _is_terminated(held)
        held.close()
    finally:
        postgres.drop_database("harness_probe")  # IF EXISTS: a second drop is fine
    assert "harness_probe" not in _databases(postgres)


def _is_terminated(conn: object) -> bool:
    import psycopg

    assert isinstance(conn, psycopg.Connection)
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


def test_db_url_gives_each_backend(db_url: str, tmp_path: Path) -> None:
    if db_url.startswith("postgresql://"):
        assert re.fullmatch(r"postgresql://postgres@127\.0\.0\.1:\d+/t_[0-9a-f]{12}", db_url)
    else:
        assert db_url == str(tmp_path / "gallery.db")


def test_stop_is_idempotent_and_frees_the_port() -> None:
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"PostgreSQL cannot run here: {reason}")
    import psycopg

    with PostgresCluster() as cluster:
        port = cluster.port
        directory = cluster.directory
        assert (directory / "data" / "PG_VERSION").is_file()
        assert not port_is_free(port)
        conn = cluster.connect()
        assert conn.execute("SELECT 1").fetchone() == (1,)
    cluster.stop()  # after __exit__: nothing left to do
    cluster.stop()
    assert not cluster.running
    assert not directory.exists()
    assert port_is_free(port)
    with pytest.raises(RuntimeError, match="not running"):
        _ = cluster.port
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=port, user="postgres", connect_timeout=3).close()
