"""SIGKILL `faceledger scan` of the real clip at random moments, then check the record.

A scan writes ``scan.start``, then each decided track's event together with the
``scan.track`` entry naming it (one transaction), then ``scan.end``. Killed at any moment,
the gallery must hold every stored event with exactly one entry naming it and no entry
naming an event that is not there; the run's entries must be a prefix of a whole run's
(start, tracks, end: no track before its start); the hash chain must verify. The same
gallery takes every kill in turn, then a last scan that runs to the end. On SQLite and on
a real PostgreSQL server (the ``db_url`` fixture).

Kill moments are drawn (seeded) between ``FIRST_KILL_S`` and the wall time of a whole
scan (process start included) measured first on the same backend: one in each of
``KILLS`` equal slices of that span, in shuffled order, so that the kills spread over the
process's start (models loading), the tracks being decided, and its end.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from faceledger.config import load_config
from faceledger.events import EventRecord
from faceledger.ledger import LedgerEntry
from faceledger.ledger.chain import VerifyReport
from faceledger.operations import Acting, Operations
from tests.conftest import MODELS, SMOKE, need, standin_env

KILLS = 5
SEED = 20_261_201
FIRST_KILL_S = 0.5
RUN_TIMEOUT_S = 60.0
"""Longest a whole scan may take (it takes about 5 s on two cores)."""
CLIP = SMOKE / "video" / "short_hamilton_clip.mp4"
WHOLE_RUN = re.compile(r"(start( track)*( end)?)?")
"""The actions a run may leave, in ledger order ('scan.' left out): a prefix of a whole run."""


@dataclass(frozen=True)
class State:
    """What the gallery holds at one moment: events, ledger entries, the chain's check."""

    events: list[EventRecord]
    """Oldest first."""
    entries: list[LedgerEntry]
    """Oldest first."""
    report: VerifyReport

    def since(self, before: State) -> tuple[list[EventRecord], list[LedgerEntry]]:
        last_event = max((e.id for e in before.events), default=0)
        last_seq = max((e.seq for e in before.entries), default=0)
        return (
            [e for e in self.events if e.id > last_event],
            [e for e in self.entries if e.seq > last_seq],
        )


def read_state(db_url: str) -> State:
    with Operations(load_config(db=db_url, profile="fast"), create=False) as ops:
        events = sorted(ops.list_events(limit=1_000_000), key=lambda e: e.id)
        entries = ops.audit_entries()
        report = ops.audit_verify()
    return State(events, entries, report)


def kill_moments(seed: int, first: float, last: float, count: int) -> list[float]:
    """One moment drawn in each of ``count`` equal slices of [first, last], shuffled."""
    rng = random.Random(seed)
    width = (last - first) / count
    moments = [round(first + (i + rng.random()) * width, 2) for i in range(count)]
    rng.shuffle(moments)
    return moments


def launch(db_url: str, log: Path, *options: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **standin_env()}
    command = [sys.executable, "-m", "faceledger", "scan", str(CLIP), "-p", "fast",
               "--db", db_url, "--json", "-", "--purpose", "crash test", *options]  # fmt: skip
    with log.open("ab") as stderr:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def check(db_url: str, before: State, label: str) -> tuple[State, str, str]:
    """The gallery after one run (killed or not) against the rules of the module notes;
    returns the new state, the run's actions and a line of figures."""
    state = read_state(db_url)
    assert state.report.ok, f"{label}: {state.report.reason}"
    tracks = [e for e in state.entries if e.action == "scan.track"]
    # every stored event has exactly one scan.track entry naming it, and nothing more
    assert sorted(e.result["event"] for e in tracks) == [e.id for e in state.events], label
    by_id = {e.id: e for e in state.events}
    for entry in tracks:
        event = by_id[entry.result["event"]]
        assert (entry.result["subject"], entry.result["track"]) == (event.subject, event.track_id)
    assert any(e.action == "scan.start" for e in state.entries), label
    new_events, new_entries = state.since(before)
    actions = " ".join(e.action.removeprefix("scan.") for e in new_entries)
    assert WHOLE_RUN.fullmatch(actions), f"{label}: this run left {actions!r}"
    named = [e.result["event"] for e in new_entries if e.action == "scan.track"]
    assert named == [e.id for e in new_events], label  # in the order they were decided
    counts = {a: actions.split().count(a) for a in ("start", "track", "end")}
    line = (
        f"{label}: {len(new_events)} events, entries start/track/end "
        f"{counts['start']}/{counts['track']}/{counts['end']}; gallery {len(state.events)} "
        f"events, {state.report.entries} entries, chain ok"
    )
    return state, actions, line


def check_sqlite_file(db_url: str) -> None:
    if db_url.startswith("postgresql"):
        return
    with sqlite3.connect(f"file:{db_url}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_sigkill_during_a_scan_leaves_every_event_on_the_record(
    db_url: str, tmp_path: Path
) -> None:
    need(MODELS)
    need(CLIP)
    backend = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    began = time.monotonic()
    log = tmp_path / "scan.log"
    with Operations(load_config(db=db_url, profile="fast")) as ops:
        photo = SMOKE / "video" / "lin-manuel-miranda.png"
        report, _ = ops.enroll(Acting.os_user(), "lin-manuel-miranda", [photo], "crash test")
    assert report.enrolled, report.failures
    state = read_state(db_url)
    lines = []

    # a whole scan: how long one takes here, and what it leaves
    started = time.monotonic()
    whole = launch(db_url, log)
    assert whole.wait(RUN_TIMEOUT_S) == 0, log.read_text()[-3000:]
    whole_s = time.monotonic() - started
    state, actions, line = check(db_url, state, f"whole run ({whole_s:.2f} s)")
    assert actions.startswith("start track") and actions.endswith("track end"), actions
    lines.append(line)

    moments = kill_moments(SEED, FIRST_KILL_S, whole_s, KILLS)
    for i, moment in enumerate(moments, 1):
        started = time.monotonic()
        proc = launch(db_url, log)
        try:
            time.sleep(max(0.0, started + moment - time.monotonic()))
            finished = proc.poll() is not None
            if not finished:
                proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(RUN_TIMEOUT_S)
        assert finished or proc.returncode == -signal.SIGKILL
        check_sqlite_file(db_url)
        how = "finished before the kill" if finished else "SIGKILL"
        state, _, line = check(db_url, state, f"kill {i} at {moment:.2f} s ({how})")
        lines.append(line)

    # the crashed gallery carries on: a last whole (quicker) scan, the chain extended
    final = launch(db_url, log, "--every", "3")
    assert final.wait(RUN_TIMEOUT_S) == 0, log.read_text()[-3000:]
    state, actions, line = check(db_url, state, "whole run after the kills")
    assert actions.startswith("start track") and actions.endswith("track end"), actions
    lines.append(line)
    check_sqlite_file(db_url)

    print(f"\n{backend}: kill moments {moments} s (seed {SEED}, whole scan {whole_s:.2f} s)")
    for line in lines:
        print(f"  {line}")
    print(f"  {backend}: {time.monotonic() - began:.1f} s in all")
