"""Helpers for the REST API tests: apps over fresh galleries, keys per role, the access
policy stated independently of ``faceledger.access.PERMISSIONS``, and the route list."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from PIL import Image

from faceledger.access import KeyStore, Role
from faceledger.api import create_app
from faceledger.api.service import Service
from faceledger.config import load_config
from faceledger.gallery import Gallery
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
    # operator and reviewer read events; only a reviewer decides
    ("GET", "/v1/events"): frozenset({OPERATOR, REVIEWER}),
    ("GET", "/v1/events/{event_id}"): frozenset({OPERATOR, REVIEWER}),
    ("GET", "/v1/events/{event_id}/crop"): frozenset({OPERATOR, REVIEWER}),
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
    # everyone
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/metrics"): EVERYONE,
}
"""Who may call what: the policy the API must enforce, written out by hand."""

PUBLIC_DOCS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
"""The only routes outside the API (FastAPI's documentation pages), which take no key."""


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
        if isinstance(route, APIRoute)
        for method in methods
    }


def concrete(path: str) -> str:
    """``path`` with its parameters filled in with values that name nothing."""
    return (
        path.replace("{name}", "nobody-here")
        .replace("{template_id}", "1")
        .replace("{event_id}", "999999")
        .replace("{key_id}", "00000000")
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


@dataclass
class Api:
    """One running app (its lifespan entered) over its own gallery, with a key per role."""

    app: FastAPI
    client: TestClient
    db: Path
    tokens: dict[Role, str]
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def svc(self) -> Service:
        svc: Service = self.app.state.service
        return svc

    def headers(self, role: Role) -> dict[str, str]:
        return {HEADER: self.tokens[role]}

    def key(self, name: str, role: Role) -> str:
        """A token for a further key (made once per name)."""
        if name not in self.extra:
            self.extra[name] = self.svc.keys.create(name, role, "tests")[0]
        return self.extra[name]

    def ledger_json(self) -> list[dict[str, Any]]:
        return [e.as_json() for e in self.svc.ledger.entries()]


def config_for(db: Path, cache: Path, **overrides: Any) -> Any:
    """The `fast` profile with MobileFaceNet (no flip): runs with and without PyTorch."""
    settings: dict[str, Any] = {
        "db": db,
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
    db: Path, cache: Path, *, load: bool = True, raise_errors: bool = True, **overrides: Any
) -> Iterator[Api]:
    """An app over a new gallery at ``db`` with one key per role (named ``<role>-1``).

    ``load``: load the models at start-up (False: only if a request needs them).
    ``raise_errors``: let the test client re-raise server errors (False: see the 500)."""
    with clean_env(cache):
        with Gallery(db) as gallery:
            keys = KeyStore(gallery)
            tokens = {role: keys.create(f"{role.value}-1", role, "tests")[0] for role in Role}
        app = create_app(config_for(db, cache, **overrides), load=load)
        with TestClient(app, raise_server_exceptions=raise_errors) as client:
            yield Api(app, client, db, tokens)
