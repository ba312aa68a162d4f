"""Shared fixtures: real data from ../shared (tests skip, saying why, when it is absent)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    monkeypatch.setenv("FACELEDGER_OFFLINE", "1")
    if MODELS.is_dir():
        monkeypatch.setenv("FACELEDGER_MODEL_MIRROR", str(MODELS))
    else:
        monkeypatch.delenv("FACELEDGER_MODEL_MIRROR", raising=False)
    monkeypatch.delenv("FACELEDGER_PROFILE", raising=False)
    monkeypatch.delenv("FACELEDGER_CONFIG", raising=False)
    yield


def need_profile(profile: str) -> None:
    """Skip unless ``profile``'s models can run here; convert EdgeFace (once) when they need it.

    The converted file goes into the session's model cache (FACELEDGER_MODEL_CACHE), where
    every Engine of the session finds it.
    """
    from faceledger.config import load_config
    from faceledger.models.catalog import get_card, get_profile
    from faceledger.models.store import ModelStore

    need(MODELS)
    card = get_card(get_profile(profile).embedder)
    if not card.converted:
        return
    config = load_config()
    store = ModelStore(config.model_cache, mirror=config.model_mirror, offline=True)
    if store.find_converted(card) is not None:
        return
    if importlib.util.find_spec("torch") is None:
        pytest.skip(
            f"profile {profile} needs {card.name} converted, and PyTorch is not installed "
            "to convert it (pip install 'faceledger[convert]')"
        )
    from faceledger.convert import convert

    convert(card, store)


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
