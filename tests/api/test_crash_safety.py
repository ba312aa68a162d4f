"""SIGKILL a real server in the middle of a burst of enrollments, then check the gallery.

Every acknowledged (201) enrollment must be there after the crash; nothing half-written may
be: each template has its 'enroll' ledger entry and each entry its templates (they commit
in one transaction), each subject its 'subject.create' entry, the database passes
``PRAGMA integrity_check`` and the hash chain verifies. A restarted server then carries on.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from faceledger.access import KeyStore, Role
from faceledger.bench.service import Server
from faceledger.gallery.store import Gallery
from faceledger.ledger import Ledger
from tests.conftest import MODELS, SMOKE, need

SUBJECTS = 40
CLIENTS = 4
KILL_AFTER = 12
"""Acknowledged enrollments before the SIGKILL (the other clients are mid-request)."""
TIMEOUT = 20.0
"""Seconds for one request, and for a client to notice the server is gone."""
BURST_TIMEOUT = 60.0
BASIS = "crash-safety test"


@dataclass
class Burst:
    """What the clients saw, shared between their threads."""

    created: set[str] = field(default_factory=set)
    enrolled: dict[str, tuple[str, int]] = field(default_factory=dict)
    """subject -> (sha256 of its photo, ledger_seq) for every 201 on a template upload."""
    statuses: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)

    def saw(self, what: str, answer: httpx.Response) -> None:
        with self.lock:
            self.statuses[f"{what} {answer.status_code}"] += 1


def server_env(db: Path) -> dict[str, str]:
    return {
        "FACELEDGER_DB": str(db),
        "FACELEDGER_PROFILE": "fast",
        "FACELEDGER_EMBEDDER": "mobilefacenet",  # runs without PyTorch (CI)
        "FACELEDGER_FLIP": "0",
        "FACELEDGER_MODEL_MIRROR": str(MODELS),
        "FACELEDGER_OFFLINE": "1",
    }


def photos() -> list[Path]:
    """Several distinct real photos: the first two of every person in the smoke set."""
    folders = sorted(p for p in need(SMOKE / "identities").iterdir() if p.is_dir())
    picked = [f for folder in folders for f in sorted(folder.glob("*.jpg"))[:2]]
    assert len(picked) >= 20, "the smoke set should hold at least 20 photos"
    return picked


def enroll_one(client: httpx.Client, burst: Burst, name: str, photo: Path) -> None:
    made = client.post("/v1/subjects", json={"name": name, "legal_basis": BASIS})
    burst.saw("create", made)
    if made.status_code != 201:
        return
    with burst.lock:
        burst.created.add(name)
    data = photo.read_bytes()
    sent = client.post(
        f"/v1/subjects/{name}/templates",
        files={"images": (photo.name, data)},
        data={"largest": "true"},
    )
    burst.saw("enroll", sent)
    if sent.status_code == 201:
        with burst.lock:
            burst.enrolled[name] = (hashlib.sha256(data).hexdigest(), sent.json()["ledger_seq"])
            if len(burst.enrolled) >= KILL_AFTER:
                burst.enough.set()


def client(url: str, token: str, work: list[tuple[str, Path]], burst: Burst) -> None:
    headers = {"X-API-Key": token}
    with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT) as http:
        for name, photo in work:
            try:
                enroll_one(http, burst, name, photo)
            except httpx.TransportError:
                return  # the server is gone


def fire(url: str, token: str, server: Server) -> Burst:
    """Run the burst from CLIENTS threads; SIGKILL the server after KILL_AFTER acks."""
    burst = Burst()
    pool = photos()
    work = [(f"crash-{i:02d}", pool[i % len(pool)]) for i in range(SUBJECTS)]
    threads = [
        threading.Thread(target=client, args=(url, token, work[i::CLIENTS], burst), daemon=True)
        for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    assert burst.enough.wait(BURST_TIMEOUT), f"too few enrollments acknowledged: {burst.statuses}"
    server.kill()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "a client hung after the server died"
    return burst


def check_integrity(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def check_consistent(db: Path, burst: Burst) -> int:
    """The gallery after the crash against the acknowledgements and the ledger; returns
    the ledger's length."""
    with Gallery(db) as gallery:
        templates = {s.name: gallery.subject(s.name)[1] for s in gallery.subjects()}
        ledger = Ledger(gallery)
        report = ledger.verify()
        enrolls = ledger.entries(action="enroll")
        creates = ledger.entries(action="subject.create")
    assert report.ok, report.reason
    # every acknowledged write survived
    assert burst.created <= set(templates), burst.created - set(templates)
    by_seq = {e.seq: e for e in enrolls}
    for name, (digest, seq) in burst.enrolled.items():
        assert digest in {t.source_sha256 for t in templates[name]}, name
        assert by_seq[seq].result["subject"] == name and by_seq[seq].inputs == (digest,)
    # nothing half-written: templates <-> 'enroll' entries, subjects <-> 'subject.create'
    recorded: dict[str, list[str]] = {}
    for entry in enrolls:
        recorded.setdefault(entry.result["subject"], []).extend(entry.inputs)
    stored = {name: sorted(t.source_sha256 for t in found) for name, found in templates.items()}
    assert {k: sorted(v) for k, v in recorded.items()} == {k: v for k, v in stored.items() if v}
    assert sorted(e.result["subject"] for e in creates) == sorted(templates)
    return report.entries


def check_restart(db: Path, token: str, log: Path, entries: int) -> None:
    """A new server on the crashed gallery answers, enrolls, and extends the chain."""
    photo = photos()[-1]
    with Server(server_env(db), log) as server:
        server.wait_ready(token, 60)
        headers = {"X-API-Key": token}
        with httpx.Client(base_url=server.url, headers=headers, timeout=TIMEOUT) as http:
            made = http.post("/v1/subjects", json={"name": "after-crash", "legal_basis": BASIS})
            assert made.status_code == 201, made.text
            files = {"images": (photo.name, photo.read_bytes())}
            sent = http.post("/v1/subjects/after-crash/templates", files=files)
            assert sent.status_code == 201, sent.text
    with Gallery(db) as gallery:
        report = Ledger(gallery).verify()
    assert report.ok and report.entries == entries + 2, report.reason


def test_sigkill_during_enrollments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    need(MODELS)
    db = tmp_path / "gallery.db"
    with Gallery(db) as gallery:
        token, _ = KeyStore(gallery).create("crash-test", Role.enroller, "test")
    log = tmp_path / "server.log"
    server = Server(server_env(db), log)
    try:
        server.start()
        server.wait_ready(token, 60)
        burst = fire(server.url, token, server)
    finally:
        server.kill()
    unexpected = {k: n for k, n in burst.statuses.items() if not k.endswith(" 201")}
    assert not unexpected, f"{unexpected}\n{server.log_tail()}"
    assert KILL_AFTER <= len(burst.enrolled) < SUBJECTS, "the kill should land mid-burst"
    check_integrity(db)
    entries = check_consistent(db, burst)
    check_restart(db, token, log, entries)
