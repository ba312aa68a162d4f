"""Helpers for the REST API tests: apps over fresh galleries (a SQLite file or a
PostgreSQL database), keys per role, raw SQL beside the app (to tamper with what it
wrote), the access policy stated independently of ``faceledger.access.PERMISSIONS``, and
the route list."""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from PIL import Image

from faceledger.access import Role
from faceledger.api import create_app
from faceledger.api.service import Service
from faceledger.config import load_config
from faceledger.operations import Operations
from tests.conftest import MODELS, SMOKE

HEADER = "X-API-Key"
IDENTITIES = SMOKE / "identities"
SCENES = SMOKE / "scenes"

ADMIN, ENROLLER, OPERATOR = Role.admin, Role.enroller, Role.operator
REVIEWER, AUDITOR = Role.reviewer, Role.auditor
EVERYONE = frozenset(Role)

POLICY: dict[tuple[str, str], frozenset[Role]] = {
    # operator: searches
    ("POST", "/v1/identify"): frozenset({OPERATOR}),
    ("POST", "/v1/verify"): frozenset({OPERATOR}),
    ("POST", "/v1/detect"): frozenset({OPERATOR}),
    # enroller: subjects and their templates
    ("POST", "/v1/subjects"): frozenset({ENROLLER}),
    ("GET", "/v1/subjects"): frozenset({ENROLLER}),
    ("GET", "/v1/subjects/{name}"): frozenset({ENROLLER}),
    ("DELETE", "/v1/subjects/{name}"): frozenset({ENROLLER}),
    ("GET", "/v1/subjects/{name}/templates"): frozenset({ENROLLER}),
    ("POST", "/v1/subjects/{name}/templates"): frozenset({ENROLLER}),
    ("DELETE", "/v1/subjects/{name}/templates/{template_id}"): frozenset({ENROLLER}),
    ("GET", "/v1/subjects/{name}/templates/{template_id}/crop"): frozenset({ENROLLER}),
    ("GET", "/v1/subjects/{name}/history"): frozenset({ENROLLER}),
    # operator and reviewer read events; only a reviewer decides
    ("GET", "/v1/events"): frozenset({OPERATOR, REVIEWER}),
    ("GET", "/v1/events/{event_id}"): frozenset({OPERATOR, REVIEWER}),
    ("GET", "/v1/events/{event_id}/crop"): frozenset({OPERATOR, REVIEWER}),
    ("GET", "/v1/events/stream"): frozenset({OPERATOR, REVIEWER}),
    ("GET", "/v1/events/{event_id}/templates"): frozenset({OPERATOR, REVIEWER}),
    ("GET", "/v1/events/{event_id}/templates/{template_id}/crop"): frozenset({OPERATOR, REVIEWER}),
    ("POST", "/v1/events/{event_id}/review"): frozenset({REVIEWER}),
    # auditor: the ledger, and nothing else
    ("GET", "/v1/audit"): frozenset({AUDITOR}),
    ("GET", "/v1/audit/export"): frozenset({AUDITOR}),
    ("GET", "/v1/audit/verify"): frozenset({AUDITOR}),
    # admin: keys, watch lists, retention; the enroller reads watch lists to use them
    ("POST", "/v1/keys"): frozenset({ADMIN}),
    ("GET", "/v1/keys"): frozenset({ADMIN}),
    ("DELETE", "/v1/keys/{key_id}"): frozenset({ADMIN}),
    ("POST", "/v1/watchlists"): frozenset({ADMIN}),
    ("GET", "/v1/watchlists"): frozenset({ADMIN, ENROLLER}),
    ("POST", "/v1/retention/run"): frozenset({ADMIN}),
    # admin manages cameras; the operator reads them (whether they run)
    ("GET", "/v1/cameras"): frozenset({ADMIN, OPERATOR}),
    ("GET", "/v1/cameras/{name}"): frozenset({ADMIN, OPERATOR}),
    ("POST", "/v1/cameras"): frozenset({ADMIN}),
    ("POST", "/v1/cameras/{name}/pause"): frozenset({ADMIN}),
    ("POST", "/v1/cameras/{name}/resume"): frozenset({ADMIN}),
    ("DELETE", "/v1/cameras/{name}"): frozenset({ADMIN}),
    # everyone
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/metrics"): EVERYONE,
    ("GET", "/v1/status"): EVERYONE,
    # the console's session: who is signed in, and signing out
    ("GET", "/v1/session"): EVERYONE,
    ("DELETE", "/v1/session"): EVERYONE,
}
"""Who may call what: the policy the API must enforce, written out by hand."""

PUBLIC_DOCS = frozenset(
    {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/docs-static", "/", "/console"}
)
"""The only routes outside the API, which take no key: FastAPI's documentation pages (and
their files), and the console's page and files (which hold no data)."""

SIGN_IN = ("POST", "/v1/session")
"""The one API route that takes a key in its body instead (tests/web/test_sessions.py)."""

PUBLIC: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/livez"): {"status": "ok"},
}
"""The only API routes that take no key, each with the one answer it may give (a liveness
probe for container health checks: it reveals nothing)."""


def route_entries(app: FastAPI) -> list[tuple[Any, str, set[str]]]:
    """(route, path, methods) of every route, routers included flattened (newer FastAPI
    keeps included routers as one entry of ``app.routes``)."""
    from fastapi import routing

    walk = getattr(routing, "iter_route_contexts", None)
    if walk is None:  # FastAPI before included routers were kept nested
        return [(r, r.path, set(getattr(r, "methods", None) or ())) for r in app.routes]
    return [(c.original_route, c.path, set(c.methods or ())) for c in walk(app.routes)]


