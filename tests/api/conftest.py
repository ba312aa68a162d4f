"""Fixtures for the REST API tests: apps are costly (models load in about a second), so
each is shared by a module or by the session, over its own gallery in a temp folder or
its own database on the session's throw-away PostgreSQL server.

``light_api`` and ``api`` are parametrized by ``backend``: every test using them runs on
SQLite and on PostgreSQL (``-k sqlite`` never starts a server; without PostgreSQL the
``postgresql`` cases skip, saying why)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from tests.api.apikit import Api, running_api
from tests.conftest import MODELS, SMOKE, need

if TYPE_CHECKING:
    from faceledger.testing.postgres import PostgresCluster

ApiFactory = Callable[..., Api]
BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Backend:
    """Where an app's gallery lives: SQLite files, or databases on one PostgreSQL server."""

    name: str
    cluster: PostgresCluster | None = None

    def database(self, tmp_path_factory: pytest.TempPathFactory, label: str) -> str:
        if self.cluster is None:
            return str(tmp_path_factory.mktemp(f"api-{label}") / "gallery.db")
        name = f"api_{re.sub(r'[^a-z0-9]+', '_', label.lower())}_{uuid.uuid4().hex[:8]}"
        return self.cluster.create_database(name)

    def __str__(self) -> str:
        return self.name


SQLITE = Backend("sqlite")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn, for the session (the PostgreSQL server starts only if asked)."""
    if request.param == "sqlite":
        return SQLITE
    return Backend("postgresql", request.getfixturevalue("postgres"))


@pytest.fixture(scope="session")
def make_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiFactory]:
    """Build an app over a fresh gallery: ``make_api("name", backend=..., load=...,
    **config)`` (SQLite unless ``backend`` says otherwise); each runs until the session
    ends."""
    cache = tmp_path_factory.getbasetemp() / "model-cache"
    with ExitStack() as stack:

        def make(name: str, backend: Backend = SQLITE, **options: Any) -> Api:
            db = backend.database(tmp_path_factory, name)
            return stack.enter_context(running_api(db, cache, **options))

        yield make


@pytest.fixture(scope="session")
def light_api(backend: Backend, make_api: ApiFactory) -> Api:
    """An app that loads no model up front: enough for keys, roles, the ledger and
    validation, and needs no shared data."""
    return make_api(f"light-{backend}", backend=backend, load=False)


@pytest.fixture(scope="session")
def api(backend: Backend, make_api: ApiFactory) -> Api:
    """An app with its models loaded, for requests on real photos."""
    need(MODELS)
    need(SMOKE)
    return make_api(f"models-{backend}", backend=backend)
