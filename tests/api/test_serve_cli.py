"""`faceledger serve` itself: starts on 127.0.0.1, answers with a key, refuses without."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from faceledger.access import KeyStore, Role
from faceledger.bench.service import Server
from faceledger.gallery.store import Gallery
from faceledger.ledger import Ledger
from tests.api.test_crash_safety import server_env
from tests.conftest import MODELS, need


def test_serve_answers_on_localhost_with_one_thread_per_request(tmp_path: Path) -> None:
    need(MODELS)
    db = tmp_path / "g.db"
    with Gallery(db) as gallery:
        token, _ = KeyStore(gallery).create("probe", Role.auditor, "test")
    command = [sys.executable, "-m", "faceledger", "serve"]
    with Server(server_env(db), tmp_path / "serve.log", command=command) as server:
        health = server.wait_ready(token)
        assert health["status"] == "ok" and health["model"] == "mobilefacenet"
        assert health["threads"] == 1  # serve's default (docs/SERVICE.md, load benchmark)
        assert httpx.get(f"{server.url}/v1/audit/verify", timeout=10).status_code == 401
        answer = httpx.get(
            f"{server.url}/v1/audit/verify", headers={"X-API-Key": token}, timeout=10
        )
        assert answer.status_code == 200 and answer.json()["ok"]
        server.stop()
        assert "http://127.0.0.1:" in server.log_tail()
    with Gallery(db) as gallery:
        assert Ledger(gallery).verify().ok
