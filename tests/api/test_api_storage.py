"""The database misbehaving under the API, on SQLite and on PostgreSQL: a write held up by
another writer's lock past the busy timeout is a 503 with ``Retry-After`` (and a JSON
error, no traceback in the log); a ledger entry that cannot be read back is a 409 naming
it on ``/v1/audit`` and ``/v1/audit/export``, and ``/v1/audit/verify`` reports it."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from faceledger.access import Role
from faceledger.db.engine import LEDGER_LOCK
from tests.api.apikit import Api
from tests.api.conftest import Backend

BUSY_TIMEOUT_S = 0.5
"""The locked app's busy timeout (``running_api(busy_timeout_s=...)`` opens its operations
with it; the default is 5 s)."""
DEEP = "[" * 100_000
"""A result no summary could be: nested 100,000 levels deep (and not even closed)."""


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    error: dict[str, Any] = response.json()["error"]
    return error


@contextlib.contextmanager
def write_lock_held(api: Api) -> Iterator[None]:
    """Another connection holding the write lock until the block ends: SQLite ``BEGIN
    IMMEDIATE``; PostgreSQL the ledger head's advisory lock (what every recorded write
    takes), in an open transaction."""
    if api.backend == "sqlite":
        conn = sqlite3.connect(api.db, isolation_level=None, timeout=0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(api.db) as pg:
        pg.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK,))
        yield
        pg.rollback()


@pytest.fixture
def locked(make_api: Callable[..., Api], backend: Backend) -> Api:
    return make_api(f"locked-{backend}", backend=backend, load=False, busy_timeout_s=BUSY_TIMEOUT_S)


def test_a_write_held_up_past_the_busy_timeout_is_503_with_retry_after(
    locked: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api = locked
    enroller = api.headers(Role.enroller)
    body = {"name": "waits-for-the-lock", "legal_basis": "signed consent, form 3"}
    before = len(api.ledger_json())
    caplog.set_level(logging.DEBUG)
    with write_lock_held(api):
        # reads go on: the key is checked, subjects are listed
        assert api.client.get("/v1/subjects", headers=enroller).status_code == 200
        started = time.monotonic()
        response = api.client.post("/v1/subjects", json=body, headers=enroller)
        waited = time.monotonic() - started
    assert response.status_code == 503, response.text
    # the busy timeout (0.5 s here), rounded up to whole seconds
    assert response.headers["retry-after"] == "1"
    error = error_of(response)
    assert error["type"] == "StorageBusyError"
    assert "busy" in error["message"] and "try again" in error["message"]
    assert api.db not in error["message"] and api.ops.db.name not in error["message"]
    # it waited about the busy timeout, not the 5 s default nor forever
    assert BUSY_TIMEOUT_S * 0.8 <= waited < BUSY_TIMEOUT_S + 2.0, waited
    # one line in the log, never a traceback
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert any("503" in r.getMessage() for r in caplog.records if r.name == "faceledger.api")
    # nothing half-done, and the same request succeeds once the lock is gone
    assert len(api.ledger_json()) == before
    again = api.client.post("/v1/subjects", json=body, headers=enroller)
    assert again.status_code == 201, again.text
    assert [e["action"] for e in api.ledger_json()[before:]] == ["subject.create"]


# ---- an unreadable ledger entry --------------------------------------------------------


def insert_crafted_entry(api: Api) -> int:
    """A row appended with a raw INSERT (the append-only triggers refuse only UPDATE,
    DELETE and TRUNCATE) whose result is 100,000 levels deep; returns its seq."""
    (last_seq, last_hash), *_ = api.sql("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
    seq = int(last_seq) + 1
    api.sql(
        "INSERT INTO ledger (seq, at, actor, role, action, purpose, case_ref, inputs, result,"
        " gallery, model, prev_hash, hash) VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, NULL, ?, ?)",
        (seq, "2026-01-01T00:00:00Z", "intruder", "cli", "crafted", "[]", DEEP, "crafted",
         last_hash, "f" * 64),
    )  # fmt: skip
    return seq


def test_an_unreadable_ledger_entry_is_a_409_naming_it_and_verify_reports_it(
    make_api: Callable[..., Api], backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    api = make_api(f"deep-entry-{backend}", backend=backend, load=False)
    enroller, auditor = api.headers(Role.enroller), api.headers(Role.auditor)
    for name in ("before-1", "before-2"):
        made = api.client.post(
            "/v1/subjects", json={"name": name, "legal_basis": "consent"}, headers=enroller
        )
        assert made.status_code == 201, made.text
    seq = insert_crafted_entry(api)
    # the API goes on writing: the next entry chains to the crafted one
    after = api.client.post(
        "/v1/subjects", json={"name": "after", "legal_basis": "consent"}, headers=enroller
    )
    assert after.status_code == 201, after.text
    caplog.set_level(logging.DEBUG)

    for path in ("/v1/audit", "/v1/audit/export"):
        response = api.client.get(path, headers=auditor)
        assert response.status_code == 409, (path, response.text[:500])
        error = error_of(response)
        assert error["type"] == "BadEntryError"
        assert error["entry"] == seq
        assert f"ledger entry {seq} is unreadable" in error["message"]
        assert "/v1/audit/verify" in error["message"]
        assert len(response.text) < 1000  # the entry's text is not echoed back
    # what can be read still can: the entries before it, and a filter that skips it
    first = api.client.get("/v1/audit", params={"limit": seq - 1}, headers=auditor)
    assert first.status_code == 200, first.text
    assert [e["seq"] for e in first.json()] == list(range(1, seq))
    creates = api.client.get("/v1/audit", params={"action": "subject.create"}, headers=auditor)
    assert creates.status_code == 200, creates.text
    assert len(creates.json()) == 3

    report = api.client.get("/v1/audit/verify", headers=auditor)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["ok"] is False
    assert body["first_bad"] == seq
    assert f"entry {seq} unreadable" in body["reason"] and "nested" in body["reason"]
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
