"""Shared fixtures: real data from ../shared (tests skip, saying why, when it is absent)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from faceledger.testing.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = SHARED / "models"
SMOKE = SHARED / "datasets" / "smoke"
LFW = SHARED / "datasets" / "lfw"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(
            f"{path} is absent: this test needs the shared models and datasets beside the project"
        )
    return path


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Never touch the user's gallery or cache; look for models in ../shared/models."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("FACELEDGER_DB", str(base / "default-gallery.db"))
    monkeypatch.setenv("FACELEDGER_MODEL_CACHE", str(base / "model-cache"))
    # the index files of PostgreSQL galleries live in the user cache: keep them in tmp too
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "user-cache"))
    monkeypatch.setenv("FACELEDGER_OFFLINE", "1")
    if MODELS.is_dir():
        monkeypatch.setenv("FACELEDGER_MODEL_MIRROR", str(MODELS))
    else:
        monkeypatch.delenv("FACELEDGER_MODEL_MIRROR", raising=False)
    monkeypatch.delenv("FACELEDGER_PROFILE", raising=False)
    monkeypatch.delenv("FACELEDGER_CONFIG", raising=False)
    yield


STANDIN_ENV = {"FACELEDGER_EMBEDDER": "mobilefacenet", "FACELEDGER_FLIP": "0"}
"""For a `fast` subprocess when EdgeFace cannot be converted (see ``_edgeface``)."""


def _edgeface_available() -> bool:
    """EdgeFace is converted (without PyTorch) from its state dict in ../shared/models."""
    return MODELS.is_dir()


def standin_env() -> dict[str, str]:
    """Environment for a subprocess running the `fast` profile: the stand-in when needed."""
    return {} if _edgeface_available() else dict(STANDIN_ENV)


@pytest.fixture(scope="session", autouse=True)
def _edgeface(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Convert the EdgeFace models (fast and accurate use them) once into the session's model
    cache, with the numpy converter (no PyTorch), so that no test pays for it and every
    subprocess finds them. Without ../shared/models they cannot be made: then the `fast`
    and `accurate` profiles are given MobileFaceNet (no flip) in EdgeFace's place, and the
    tests of the real profiles skip (see ``need_profile``)."""
    from faceledger.models import catalog

    if _edgeface_available():
        from faceledger.convert import convert
        from faceledger.models.store import ModelStore

        store = ModelStore(tmp_path_factory.getbasetemp() / "model-cache", mirror=MODELS)
        for name in ("edgeface_xxs", "edgeface_xs"):
            convert(catalog.get_card(name), store)
        yield
        return
    original = catalog.PROFILES
    standins = {
        name: dataclasses.replace(p, embedder="mobilefacenet", flip=False)
        if catalog.get_card(p.embedder).converted
        else p
        for name, p in original.items()
    }
    catalog.PROFILES = MappingProxyType(standins)
    yield
    catalog.PROFILES = original


def need_profile(profile: str) -> None:
    """Skip unless ``profile``'s own models can run here (they come from ../shared/models;
    EdgeFace is converted from its state dict there)."""
    need(MODELS)


@pytest.fixture
def smoke() -> Path:
    return need(SMOKE)


@pytest.fixture
def lfw() -> Path:
    need(LFW / "pairs.txt")
    return LFW


@pytest.fixture
def models_dir() -> Path:
    return need(MODELS)


def pytest_report_header() -> str:
    state = "present" if SHARED.is_dir() else "ABSENT (data tests will skip)"
    return f"shared data: {SHARED} {state}; threads: {os.cpu_count()}"


# -- PostgreSQL: a throw-away server for the tests that need one ---------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throw-away PostgreSQL cluster for the session (skips, saying why, without one)."""
    from faceledger.testing.postgres import PostgresCluster, unavailable

    reason = unavailable()
    if reason is not None:
        pytest.skip(f"PostgreSQL cannot run here: {reason}")
    with PostgresCluster() as cluster:
        yield cluster


def _fresh_database(cluster: PostgresCluster) -> Iterator[str]:
    import uuid

    name = f"t_{uuid.uuid4().hex[:12]}"
    url = cluster.create_database(name)
    try:
        yield url
    finally:
        cluster.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database for one test: a SQLite file path, or a fresh PostgreSQL database's url.

    Only the postgresql case asks for the ``postgres`` fixture, so ``-k sqlite`` runs never
    start a server."""
    if request.param == "sqlite":
        yield str(tmp_path / "gallery.db")
        return
    yield from _fresh_database(request.getfixturevalue("postgres"))


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> Iterator[str]:
    """A fresh PostgreSQL database's url, for tests that need only PostgreSQL."""
    yield from _fresh_database(postgres)
