"""The documented grant script, run with psql on a real server: the application's role
reads and appends to the ledger but can neither change nor delete it, nor disable the
triggers that refuse it; everything else faceledger does works under that role."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from importlib import resources
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from faceledger import Acting, Operations, load_config
from faceledger.db import Database


@pytest.fixture
def app_role(postgres: Any, pg_url: str) -> Iterator[str]:
    """A login role for the application (roles belong to the whole cluster: dropped after,
    with its grants in the test's database)."""
    role = f"app_{uuid.uuid4().hex[:10]}"
    with postgres.connect("postgres", autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    yield role
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{role}"')
    with postgres.connect("postgres", autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_the_application_role_can_append_but_never_change_the_ledger(
    postgres: Any, pg_url: str, app_role: str
) -> None:
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed (Debian's postgresql-client)")
    Database(pg_url).close()  # the owner creates the schema
    script = resources.files("faceledger.db").joinpath("postgresql_grants.sql")
    with resources.as_file(script) as path:
        done = subprocess.run(
            [psql, pg_url, "-v", "ON_ERROR_STOP=1", "-v", f"app={app_role}", "-q", "-f", str(path)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    as_app = pg_url.replace("postgresql://postgres@", f"postgresql://{app_role}@")
    with Operations(load_config(db=as_app)) as ops:
        ops.create_watchlist(Acting("ada", "admin"), "staff")
        ops.create_subject(Acting("eve", "enroller"), "bob", "signed consent 2026-11")
        assert ops.remove_subject(Acting("eve", "enroller"), "bob").value.templates == 0
        assert [e.action for e in ops.audit_entries()] == [
            "watchlist.create", "subject.create", "subject.delete"
        ]  # fmt: skip
        for statement in (
            "UPDATE ledger SET actor = 'x'",
            "DELETE FROM ledger",
            "TRUNCATE ledger",
            "ALTER TABLE ledger DISABLE TRIGGER USER",
            "UPDATE alembic_version SET version_num = 'v1'",
        ):
            with pytest.raises(sa.exc.ProgrammingError) as caught, ops.db.engine.begin() as conn:
                conn.exec_driver_sql(statement)
            assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege), statement
        assert ops.audit_verify().ok and ops.audit_verify().entries == 3
