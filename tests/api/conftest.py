"""Fixtures for the REST API tests: apps are costly (models load in about a second), so
each is shared by a module or by the session, over its own gallery in a temp folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.api.apikit import Api, running_api
from tests.conftest import MODELS, SMOKE, need

ApiFactory = Callable[..., Api]


@pytest.fixture(scope="session")
def make_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiFactory]:
    """Build an app over a fresh gallery: ``make_api("name", load=..., **config)``; each
    one runs until the session ends."""
    cache = tmp_path_factory.getbasetemp() / "model-cache"
    with ExitStack() as stack:

        def make(name: str, **options: Any) -> Api:
            db = tmp_path_factory.mktemp(f"api-{name}") / "gallery.db"
            return stack.enter_context(running_api(db, cache, **options))

        yield make


@pytest.fixture(scope="session")
def light_api(make_api: ApiFactory) -> Api:
    """An app that loads no model up front: enough for keys, roles, the ledger and
    validation, and needs no shared data."""
    return make_api("light", load=False)


@pytest.fixture(scope="session")
def api(make_api: ApiFactory) -> Api:
    """An app with its models loaded, for requests on real photos."""
    need(MODELS)
    need(SMOKE)
    return make_api("models")
