"""The camera node (``faceledger.network.node``, ``faceledger node``) on real cameras on
127.0.0.1: HTTP MPEG-TS and RTSP servers looping synthetic clips of LFW people
(``faceledger.testing``), a real gallery file, a real Mosquitto broker. No mocks.

One gallery (A on watch list "staff", B on "other" only, C not enrolled), two clips and
two HTTP cameras serve the whole module; each test adds cameras of its own and runs only
those (``LocalClaims(only=...)``, ``faceledger node --camera``). Every wait is bounded.

The node's tracker here ends a track after 0.3 s without a detection (the default is
1 s): a clip's gap between two people is 0.5-0.8 s, so the default tracker carries one
person's (already decided) track over to the next person, who is then never decided
(see ``test_every_appearance_in_a_looping_clip_is_decided``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from faceledger import Acting, Operations, load_config
from faceledger.config import Config, NodeConfig
from faceledger.errors import ConfigError
from faceledger.events import Dispatcher, JsonlSink
from faceledger.faces.track import TrackerConfig
from faceledger.gallery.cameras import CameraSettings
from faceledger.ledger.chain import LedgerEntry
from faceledger.network.node import LocalClaims, Node
from faceledger.testing.clips import (
    GAP_S,
    MIN_VISIBLE_S,
    ClipTruth,
    Person,
    lfw_people,
    write_camera_clip,
)
from faceledger.testing.streams import HttpTsServer, RtspServer, free_port, rtsp_unavailable
from faceledger.video.scan import VideoScanner, detect_batch
from faceledger.video.source import Frame, file_frames
from tests.conftest import LFW, MODELS, need, standin_env

SIZE = (640, 360)
FPS = 25
FACE_SIDE = 120
SEED = 7
"""Which LFW people are A, B and C (enrolled from their first photo, shown in their second)."""
WINDOW_S = math.ceil((MIN_VISIBLE_S + GAP_S) * FPS) / FPS + 0.2
"""One person's window of a clip: on screen, then nobody (3.2 s with the clips' constants)."""
ABC_S = 3 * WINDOW_S
"""A, B and C in turn."""
AC_S = 2 * WINDOW_S
"""A and C in turn."""

NODE_TRACKER = TrackerConfig(max_miss_s=0.3)
"""Ends a track within the shortest gap between two people of a clip (0.5 s)."""
CONNECT_S = 1.2
"""A stream starts with a burst of up to a second of frames (from the keyframe before the
live point): tracks that began then are not placed in the clip by time."""
SLACK_S = 0.3
"""How far outside a window (decoding latency) a track's middle may be and still be placed."""
WATCH_S = CONNECT_S + ABC_S + 2.0
"""Long enough for every person of the A-B-C clip to be seen whole after the connect burst."""
JOIN_S = 40.0
"""The longest a stopping node may take to drain (each camera: its feed's timeout + 2 s)."""
SECRET = "s3cret-PW"
PURPOSE = "entrance security"
BASIS = "test: legitimate interest (site access)"
CONSENT = "test consent"


# -- helpers -------------------------------------------------------------------------------


