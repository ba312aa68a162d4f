"""The operator console in a real browser: Debian's chromium driven by Playwright, against
a real ``faceledger serve`` on 127.0.0.1 over a temporary gallery, with one key per role.

Screenshots of every page and the accessibility results (axe-core, injected into each
page) are saved under ``build/test-artifacts/web/`` (or ``$FACELEDGER_ARTIFACTS/web``).
Without chromium, the playwright package, axe-core (``npm ci --prefix tests/web``) or the
shared models and photos, the tests skip and say which is missing; ``.ci/run`` installs
all of them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from faceledger.access import KeyStore, Role
from faceledger.bench.service import Server
from faceledger.config import load_config
from faceledger.operations import Acting, Operations
from tests.conftest import MODELS, SMOKE, need
from tests.web.artifacts import ARTIFACTS, FOUND

KEYS = {
    "admin-1": Role.admin,
    "enroller-1": Role.enroller,
    "operator-1": Role.operator,
    "reviewer-1": Role.reviewer,
    "reviewer-2": Role.reviewer,
    "auditor-1": Role.auditor,
}


def need_browser() -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run does)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    return chromium


@dataclass
class Console:
    """One running server with its gallery and a key per person."""

    url: str
    db: Path
    env: dict[str, str]
    tokens: dict[str, str]
    server: Server

    def run_cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``faceledger ARGS`` on this gallery, as another process (a scan beside the
        server, as an operator would run it)."""
        return subprocess.run(
            [sys.executable, "-m", "faceledger", *args, "--db", str(self.db)],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    need_browser()
    need(MODELS)
    need(SMOKE)
    base = tmp_path_factory.mktemp("console")
    db = base / "gallery.db"
    env = {
        "FACELEDGER_DB": str(db),
        "FACELEDGER_PROFILE": "fast",
        "FACELEDGER_MODEL_MIRROR": str(MODELS),
        "FACELEDGER_MODEL_CACHE": str(tmp_path_factory.getbasetemp() / "model-cache"),
        "FACELEDGER_OFFLINE": "1",
        "XDG_CACHE_HOME": str(base / "user-cache"),
    }
    config = load_config(db=str(db), profile="fast", offline=True)
    with Operations(config) as ops:
        tokens = {
            name: KeyStore(ops.db).create(name, role, "tests")[0] for name, role in KEYS.items()
        }
        ops.create_watchlist(Acting("admin-1", "admin"), "wanted", True, True)
    command = [sys.executable, "-m", "faceledger", "serve"]
    with Server(env, base / "serve.log", command=command) as server:
        server.wait_ready(tokens["admin-1"], timeout=120)
        yield Console(server.url, db, env, tokens, server)
        server.stop()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module")
def browser(console: Console) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=need_browser(), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="session", autouse=True)
def _accessibility_report() -> Iterator[None]:
    """Write what axe found on each page (``accessibility.json``) when the tests end."""
    yield
    if FOUND:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        out = ARTIFACTS / "accessibility.json"
        out.write_text(json.dumps(FOUND, indent=2, sort_keys=True) + "\n")