def operations(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every API route of ``app``."""
    return {
        (method, path)
        for route, path, methods in route_entries(app)
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in methods
    }


def concrete(path: str) -> str:
    """``path`` with its parameters filled in with values that name nothing."""
    return (
        path.replace("{name}", "nobody-here")
        .replace("{template_id}", "1")
        .replace("{event_id}", "999999")
        .replace("{key_id}", "00000000")
        .replace("/v1/events/stream", "/v1/events/stream?seconds=0.3")
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def png_bytes(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "PNG")
    return out.getvalue()


def no_face_png() -> bytes:
    """A smooth gradient: decodes fine, holds no face."""
    ramp = np.linspace(0, 255, 320, dtype=np.uint8)
    across, down = np.meshgrid(ramp, ramp[::-1])
    return png_bytes(np.stack([across, down, np.full_like(across, 90)], -1))


def photo(person: str, name: str) -> bytes:
    return (IDENTITIES / person / name).read_bytes()


def is_postgres(db: str | Path) -> bool:
    return str(db).startswith("postgresql://")


@dataclass
class Api:
    """One running app (its lifespan entered) over its own gallery, with a key per role."""

    app: FastAPI
    client: TestClient
    db: str
    """The gallery: a SQLite file's path, or a PostgreSQL database's URL."""
    tokens: dict[Role, str]
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return "postgresql" if is_postgres(self.db) else "sqlite"

    @property
    def svc(self) -> Service:
        svc: Service = self.app.state.service
        return svc

    @property
    def ops(self) -> Operations:
        """The app's operations (tests reach their stores to check what was written)."""
        return self.svc.ops

    def headers(self, role: Role) -> dict[str, str]:
        return {HEADER: self.tokens[role]}

    def key(self, name: str, role: Role) -> str:
        """A token for a further key (made once per name; set-up, so not in the ledger)."""
        if name not in self.extra:
            self.extra[name] = self.ops.keys.create(name, role, "tests")[0]
        return self.extra[name]

    def ledger_json(self) -> list[dict[str, Any]]:
        return [e.as_json() for e in self.ops.ledger.entries()]

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement on the gallery's database, beside the app (autocommit; ``?``
        placeholders on both backends); the rows it returns."""
        return raw_sql(self.db, statement, params)

    def drop_ledger_guards(self) -> None:
        """Drop the triggers that keep the ledger append-only (to tamper with it)."""
        on = " ON ledger" if self.backend == "postgresql" else ""
        for verb in ("update", "delete"):
            self.sql(f"DROP TRIGGER ledger_no_{verb}{on}")


def raw_sql(db: str | Path, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    if is_postgres(db):
        import psycopg

        with psycopg.connect(str(db), autocommit=True) as conn:
            cursor = conn.execute(statement.replace("?", "%s"), tuple(params))
            return list(cursor.fetchall()) if cursor.description else []
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        return list(conn.execute(statement, tuple(params)).fetchall())


def config_for(db: str | Path, cache: Path, **overrides: Any) -> Any:
    """The `fast` profile with MobileFaceNet (no flip): runs with and without PyTorch."""
    settings: dict[str, Any] = {
        "db": str(db),
        "profile": "fast",
        "embedder": "mobilefacenet",
        "flip": False,
        "offline": True,
        "model_cache": cache,
        "model_mirror": MODELS if MODELS.is_dir() else None,
    }
    settings.update(overrides)
    return load_config(**settings)


@contextmanager
def clean_env(cache: Path) -> Iterator[None]:
    """No FACELEDGER_* setting of the developer's leaks into an app built outside a test
    (module and session fixtures run before the autouse env fixture)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("FACELEDGER_"):
                mp.delenv(name)
        mp.setenv("FACELEDGER_OFFLINE", "1")
        mp.setenv("FACELEDGER_MODEL_CACHE", str(cache))
        if MODELS.is_dir():
            mp.setenv("FACELEDGER_MODEL_MIRROR", str(MODELS))
        yield


@contextmanager
def running_api(
    db: str | Path,
    cache: Path,
    *,
    load: bool = True,
    raise_errors: bool = True,
    busy_timeout_s: float | None = None,
    **overrides: Any,
) -> Iterator[Api]:
    """An app over a new gallery at ``db`` (a SQLite path or a PostgreSQL URL) with one
    key per role (named ``<role>-1``).

    ``load``: load the models at start-up (False: only if a request needs them).
    ``raise_errors``: let the test client re-raise server errors (False: see the 500).
    ``busy_timeout_s``: how long a write waits for another writer's lock (the app is then
    served over operations opened here, with that timeout)."""
    with clean_env(cache):
        config = config_for(db, cache, **overrides)
        lent = None if busy_timeout_s is None else Operations(config, busy_timeout_s=busy_timeout_s)
        try:
            app = create_app(config, lent, load=load)
            keys = app.state.service.ops.keys  # set-up: keys made without ledger entries
            tokens = {role: keys.create(f"{role.value}-1", role, "tests")[0] for role in Role}
            with TestClient(app, raise_server_exceptions=raise_errors) as client:
                yield Api(app, client, str(db), tokens)
        finally:
            if lent is not None:
                lent.close()