def wait_until(condition: Callable[[], Any], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def started_at(event: dict[str, Any]) -> float:
    """The wall-clock time (epoch s) at which the event's track began."""
    return datetime.fromisoformat(event["at"]).timestamp()


@dataclass
class Served:
    """A looping HTTP camera and what its clip shows."""

    server: HttpTsServer
    truth: ClipTruth
    epoch_wall: float
    """When the server's first lap began (epoch s): a lap is the clip's duration."""

    @property
    def url(self) -> str:
        return self.server.url

    def label(self, event: dict[str, Any]) -> str | None:
        """Whose window of the clip the event's track lies in (by time), or None when it
        cannot be told (the track began in the connect burst, or between windows)."""
        if event["first_t"] < CONNECT_S:
            return None
        middle = started_at(event) + (event["last_t"] - event["first_t"]) / 2
        t = (middle - self.epoch_wall) % self.truth.seconds
        for a in self.truth.appearances:
            if a.t_in - SLACK_S <= t <= a.t_out + SLACK_S:
                return a.label
        return None


@dataclass
class World:
    ops: Operations
    config: Config
    db: Path
    cache: Path
    people: tuple[Person, Person, Person]
    abc: Served
    ac: Served

    @property
    def names(self) -> tuple[str, str, str]:
        a, b, c = self.people
        return a.name, b.name, c.name


class ListSink:
    """A sink keeping every event with when it came (monotonic s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.got: list[tuple[float, dict[str, Any]]] = []

    def send(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.got.append((time.monotonic(), json.loads(json.dumps(event))))

    def close(self) -> None:
        return None

    def events(self, camera: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e for _, e in self.got if camera is None or e["camera"] == camera]

    def timed(self) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return list(self.got)


class HealthLog:
    """A node's ``on_health``: every health report, with when it came (monotonic s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lines: list[tuple[float, str, dict[str, Any]]] = []

    def __call__(self, camera: str, health: dict[str, Any]) -> None:
        with self._lock:
            self.lines.append((time.monotonic(), camera, json.loads(json.dumps(health))))

    def of(self, camera: str) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return [(t, h) for t, c, h in self.lines if c == camera]


def node_config(ops: Operations, **update: Any) -> NodeConfig:
    settings: dict[str, Any] = {"tracker": NODE_TRACKER, "health_every": 0.5}
    return ops.config.node.model_copy(update={**settings, **update})


def only(*names: str) -> LocalClaims:
    return LocalClaims(only=frozenset(names))


def snapshot(node: Node, camera: str) -> dict[str, Any] | None:
    runner = node.runners.get(camera)
    return None if runner is None else runner.feed.health.snapshot()


def is_live(node: Node, camera: str) -> bool:
    health = snapshot(node, camera)
    return health is not None and health["state"] == "live"


@contextlib.contextmanager
def running(node: Node, limit: float = 120.0) -> Iterator[threading.Thread]:
    """The node running in a thread (for at most ``limit`` s); stopped and drained after."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            node.run(limit)
        except BaseException as exc:
            failures.append(exc)
            raise

    thread = threading.Thread(target=run, name=f"node {node.name}", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        node.stop()
        thread.join(JOIN_S)
    assert not thread.is_alive(), f"node {node.name} did not stop in {JOIN_S:g} s"
    assert not failures, failures


def on_ledger(ops: Operations, action: str, camera: str) -> list[LedgerEntry]:
    return [
        e
        for e in ops.audit_entries(action=action)
        if isinstance(e.result, dict) and e.result.get("camera") == camera
    ]


def add_camera(world: World, name: str, url: str, lists: tuple[str, ...] = ("staff",), **kw: Any):
    return world.ops.add_camera(
        Acting.os_user(), CameraSettings(name, url, PURPOSE, BASIS, lists, **kw)
    )


def gallery_config(db: Path, cache: Path) -> Config:
    return load_config(
        profile="fast", db=str(db), offline=True, model_cache=cache, model_mirror=MODELS
    )


@contextlib.contextmanager
def clean_env(base: Path) -> Iterator[None]:
    """Module fixtures run before the autouse env fixture: no developer FACELEDGER_*
    setting leaks in, models come from ../shared/models."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("FACELEDGER_"):
                mp.delenv(name)
        mp.setenv("FACELEDGER_OFFLINE", "1")
        mp.setenv("FACELEDGER_MODEL_CACHE", str(base / "model-cache"))
        mp.setenv("FACELEDGER_MODEL_MIRROR", str(MODELS))
        mp.setenv("XDG_CACHE_HOME", str(base / "user-cache"))
        yield


def need_rtsp() -> None:
    reason = rtsp_unavailable()
    if reason is not None:
        pytest.skip(f"no RTSP server here: {reason}")


def cli_env() -> dict[str, str]:
    """The environment of a ``faceledger node`` subprocess (the test's isolated one)."""
    return {
        **os.environ,
        **standin_env(),
        "FACELEDGER_NODE__TRACKER__MAX_MISS_S": str(NODE_TRACKER.max_miss_s),
    }


def node_command(world: World, *args: str) -> list[str]:
    command = [sys.executable, "-m", "faceledger", "node", "--db", str(world.db)]
    return [*command, "--profile", "fast", *args]


def health_lines(stderr: str) -> list[dict[str, Any]]:
    """The JSON health lines among a node's stderr lines."""
    found = []
    for line in stderr.splitlines():
        text = line.strip()
        if text.startswith('{"camera"'):
            found.append(json.loads(text))
    return found


# -- the module's gallery, clips and cameras --------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    need(MODELS)
    images = need(LFW / "images")
    a, b, c = lfw_people(images, 3, seed=SEED)
    base = tmp_path_factory.mktemp("node")
    started = time.perf_counter()
    abc = write_camera_clip(
        base / "abc.mp4", [(p.name, p.photos[1]) for p in (a, b, c)],
        size=SIZE, fps=FPS, seconds=ABC_S, face_side=FACE_SIDE,
    )  # fmt: skip
    ac = write_camera_clip(
        base / "ac.mp4", [(p.name, p.photos[1]) for p in (a, c)],
        size=SIZE, fps=FPS, seconds=AC_S, face_side=FACE_SIDE, seed=1,
    )  # fmt: skip
    root = tmp_path_factory.getbasetemp()
    cache = root / "model-cache"
    db = base / "gallery.db"
    with contextlib.ExitStack() as stack:
        with clean_env(root):
            config = gallery_config(db, cache)
            ops = stack.enter_context(Operations(config))
            me = Acting.os_user()
            ops.create_watchlist(me, "staff")
            ops.create_watchlist(me, "other")
            for person, lists in ((a, ["staff"]), (b, ["other"])):
                report, _ = ops.enroll(
                    me, person.name, [person.photos[0]], CONSENT, largest=True, watchlists=lists
                )
                assert report.enrolled, report.failures
            ops.load()
        served = []
        for truth in (abc, ac):
            server = stack.enter_context(HttpTsServer(truth.path))
            epoch = server._epoch  # the test server's own clock: when its first lap began
            assert epoch is not None
            served.append(Served(server, truth, epoch + time.time() - time.monotonic()))
        print(f"\nclips and gallery ready in {time.perf_counter() - started:.1f} s")
        yield World(ops, config, db, cache, (a, b, c), served[0], served[1])


# -- the clip's people, and the tracker ----------------------------------------------------------


@pytest.mark.parametrize(
    "tracker",
    [
        pytest.param(TrackerConfig(), id="default-tracker"),
        pytest.param(NODE_TRACKER, id="max-miss-0.3s"),
    ],
)
def test_every_appearance_in_a_looping_clip_is_decided(
    world: World, tracker: TrackerConfig
) -> None:
    """What the node does with a looping camera clip, without the network: ticks at 5 fps
    (every 5th frame), detection as the scheduler runs it, decide after 1 s. Each person's
    window on screen, in both laps, gets a decision of its own."""
    truth = world.abc.truth
    ticks = [f for f in file_frames(truth.path) if f.index % (FPS // 5) == 0]
    decisions = []
    with world.ops.inference() as engine:
        scanner = VideoScanner(engine, "abc", decide_after=1.0, tracker=tracker)
        for lap in range(2):
            for frame in ticks:
                shifted = Frame(frame.index, frame.t + lap * truth.seconds, frame.image)
                faces = detect_batch(engine, [frame.image], [None], 640)[0]
                decisions += [scanner.conclude(p) for p in scanner.step(shifted, faces)]
        decisions += [scanner.conclude(p) for p in scanner.finish_pending()]
    spans = [(round(d.first_t, 2), round(d.last_t, 2), d.match.subject) for d in decisions]
    print(f"\n{tracker.max_miss_s:g} s tracker: decisions {spans}")
    a_name, b_name, _ = world.names
    for lap in range(2):
        shift = lap * truth.seconds
        for a in truth.appearances:
            inside = [
                d
                for d in decisions
                if a.t_in + shift - 0.05 <= d.first_t and d.last_t <= a.t_out + shift + 0.05
            ]
            assert inside, f"lap {lap + 1}: {a.label} ({a.t_in}-{a.t_out} s) was never decided"
            expected = a.label if a.label in (a_name, b_name) else None
            assert {d.match.subject for d in inside} == {expected}, (a.label, spans)


# -- purpose limitation, events and the ledger -----------------------------------------------------


@dataclass
class Watched:
    node: Node
    events: list[dict[str, Any]]
    health: HealthLog
    seconds: float


@pytest.fixture(scope="module")
def watched(world: World, tmp_path_factory: pytest.TempPathFactory) -> Watched:
    """One node running two cameras on the A-B-C clip: pl-staff (watch list staff) and
    pl-both (staff and other), for a lap and more, events to a JSONL file."""
    jsonl = tmp_path_factory.mktemp("watched") / "events.jsonl"
    add_camera(world, "pl-staff", world.abc.url, ("staff",))
    add_camera(world, "pl-both", world.abc.url, ("staff", "other"))
    health = HealthLog()
    node = Node(
        world.ops, "n1", config=node_config(world.ops, workers=1),
        claims=only("pl-staff", "pl-both"),
        dispatcher=Dispatcher([JsonlSink(jsonl)]), on_health=health,
    )  # fmt: skip
    started = time.monotonic()
    node.run(WATCH_S)
    seconds = time.monotonic() - started
    node.dispatcher.close()
    events = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return Watched(node, events, health, seconds)


def test_each_camera_names_only_the_people_on_its_watch_lists(
    world: World, watched: Watched
) -> None:
    a_name, b_name, c_name = world.names
    staff_camera = "pl-staff"
    assert len(watched.node.workers) == 1  # both cameras through one scheduler
    stats = watched.node.stats
    print(
        f"\nran {watched.seconds:.1f} s: {stats.frames} frames in {stats.batches} batches "
        f"(largest {max(stats.batch_sizes, default=0)}), {stats.decisions} decisions"
    )
    assert stats.decisions == len(watched.events)
    placed: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for camera in ("pl-staff", "pl-both"):
        events = [e for e in watched.events if e["camera"] == camera]
        by_label: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            label = world.abc.label(e)
            by_label.setdefault(label or "?", []).append(e)
        placed[camera] = by_label
        print(
            camera,
            len(events),
            "events:",
            [(world.abc.label(e), e["decision"], e["subject"], e["score"]) for e in events],
        )
        for label in (a_name, b_name, c_name):
            assert by_label.get(label), f"{camera}: no decision on {label}'s track"
    # pl-staff: A named; B (on "other" only) and C (not enrolled) unknown
    staff = placed["pl-staff"]
    assert all(e["decision"] == "match" and e["subject"] == a_name for e in staff[a_name])
    for label in (b_name, c_name):
        assert all(e["decision"] == "unknown" and e["subject"] is None for e in staff[label])
    # pl-both: A and B named, C unknown
    both = placed["pl-both"]
    assert all(e["subject"] == a_name for e in both[a_name])
    assert all(e["decision"] == "match" and e["subject"] == b_name for e in both[b_name])
    assert all(e["decision"] == "unknown" for e in both[c_name])
    for e in watched.events:
        candidates = {c["subject"] for c in e["candidates"]}
        allowed = {a_name} if e["camera"] == "pl-staff" else {a_name, b_name}
        assert candidates <= allowed, e
    # B's name nowhere at pl-staff: events, stored events, ledger entries, health
    seen = [json.dumps(e) for e in watched.events if e["camera"] == "pl-staff"]
    seen += [json.dumps(r.as_json()) for r in world.ops.list_events(camera="pl-staff", limit=1000)]
    entries = [
        e for e in world.ops.audit_entries(actor="node:n1") if e.result["camera"] == staff_camera
    ]
    assert {e.action for e in entries} == {"camera.start", "camera.track", "camera.end"}
    seen += [json.dumps(e.result) for e in entries]
    record = world.ops.camera("pl-staff")
    assert record.health is not None and record.node == "n1"
    seen += [json.dumps(record.health), json.dumps(record.as_json())]
    seen += [json.dumps(h) for _, h in watched.health.of("pl-staff")]
    assert not [text for text in seen if b_name in text]
    assert any(a_name in text for text in seen)  # the search does find what is there
    assert b_name in json.dumps(on_ledger(world.ops, "camera.end", "pl-both")[0].result)


def test_every_event_has_its_ledger_entry_and_each_run_starts_and_ends(
    world: World, watched: Watched
) -> None:
    ops = world.ops
    tracks = ops.audit_entries(action="camera.track")
    naming = Counter(e.result["event"] for e in tracks)
    by_event = {e.result["event"]: e for e in tracks}
    assert watched.events
    for event in watched.events:
        assert naming[event["id"]] == 1, event["id"]
        entry = by_event[event["id"]]
        assert entry.actor == "node:n1" and entry.role == "node" and entry.purpose == PURPOSE
        for key in ("camera", "decision", "subject", "track"):
            assert entry.result[key] == event[key], key
    for camera in ("pl-staff", "pl-both"):
        events = [e for e in watched.events if e["camera"] == camera]
        starts = on_ledger(ops, "camera.start", camera)
        ends = on_ledger(ops, "camera.end", camera)
        assert len(starts) == 1 and len(ends) == 1, camera
        start, end = starts[0], ends[0]
        mine = [by_event[e["id"]] for e in events]
        assert all(start.seq < t.seq < end.seq for t in mine)
        assert end.result["tracks"] == len(events) and "error" not in end.result
        assert end.result["events"] == [min(e["id"] for e in events), max(e["id"] for e in events)]
        times = [started_at(e) for e in events]
        assert times == sorted(times) and len(set(times)) == len(times), camera
        ids = [e["id"] for e in events]
        assert ids == sorted(ids)
        print(f"\n{camera}: {len(events)} events, ledger seq {start.seq}..{end.seq}")
    report = ops.audit_verify()
    assert report.ok, report.reason


# -- the records, changed while the node runs ------------------------------------------------------


def test_pause_resume_and_remove_reach_a_running_node(world: World) -> None:
    name = "pr-1"
    reload_every = 1.0
    bound = reload_every + 3.0
    add_camera(world, name, world.ac.url)
    health = HealthLog()
    config = node_config(world.ops, reload_every=reload_every)
    node = Node(world.ops, "n3", config=config, claims=only(name), on_health=health)
    other = Acting("operator-2", "cli")
    with Operations(world.config) as ops2, running(node) as thread:
        assert wait_until(lambda: is_live(node, name), 15), snapshot(node, name)
        assert len(on_ledger(ops2, "camera.start", name)) == 1

        def stopped() -> bool:
            state = (ops2.camera(name).health or {}).get("state")
            return state == "stopped" and len(on_ledger(ops2, "camera.end", name)) == 1

        began = time.monotonic()
        ops2.set_camera_paused(other, name, True)
        assert wait_until(stopped, bound), ops2.camera(name).health
        paused_s = time.monotonic() - began
        assert name not in node.runners
        end = on_ledger(ops2, "camera.end", name)[0]
        time.sleep(reload_every * 1.5)  # a paused camera stays stopped
        assert len(on_ledger(ops2, "camera.start", name)) == 1
        assert not [e for e in on_ledger(ops2, "camera.track", name) if e.seq > end.seq]

        began = time.monotonic()
        ops2.set_camera_paused(other, name, False)
        assert wait_until(
            lambda: len(on_ledger(ops2, "camera.start", name)) == 2 and is_live(node, name),
            bound + 10,
        ), snapshot(node, name)
        resumed_s = time.monotonic() - began

        began = time.monotonic()
        ops2.remove_camera(other, name)
        assert wait_until(
            lambda: name not in node.runners and len(on_ledger(ops2, "camera.end", name)) == 2,
            bound,
        )
        removed_s = time.monotonic() - began
        assert thread.is_alive()  # the node goes on, with no camera
        assert name not in {c.name for c in ops2.list_cameras()}
    lines = health.of(name)
    assert lines[-1][1]["state"] == "stopped"
    changes = {e.action: e for e in world.ops.audit_entries(actor="operator-2")}
    assert {"camera.pause", "camera.resume", "camera.remove"} <= set(changes)
    assert changes["camera.pause"].result["name"] == name
    print(
        f"\npaused -> stopped and ended in {paused_s:.2f} s, resumed -> live in "
        f"{resumed_s:.2f} s, removed -> stopped in {removed_s:.2f} s "
        f"(reload every {reload_every:g} s)"
    )


# -- credentials -----------------------------------------------------------------------------------


def test_a_camera_password_is_never_shown(world: World, caplog: pytest.LogCaptureFixture) -> None:
    need_rtsp()
    caplog.set_level(logging.INFO, logger="faceledger")
    name = "cred-1"
    sink = ListSink()
    health = HealthLog()
    snapshots: list[dict[str, Any]] = []
    with RtspServer(world.ac.truth.path, user="cam", password=SECRET) as server:
        assert SECRET in server.url
        added = add_camera(world, name, server.url)
        node = Node(
            world.ops, "n4", config=node_config(world.ops), claims=only(name),
            dispatcher=Dispatcher([sink]), on_health=health,
        )  # fmt: skip
        with running(node):
            assert wait_until(lambda: is_live(node, name) and sink.events(name), 25), snapshot(
                node, name
            )
            snapshots.append(snapshot(node, name) or {})
            server.stop()  # the errors of a camera that went away may quote its address
            assert wait_until(lambda: (snapshot(node, name) or {}).get("last_error"), 15)
            snapshots.append(snapshot(node, name) or {})
            time.sleep(1.2)  # a health report with the error
    record = world.ops.camera(name)
    cli = [
        subprocess.run(
            [sys.executable, "-m", "faceledger", "cameras", *args, "--db", str(world.db)],
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for args in (["show", name, "--json"], ["list"])
    ]
    assert all(done.returncode == 0 for done in cli), [done.stderr[-1000:] for done in cli]
    assert json.loads(cli[0].stdout)["health"]["last_error"]
    ledger = io.StringIO()
    world.ops.audit_export(ledger)
    shown = {
        "events": json.dumps(sink.events()),
        "stored events": json.dumps(
            [r.as_json() for r in world.ops.list_events(camera=name, limit=1000)]
        ),
        "ledger": ledger.getvalue(),
        "camera.add entry": json.dumps(added.entry.as_json()),
        "health lines": json.dumps([h for _, h in health.of(name)]),
        "snapshots": json.dumps(snapshots),
        "stored health": json.dumps(record.health),
        "as_json": json.dumps(record.as_json()),
        "repr": repr(record),
        "faceledger cameras show/list": "".join(d.stdout + d.stderr for d in cli),
        "logs": caplog.text,
    }
    assert snapshots[0]["state"] == "live"
    assert snapshots[1]["last_error"]
    assert record.as_json()["url"] == f"rtsp://***@127.0.0.1:{server.port}/cam"
    assert f"127.0.0.1:{server.port}/cam" in shown["ledger"]
    assert any(name in r.getMessage() for r in caplog.records)  # the node's logs were caught
    leaks = [what for what, text in shown.items() if SECRET in text or "s3cret" in text]
    assert not leaks, leaks
    print(
        f"\n{len(sink.events())} events from the RTSP camera; last error while it was gone: "
        f"{snapshots[1]['last_error']!r}"
    )


# -- outages ---------------------------------------------------------------------------------------


def test_rtsp_outage_shows_in_health_and_the_camera_comes_back(world: World) -> None:
    need_rtsp()
    name = "outage-1"
    outage_s = 5.0
    health = HealthLog()
    trace: list[tuple[float, str, str | None, str]] = []
    with RtspServer(world.ac.truth.path) as server:
        add_camera(world, name, server.url)
        node = Node(
            world.ops, "n5", config=node_config(world.ops), claims=only(name), on_health=health
        )

        def poll(until: float, stop: Callable[[], bool] = lambda: False) -> None:
            while time.monotonic() < until:
                h = snapshot(node, name)
                assert h is not None
                trace.append((time.monotonic(), h["state"], h["last_error"], h["at"]))
                time.sleep(0.2)
                if stop():
                    return

        with running(node):
            assert wait_until(lambda: is_live(node, name), 25), snapshot(node, name)
            poll(time.monotonic() + 1.0)
            stopped_at = time.monotonic()
            server.stop()
            poll(stopped_at + outage_s)
            server.start()
            restarted = time.monotonic()
            poll(restarted + 20.0, stop=lambda: trace[-1][1] == "live")
            live_at = trace[-1][0]
            poll(time.monotonic() + 1.0)
            reconnects = (snapshot(node, name) or {}).get("reconnects")
    assert trace[-1][1] == "live", trace[-5:]
    back_s = live_at - restarted
    broke = [t for t, state, _, _ in trace if t > stopped_at and state != "live"]
    assert broke, "the outage never showed"
    noticed_s = broke[0] - stopped_at
    during = [s for s in trace if broke[0] <= s[0] <= restarted]
    assert len(during) >= 10
    assert all(state == "reconnecting" and error for _, state, error, _ in during), during
    ats = [at for _, _, _, at in trace]
    assert ats == sorted(ats) and len(set(ats)) == len(ats), "health times must increase"
    assert all(error is None for t, _, error, _ in trace if t >= live_at)
    assert reconnects is not None and reconnects >= 1
    lines = [(t, h) for t, h in health.of(name) if broke[0] <= t <= restarted]
    assert len(lines) >= 4, "health lines stopped during the outage"
    assert all(h["state"] == "reconnecting" and h["last_error"] for _, h in lines)
    line_ats = [h["at"] for _, h in lines]
    assert line_ats == sorted(line_ats)
    errors = sorted({e for _, _, e, _ in during if e})
    print(
        f"\noutage noticed in {noticed_s:.2f} s; live again {back_s:.2f} s after the server's "
        f"restart ({reconnects} reconnects); {len(lines)} health lines during the outage; "
        f"errors: {errors}"
    )
    assert back_s <= 5.0


def test_a_camera_that_cannot_connect_does_not_stop_the_others(world: World) -> None:
    dead, alive = "dead-1", "alive-1"
    add_camera(world, dead, f"http://127.0.0.1:{free_port()}/stream.ts", timeout=2.0)
    add_camera(world, alive, world.abc.url)
    config = node_config(world.ops, backoff=(0.2, 1.0))
    node = Node(world.ops, "n9", config=config, claims=only(dead, alive))
    with running(node) as thread:
        assert wait_until(lambda: is_live(node, alive), 15), snapshot(node, alive)
        assert wait_until(lambda: (snapshot(node, dead) or {}).get("reconnects", 0) >= 1, 10)
        first = snapshot(node, dead) or {}
        processed = (snapshot(node, alive) or {})["processed"]
        assert wait_until(
            lambda: (snapshot(node, dead) or {}).get("reconnects", 0) >= first["reconnects"] + 2,
            10,
        )
        second = snapshot(node, dead) or {}
        assert wait_until(lambda: (snapshot(node, alive) or {})["processed"] > processed + 5, 10)
        assert wait_until(lambda: (world.ops.camera(dead).health or {}).get("last_error"), 5)
        assert thread.is_alive()
    for h in (first, second):
        assert h["state"] in ("connecting", "reconnecting") and h["last_error"], h
        assert h["frames"] == 0
    stored = world.ops.camera(dead)
    assert stored.node == "n9" and stored.health is not None
    assert len(on_ledger(world.ops, "camera.start", dead)) == 1
    assert len(on_ledger(world.ops, "camera.end", dead)) == 1
    print(
        f"\nclosed port: {first['reconnects']} -> {second['reconnects']} reconnects; "
        f"error {second['last_error']!r}; the other camera processed "
        f"{node.stats.frames} frames"
    )


def test_a_feed_nobody_takes_from_keeps_only_its_newest_ticks(world: World) -> None:
    """The drop-oldest queue: a scheduler that falls behind gets the latest frames."""
    from faceledger.network.feed import CameraFeed

    add_camera(world, "queue-1", world.abc.url, detect_fps=10)
    feed = CameraFeed(world.ops.camera("queue-1"), queue_size=2).start()
    try:
        assert wait_until(lambda: feed.health.ticks >= 20, 15), feed.health.snapshot()
        health = feed.health.snapshot()
        ticks = [feed.take(), feed.take()]
        now = time.monotonic()
        assert feed.take() is None
    finally:
        feed.stop()
        feed.join(15)
    assert not feed.alive and feed.health.snapshot()["state"] == "stopped"
    assert health["state"] == "live" and health["dropped"] >= health["ticks"] - 3
    assert health["dropped_pct"] > 50 and health["processed"] == 0
    first, second = ticks
    assert first is not None and second is not None
    assert first.frame.index < second.frame.index and first.frame.t < second.frame.t
    assert now - second.arrived < 0.5, "the newest tick is kept"
    print(
        f"\nunattended feed: {health['ticks']} ticks, {health['dropped']} dropped "
        f"({health['dropped_pct']}% in the window), input {health['input_fps']} fps"
    )


# -- bad settings ----------------------------------------------------------------------------------

GOOD = {
    "name": "door-1",
    "url": f"rtsp://cam:{SECRET}@127.0.0.1:8554/door",
    "purpose": PURPOSE,
    "legal_basis": BASIS,
    "watchlists": ("staff",),
}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"purpose": ""}, "purpose"),
        ({"purpose": " \t\n"}, "purpose"),
        ({"legal_basis": ""}, "legal basis"),
        ({"watchlists": ()}, "watch lists"),
        ({"watchlists": ("", "  ")}, "watch lists"),
        ({"name": "a b"}, "camera name"),
        ({"name": "../x"}, "camera name"),
        ({"name": "x" * 65}, "camera name"),
        ({"name": ""}, "camera name"),
        ({"url": "/home/cam/clip.mp4"}, "stream address"),
        ({"url": f"/srv/cam:{SECRET}@clip.mp4"}, ""),
        ({"url": f"ftp://cam:{SECRET}@127.0.0.1/x"}, "stream address"),
        ({"url": f"file:///cam:{SECRET}@x.mp4"}, ""),
        ({"url": f"rtsp://cam:{SECRET}/x@127.0.0.1/door"}, "credentials"),
        ({"detect_url": f"ftp://cam:{SECRET}@127.0.0.1/x"}, "detection sub-stream"),
        ({"detect_fps": 0}, "fps"),
        ({"detect_fps": 100}, "fps"),
        ({"transport": "quic"}, "transport"),
    ],
    ids=lambda v: json.dumps(v)[:40] if isinstance(v, dict) else None,
)
def test_camera_settings_refuse_bad_input_without_showing_the_password(
    change: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        CameraSettings(**{**GOOD, **change})
    message = str(refused.value)
    assert says in message
    assert SECRET not in message and "s3cret" not in message, message


def test_camera_settings_take_the_edges_of_their_ranges() -> None:
    for change in ({"detect_fps": 0.1}, {"detect_fps": 60}, {"name": "x" * 64}):
        settings = CameraSettings(**{**GOOD, **change})
        assert SECRET not in repr(settings)


def test_a_password_holding_an_at_sign_is_masked_whole(world: World) -> None:
    """FFmpeg takes the last '@' before the host as the end of the credentials, and so
    does the mask: nothing of such a password is shown."""
    url = f"rtsp://cam:{SECRET}@x@127.0.0.1:{free_port()}/door"
    added = add_camera(world, "at-sign-1", url, timeout=1.0)
    shown = json.dumps(added.value.as_json()) + json.dumps(added.entry.as_json())
    assert added.value.as_json()["url"].endswith("***@127.0.0.1:" + url.rsplit(":", 1)[1])
    assert SECRET not in shown and "x@127" not in shown
    assert SECRET not in repr(added.value)


# -- faceledger node -------------------------------------------------------------------------------


def test_the_node_command_runs_its_cameras_and_prints_health(world: World, tmp_path: Path) -> None:
    cameras = ("cli-a", "cli-b")
    add_camera(world, cameras[0], world.abc.url)
    add_camera(world, cameras[1], world.ac.url)
    jsonl = tmp_path / "events.jsonl"
    began = time.monotonic()
    done = subprocess.run(
        node_command(
            world, "--seconds", "8", "--health-every", "1", "--jsonl", str(jsonl),
            "--name", "cli-node", "--camera", cameras[0], "--camera", cameras[1],
        ),
        env=cli_env(), capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr[-3000:]
    lines = health_lines(done.stderr)
    events = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    for camera in cameras:
        mine = [h for h in lines if h["camera"] == camera]
        assert len(mine) >= 5, (camera, done.stderr[-2000:])
        assert all("at" in h and "state" in h for h in mine)
        ats = [h["at"] for h in mine]
        assert ats == sorted(ats)
        assert "live" in {h["state"] for h in mine}
        assert mine[-1]["state"] == "stopped"
        assert len(on_ledger(world.ops, "camera.end", camera)) == 1
    assert events and {e["camera"] for e in events} <= set(cameras)
    tracks = world.ops.audit_entries(action="camera.track", actor="node:cli-node")
    naming = {e.result["event"] for e in tracks}
    assert {e["id"] for e in events} <= naming
    print(
        f"\nfaceledger node --seconds 8 took {took:.1f} s; {len(lines)} health lines, "
        f"events per camera {Counter(e['camera'] for e in events)}"
    )


def test_sigterm_stops_the_node_after_it_drains(world: World) -> None:
    """SIGTERM while a person is on screen, followed for about half a second (less than
    decide_after): the node decides that open track, ends the run and exits 0."""
    name = "term-1"
    add_camera(world, name, world.ac.url)
    served = world.ac
    process = subprocess.Popen(
        node_command(world, "--health-every", "0.5", "--name", "term-node", "--camera", name),
        env=cli_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    got: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            got.append(line)

    def mid_track() -> bool:
        """Someone came on screen 0.5-0.7 s ago (on the camera's clock)."""
        t = (time.time() - served.epoch_wall) % served.truth.seconds
        return any(0.5 <= t - a.t_in <= 0.7 for a in served.truth.appearances)

    def processing() -> bool:
        lines = [h for h in health_lines("".join(got)) if h["camera"] == name]
        # followed for 2 s (10 ticks) first: a person on screen when the stream was joined
        # is not "mid-track" for the node, whose first tick saw them at once
        return bool(lines) and lines[-1]["state"] == "live" and lines[-1]["processed"] >= 10

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert wait_until(processing, 45), "".join(got)[-2000:]
        assert wait_until(mid_track, served.truth.seconds + 1, step=0.02)
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(15)
        stop_s = time.monotonic() - began
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        reader.join(5)
    stderr = "".join(got)
    assert code == 0, stderr[-2000:]
    assert "SIGTERM" in stderr
    ends = on_ledger(world.ops, "camera.end", name)
    assert len(ends) == 1 and ends[0].actor == "node:term-node"
    assert "error" not in ends[0].result
    assert len(on_ledger(world.ops, "camera.start", name)) == 1
    tracks = on_ledger(world.ops, "camera.track", name)
    assert tracks and ends[0].result["tracks"] == len(tracks)
    last = tracks[-1].result
    followed = last["last_t"] - last["first_t"]
    assert followed < 1.0, "the open track was decided by the drain, before decide_after"
    stored = {r.id: r for r in world.ops.list_events(camera=name, limit=100)}[last["event"]]
    whose = served.label(
        {"at": stored.started_at, "first_t": stored.first_t, "last_t": stored.last_t}
    )
    a_name, _, c_name = world.names
    # who was on screen, by the clip's clock: None when the times cannot tell (the track
    # began in the connect burst or at a window's edge, as on a loaded machine); the name,
    # if any, can only be A's (the one person on this camera's lists)
    assert whose in (a_name, c_name, None)
    if whose is not None:
        assert last["subject"] == (a_name if whose == a_name else None), (whose, last)
    else:
        assert last["subject"] in (a_name, None), last
    print(
        f"\nSIGTERM -> exit 0 in {stop_s:.2f} s; {len(tracks)} tracks decided, the last "
        f"(open at SIGTERM: {whose}) after {followed:.2f} s of following: {last['decision']}"
    )


class Subscriber:
    """A paho client recording every message under ``topic`` (QoS 1)."""

    def __init__(self, port: int, topic: str = "faceledger/#") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, str, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-node-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), f"no SUBACK for {topic}"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload.decode(), message.retain))

    def on(self, topic: str) -> list[str]:
        with self._lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_node_publishes_events_and_its_availability_over_mqtt(world: World) -> None:
    from faceledger.testing.mosquitto import MosquittoBroker, mosquitto_unavailable

    reason = mosquitto_unavailable()
    if reason is not None:
        pytest.skip(reason)
    cameras = ("mq-a", "mq-b")
    add_camera(world, cameras[0], world.ac.url)
    add_camera(world, cameras[1], world.abc.url)
    with MosquittoBroker() as broker:
        subscriber = Subscriber(broker.port)
        try:
            done = subprocess.run(
                node_command(
                    world, "--mqtt", f"mqtt://127.0.0.1:{broker.port}", "--name", "n1",
                    "--seconds", "8", "--camera", cameras[0], "--camera", cameras[1],
                ),
                env=cli_env(), capture_output=True, text=True, timeout=90, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            availability = "faceledger/nodes/n1/availability"
            assert wait_until(lambda: "offline" in subscriber.on(availability), 10)
            assert subscriber.on(availability)[0] == "online"
            events = {
                camera: [
                    json.loads(p) for p in subscriber.on(f"faceledger/cameras/{camera}/events")
                ]
                for camera in cameras
            }
            named = [e for evs in events.values() for e in evs if e["subject"]]
            assert named, events
            for event in named:
                topic = f"faceledger/subjects/{event['subject']}/events"
                assert event["id"] in {json.loads(p)["id"] for p in subscriber.on(topic)}
            for camera, evs in events.items():
                assert all(e["camera"] == camera for e in evs)
        finally:
            subscriber.close()
        late = Subscriber(broker.port, "faceledger/nodes/n1/availability")
        try:
            assert wait_until(lambda: late.on("faceledger/nodes/n1/availability"), 10)
            assert late.on("faceledger/nodes/n1/availability") == ["offline"]
            assert late.messages[0][2], "availability is retained"
        finally:
            late.close()
    print(
        f"\nMQTT: events per camera { ({c: len(e) for c, e in events.items()}) }, "
        f"{len(named)} named, each also on its subject's topic"
    )


# -- the gallery, changed while the node runs ------------------------------------------------------


def test_gallery_changes_reach_a_running_node(world: World, tmp_path: Path) -> None:
    a, _, c = world.people
    config = gallery_config(tmp_path / "changes.db", world.cache)
    me = Acting.os_user()
    name = "gal-1"
    lap = world.ac.truth.seconds
    sink = ListSink()
    with Operations(config) as ops, Operations(config) as ops2:
        ops.create_watchlist(me, "staff")
        ops.enroll(me, a.name, [a.photos[0]], CONSENT, largest=True, watchlists=["staff"])
        ops.add_camera(me, CameraSettings(name, world.ac.url, PURPOSE, BASIS, ("staff",)))
        ops.load()
        node = Node(ops, "n8", config=node_config(ops), dispatcher=Dispatcher([sink]))

        def first_after(label: str, since_wall: float) -> tuple[float, dict[str, Any]] | None:
            for at, e in sink.timed():
                if world.ac.label(e) == label and started_at(e) > since_wall:
                    return at, e
            return None

        with running(node):
            assert wait_until(lambda: is_live(node, name), 15), snapshot(node, name)
            assert wait_until(lambda: sink.events(name), lap + 5)
            report, entry = ops2.enroll(
                me, c.name, [c.photos[0]], CONSENT, largest=True, watchlists=["staff"]
            )
            enrolled, enrolled_wall = time.monotonic(), time.time()
            assert report.enrolled and entry is not None
            assert wait_until(lambda: first_after(c.name, enrolled_wall), 2 * lap + 4)
            c_at, c_event = first_after(c.name, enrolled_wall) or (0.0, {})
            erased = ops2.remove_subject(me, a.name)
            erased_at, erased_wall = time.monotonic(), time.time()
            assert erased.entry.action == "subject.delete"
            assert wait_until(lambda: first_after(a.name, erased_wall), 2 * lap + 4)
            a_at, a_event = first_after(a.name, erased_wall) or (0.0, {})
    decisions = [(world.ac.label(e), e["decision"], e["subject"]) for e in sink.events()]
    print(f"\ndecisions: {decisions}")
    assert c_event["decision"] == "match" and c_event["subject"] == c.name, c_event
    assert a_event["decision"] == "unknown" and a_event["subject"] is None, a_event
    assert a.name not in json.dumps(a_event)
    after = [e for at, e in sink.timed() if at > erased_at + 0.5 or started_at(e) > erased_wall]
    assert not [e for e in after if e["subject"] == a.name]
    before = [
        e for e in sink.events() if world.ac.label(e) == a.name and started_at(e) < enrolled_wall
    ]
    assert all(e["subject"] == a.name for e in before)
    print(
        f"enrolled C -> first decision naming C {c_at - enrolled:.2f} s after the commit; "
        f"erased A -> first decision on A (unknown) {a_at - erased_at:.2f} s after "
        f"(the clip's lap is {lap:g} s)"
    )
