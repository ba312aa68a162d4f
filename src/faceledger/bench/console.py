"""``faceledger bench console``: what a reviewer gets from the operator console.

A real ``faceledger serve`` over a temporary gallery, and Debian's chromium driven by
Playwright with the review queue open. Decided tracks are recorded through the operations
layer (as a camera's scan records them: event and ledger entry in one transaction) at a
set interval, and the page notes when each one appears in the open queue (a
MutationObserver; the browser and this process share the machine's clock). Then the
reviewer works through the queue with the keyboard alone: ``Enter`` opens the newest
event, ``c`` confirms it and the page moves on to the next pending one, until none is left.

Reported: the delay from each event's commit to its row in the queue (p50, p95, max;
target < 1 s), and the keyboard flow (events confirmed, keys pressed, seconds per event,
all confirmed by the right person according to the API)."""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from faceledger.access import KeyStore, Role
from faceledger.bench.service import Server
from faceledger.config import Config
from faceledger.errors import ConfigError, FaceledgerError
from faceledger.operations import Acting, Operations, VideoRun
from faceledger.types import Candidate, Match, Threshold

WATCHLIST = "bench-review"
OBSERVE = """() => {
  window.__seen = {};
  const note = () => {
    for (const li of document.querySelectorAll('#queue li[data-event-id]')) {
      const id = li.dataset.eventId;
      if (!(id in window.__seen)) window.__seen[id] = Date.now() / 1000;
    }
  };
  new MutationObserver(note).observe(document.body, {childList: true, subtree: true});
  note();
}"""


@dataclass(frozen=True)
class ConsoleResult:
    events: int
    interval_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_max_s: float
    missed: int
    """Events that never appeared in the open queue within the wait."""
    keyboard_events: int
    keyboard_keys: int
    keyboard_seconds: float
    keyboard_per_event_s: float
    confirmed_by_reviewer: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _decision(index: int, subject: str) -> Any:
    from faceledger.video.scan import TrackDecision

    threshold = Threshold(0.5, 1e-3, "bench", "balanced")
    ramp = np.linspace(40, 200, 112, dtype=np.uint8)
    crop = np.stack([np.tile(ramp, (112, 1))] * 3, axis=-1)
    return TrackDecision(
        source="bench-camera",
        track_id=index,
        first_t=float(index),
        last_t=float(index) + 1.5,
        frames=20,
        embedded=5,
        best_t=float(index) + 0.5,
        best_box=(10.0, 20.0, 60.0, 80.0),
        match=Match(subject, 0.8, threshold, (Candidate(subject, 0.8),)),
        best_crop=crop,
    )


def _server_env(config: Config) -> dict[str, str]:
    """The server's settings: this gallery, and the models as this process finds them."""
    env = {"FACELEDGER_DB": str(config.db), "FACELEDGER_PROFILE": config.profile}
    if config.model_mirror is not None:
        env["FACELEDGER_MODEL_MIRROR"] = str(config.model_mirror)
    if config.model_cache is not None:
        env["FACELEDGER_MODEL_CACHE"] = str(config.model_cache)
    if config.offline:
        env["FACELEDGER_OFFLINE"] = "1"
    return env


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise ConfigError("bench console needs chromium (Debian: apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise ConfigError("bench console needs Playwright: pip install playwright") from None
    return path


def run_console_bench(
    config: Config,
    events: int = 20,
    interval_s: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> ConsoleResult:
    """Measure on a new gallery in a temporary folder (``config`` gives the models)."""
    chromium = _chromium()
    say = progress or (lambda _text: None)
    with tempfile.TemporaryDirectory(prefix="faceledger-console-bench-") as tmp:
        db = Path(tmp) / "gallery.db"
        local = config.model_copy(update={"db": str(db)})
        with Operations(local) as ops:
            token = KeyStore(ops.db).create("reviewer-1", Role.reviewer, "bench")[0]
            admin = Acting("bench", "admin")
            ops.create_watchlist(admin, WATCHLIST, True, False)
            names = [f"person-{i:02d}" for i in range(events)]
            for name in names:
                ops.create_subject(admin, name, "bench: synthetic subject", [WATCHLIST])
            env = _server_env(local)
            command = [sys.executable, "-m", "faceledger", "serve"]
            with Server(env, Path(tmp) / "serve.log", command=command) as server:
                server.wait_ready(token, timeout=120)
                say(f"server on {server.url}; opening the review queue in chromium")
                return _measure(
                    ops, server.url, token, names, interval_s=interval_s, chromium=chromium, say=say
                )


def _measure(
    ops: Operations,
    url: str,
    token: str,
    names: list[str],
    *,
    interval_s: float,
    chromium: str,
    say: Callable[[str], None],
) -> ConsoleResult:
    from playwright.sync_api import expect, sync_playwright

    run = VideoRun(ops, Acting("bench-camera", "node"), "watch", "bench-camera", camera="cam-1")
    run.start()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{url}/#/signin")
        page.get_by_label("API key").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"{url}/#/review")
        expect(page.locator("h1")).to_have_text("Review queue")
        page.wait_for_timeout(1000)  # the live feed connects
        page.evaluate(OBSERVE)
        committed: dict[int, float] = {}
        for i, name in enumerate(names):
            event_id = run.record(_decision(i + 1, name))
            committed[event_id] = time.time()
            time.sleep(interval_s)
        deadline = time.monotonic() + 10
        seen: dict[str, float] = {}
        while time.monotonic() < deadline:
            seen = page.evaluate("() => window.__seen")
            if all(str(e) in seen for e in committed):
                break
            time.sleep(0.1)
        delays = sorted(seen[str(e)] - t for e, t in committed.items() if str(e) in seen)
        say(f"{len(delays)} of {len(committed)} events shown; keyboard flow next")
        keys, seconds = _keyboard(page, len(committed))
        browser.close()
    with httpx.Client(base_url=url, headers={"X-API-Key": token}, timeout=30) as client:
        listed = client.get("/v1/events", params={"limit": 1000}).json()
        confirmed = sum(1 for e in listed if e["review"] == "confirmed")
        mine = 0
        for event in listed:
            detail = client.get(f"/v1/events/{event['id']}").json()
            mine += any(r["reviewer"] == "reviewer-1" for r in detail["reviews"])
    if not delays:
        raise FaceledgerError("no event reached the open review queue")
    return ConsoleResult(
        events=len(committed),
        interval_s=interval_s,
        latency_p50_s=round(statistics.median(delays), 3),
        latency_p95_s=round(float(np.percentile(delays, 95)), 3),
        latency_max_s=round(delays[-1], 3),
        missed=len(committed) - len(delays),
        keyboard_events=confirmed,
        keyboard_keys=keys,
        keyboard_seconds=round(seconds, 2),
        keyboard_per_event_s=round(seconds / max(confirmed, 1), 3),
        confirmed_by_reviewer=mine,
    )


def _keyboard(page: Any, pending: int) -> tuple[int, float]:
    """Work through the queue with keys only: (keys pressed, seconds)."""
    from playwright.sync_api import expect

    started = time.monotonic()
    page.locator("body").press("j")  # select the newest
    page.keyboard.press("Enter")
    keys = 2
    for _ in range(pending):
        expect(page.get_by_test_id("review-state")).to_contain_text("Needs", timeout=10_000)
        heading = page.locator("h1").inner_text()
        page.keyboard.press("c")
        keys += 1
        expect(page.locator("h1")).not_to_have_text(heading, timeout=10_000)
    expect(page.locator("h1")).to_have_text("Review queue", timeout=10_000)
    return keys, time.monotonic() - started
