"""Camera nodes as a cluster, end to end: ``faceledger node --nats`` subprocesses sharing a
real PostgreSQL gallery, coordinated by a real nats-server (camera leases, the event
stream, archive jobs), watching real HTTP MPEG-TS cameras that loop synthetic clips of LFW
people, publishing to a real Mosquitto broker. No mocks.

What is proved, and measured (printed with ``pytest -s``):

1. failover: a SIGKILLed node's cameras start on the other node within the lease TTL plus a
   few seconds; no camera is run by two nodes at once (by the ledger and by the lease
   history); every event reached MQTT and the JetStream event stream, in order per camera;
2. an enrollment and an erasure made through a third process take effect at each node's
   next decision (the matcher catches up with the gallery before every decision);
3. an archive job over two nodes, one SIGKILLed midway: every file recorded exactly once;
4. a node stopped with SIGTERM releases its cameras at once (well before the TTL).

Every wait is bounded. The nodes use the ``fast`` profile, 640x360 clips at 5 detections
per second per camera, a lease TTL of 4 s (12 s in test 4) and a tracker that ends a track
after 0.3 s without a detection (the default, 1 s, carries a decided track over a clip's
0.5-0.8 s gap to the next person, who is then never decided).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from faceledger import Acting, Operations, load_config
from faceledger.gallery.cameras import CameraSettings
from faceledger.ledger.chain import LedgerEntry
from faceledger.network.nats import EventStream, LeaseInfo, Leases, NatsLink
from faceledger.testing.clips import ClipTruth, Person, lfw_people, write_camera_clip
from faceledger.testing.mosquitto import MosquittoBroker, mosquitto_unavailable
from faceledger.testing.nats import NatsServer, nats_unavailable
from faceledger.testing.streams import HttpTsServer
from tests.conftest import LFW, MODELS, need, standin_env

_REASON = nats_unavailable()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

SIZE = (640, 360)
FPS = 25
FACE_SIDE = 120
SEED = 7
"""LFW people whose photos hold one clear face each."""
TTL_S = 4.0
MAX_MISS_S = 0.3
PURPOSE = "entrance security"
BASIS = "test: legitimate interest (site access)"
CONSENT = "test consent"
WATCHLIST = "staff"

START_S = 90.0
"""The longest nodes may take to load their models and start their cameras (2 CPU cores,
shared with other work)."""
STOP_S = 20.0
"""The longest a node stopped with SIGTERM may take to drain and exit."""
POLL_S = 0.25


# -- helpers ---------------------------------------------------------------------------------


def wait_until(condition: Callable[[], Any], timeout: float, step: float = POLL_S) -> Any:
    """``condition()``'s first true value, or its last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def wall(entry: LedgerEntry) -> float:
    """An entry's time, in epoch seconds."""
    return datetime.fromisoformat(entry.at).timestamp()


def result(entry: LedgerEntry) -> dict[str, Any]:
    return entry.result if isinstance(entry.result, dict) else {}


def node_of(entry: LedgerEntry) -> str:
    """The node that wrote a camera entry (its actor is ``node:<name>``)."""
    return entry.actor.removeprefix("node:")


def node_env(**extra: str) -> dict[str, str]:
    """A node subprocess's environment: the test's isolated one, with test settings."""
    return {
        **os.environ,
        **standin_env(),
        "FACELEDGER_NODE__LEASE_TTL": str(TTL_S),
        "FACELEDGER_NODE__JOB_ACK_WAIT": "5",
        "FACELEDGER_NODE__TRACKER__MAX_MISS_S": str(MAX_MISS_S),
        "FACELEDGER_NODE__WORKERS": "1",
        **extra,
    }


@dataclass
class NodeProc:
    """One ``faceledger node`` subprocess."""

    name: str
    proc: subprocess.Popen[bytes]
    stderr: Path
    jsonl: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.stderr.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def events(self) -> list[dict[str, Any]]:
        if not self.jsonl.exists():
            return []
        lines = self.jsonl.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip().endswith("}")]


class Cluster:
    """Node subprocesses on one gallery and one NATS server; every one is ended on exit."""

    def __init__(self, db: str, nats_url: str, work: Path, env: dict[str, str]) -> None:
        self.db = db
        self.nats_url = nats_url
        self.work = work
        self.env = env
        self.nodes: dict[str, NodeProc] = {}
        self._files: list[Any] = []

    def start(self, name: str, *args: str) -> NodeProc:
        stderr = self.work / f"{name}.stderr"
        jsonl = self.work / f"{name}.jsonl"
        command = [
            sys.executable, "-m", "faceledger", "node", "--db", self.db, "--profile", "fast",
            "--nats", self.nats_url, "--name", name, "--health-every", "1",
            "--jsonl", str(jsonl), *args,
        ]  # fmt: skip
        err = stderr.open("wb")
        self._files.append(err)
        proc = subprocess.Popen(
            command, env=self.env, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL
        )
        node = NodeProc(name, proc, stderr, jsonl)
        self.nodes[name] = node
        return node

    def terminate(self, node: NodeProc, timeout: float = STOP_S) -> tuple[int | None, float]:
        """SIGTERM; (exit status or None when it did not exit in time, seconds taken)."""
        started = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        try:
            code = node.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - started

    def report(self) -> str:
        return "\n".join(
            f"--- {n.name} (exit {n.proc.poll()}):\n{n.tail()}" for n in self.nodes.values()
        )

    def close(self) -> None:
        for node in self.nodes.values():
            if node.proc.poll() is None:
                node.proc.kill()
        for node in self.nodes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(10)
        for f in self._files:
            f.close()


@contextlib.contextmanager
def cluster(db: str, nats_url: str, work: Path, **env: str) -> Iterator[Cluster]:
    made = Cluster(db, nats_url, work, node_env(**env))
    try:
        yield made
    except BaseException:
        print(made.report())
        raise
    finally:
        made.close()


@dataclass
class Shared:
    """The test's own view of the shared PostgreSQL gallery (a third process)."""

    ops: Operations
    db: str
    me: Acting = field(default_factory=Acting.os_user)

    def entries(self, action: str, since: float | None = None) -> list[LedgerEntry]:
        moment = None if since is None else datetime.fromtimestamp(since, timezone.utc)
        return self.ops.audit_entries(since=moment, action=action)

    def add_cameras(self, servers: dict[str, HttpTsServer], *, paused: bool) -> None:
        for name, server in servers.items():
            settings = CameraSettings(name, server.url, PURPOSE, BASIS, (WATCHLIST,), detect_fps=5)
            self.ops.add_camera(self.me, settings)
            if paused:
                self.ops.set_camera_paused(self.me, name, True)

    def resume(self, names: list[str]) -> None:
        for name in names:
            self.ops.set_camera_paused(self.me, name, False)

    def enroll(self, person: Person) -> LedgerEntry:
        report, entry = self.ops.enroll(
            self.me, person.name, [person.photos[0]], CONSENT, largest=True,
            watchlists=[WATCHLIST],
        )  # fmt: skip
        assert report.enrolled and entry is not None, report.failures
        return entry


@contextlib.contextmanager
def gallery(db: str, people: list[Person]) -> Iterator[Shared]:
    """The gallery made with the fast profile, the watch list, ``people`` enrolled on it."""
    with Operations(load_config(profile="fast", db=db)) as ops:
        made = Shared(ops, db)
        ops.create_watchlist(made.me, WATCHLIST)
        for person in people:
            made.enroll(person)
        yield made


def started_by(g: Shared, since: float | None = None) -> dict[str, list[LedgerEntry]]:
    """camera -> its ``camera.start`` entries (oldest first)."""
    found: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in g.entries("camera.start", since):
        found[str(result(entry).get("camera"))].append(entry)
    return found


def holders_now(g: Shared, cameras: list[str]) -> dict[str, str] | None:
    """camera -> the node running it, once every camera in ``cameras`` runs (by the last
    ``camera.start`` of each that has no later ``camera.end``); None before."""
    starts = started_by(g)
    ends = {str(result(e).get("camera")): e.seq for e in g.entries("camera.end")}
    out: dict[str, str] = {}
    for camera in cameras:
        runs = starts.get(camera)
        if not runs or ends.get(camera, -1) > runs[-1].seq:
            return None
        out[camera] = node_of(runs[-1])
    return out


def tracks(g: Shared, since: float | None = None) -> list[LedgerEntry]:
    return g.entries("camera.track", since)


class LeaseWatch:
    """Every lease value of some cameras, gathered from the bucket's history every half
    second (the bucket keeps values only for its max_age, = the TTL)."""

    def __init__(self, leases: Leases, cameras: list[str]) -> None:
        self.leases = leases
        self.cameras = cameras
        self.seen: dict[str, dict[int, LeaseInfo]] = {c: {} for c in cameras}
        self.errors = 0
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-watch", daemon=True)

    def __enter__(self) -> LeaseWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(15)

    def poll(self) -> None:
        self.polls += 1
        for camera in self.cameras:
            try:
                for info in self.leases.history(camera, timeout=3.0):
                    self.seen[camera].setdefault(info.revision, info)
            except Exception:
                self.errors += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(0.5)

    def history(self, camera: str) -> list[LeaseInfo]:
        return [self.seen[camera][r] for r in sorted(self.seen[camera])]


def holds(history: list[LeaseInfo]) -> list[tuple[str, float, float]]:
    """(node, from, to) of each node's hold of a lease, in order: from the ``since`` of its
    first value to the ``expires`` of its last value (or the moment it was released)."""
    out: list[tuple[str, float, float]] = []
    for info in history:
        if info.released:
            if out and out[-1][0] == info.node:
                node, since, _ = out[-1]
                out[-1] = (node, since, info.renewed.timestamp())
            continue
        if out and out[-1][0] == info.node and out[-1][1] == info.since.timestamp():
            out[-1] = (info.node, out[-1][1], info.expires.timestamp())
        else:
            out.append((info.node, info.since.timestamp(), info.expires.timestamp()))
    return out


class Subscriber:
    """A paho client recording every message under ``faceledger/#`` (QoS 1)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK for faceledger/# in 10 s"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe("faceledger/#", qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload in self.messages if t == topic]

    def camera_events(self) -> dict[str, list[int]]:
        """camera -> the event ids on its topic, in the order they came."""
        out: dict[str, list[int]] = defaultdict(list)
        with self._lock:
            got = list(self.messages)
        for topic, payload in got:
            parts = topic.split("/")
            if len(parts) == 4 and parts[1] == "cameras" and parts[3] == "events":
                out[parts[2]].append(int(json.loads(payload)["id"]))
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def in_order(ids: list[int]) -> bool:
    """Increasing, a duplicate allowed only right after its original (at-least-once)."""
    return all(b >= a for a, b in itertools.pairwise(ids))


# -- fixtures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clips:
    people: tuple[Person, Person, Person]
    ab: ClipTruth
    bc: ClipTruth
    ca: ClipTruth
    only_a: ClipTruth
    only_c: ClipTruth
    small: tuple[ClipTruth, ...]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    need(MODELS)
    images = need(LFW / "images")
    a, b, c = lfw_people(images, 3, seed=SEED)
    base = tmp_path_factory.mktemp("cluster-clips")

    def two(name: str, x: Person, y: Person, seed: int) -> ClipTruth:
        return write_camera_clip(
            base / f"{name}.mp4", [(x.name, x.photos[1]), (y.name, y.photos[1])],
            size=SIZE, fps=FPS, seconds=8.0, face_side=FACE_SIDE, seed=seed,
        )  # fmt: skip

    def one(name: str, x: Person, seed: int) -> ClipTruth:
        return write_camera_clip(
            base / f"{name}.mp4", [(x.name, x.photos[1])],
            size=SIZE, fps=FPS, seconds=3.8, face_side=FACE_SIDE, seed=seed,
        )  # fmt: skip

    def small(x: Person, seed: int) -> ClipTruth:
        return write_camera_clip(
            base / f"small-{x.name}.mp4", [(x.name, x.photos[1])],
            size=(320, 240), fps=10, seconds=3.8, face_side=100, seed=seed,
        )  # fmt: skip

    return Clips(
        (a, b, c), two("ab", a, b, 1), two("bc", b, c, 2), two("ca", c, a, 3),
        one("only-a", a, 4), one("only-c", c, 5),
        (small(a, 6), small(b, 7), small(c, 8)),
    )  # fmt: skip


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of each test's own (a lease bucket of its own TTL, no earlier nodes)."""
    with NatsServer(base=tmp_path) as running:
        yield running


@pytest.fixture
def link(nats_server: NatsServer) -> Iterator[NatsLink]:
    with NatsLink(nats_server.url, name="test-observer") as opened:
        yield opened


@contextlib.contextmanager
def cameras(
    servers: dict[str, ClipTruth],
) -> Iterator[dict[str, HttpTsServer]]:
    """One HTTP camera server per distinct clip; camera name -> its server."""
    with contextlib.ExitStack() as stack:
        by_clip: dict[Path, HttpTsServer] = {}
        out: dict[str, HttpTsServer] = {}
        for name, truth in servers.items():
            if truth.path not in by_clip:
                by_clip[truth.path] = stack.enter_context(HttpTsServer(truth.path))
            out[name] = by_clip[truth.path]
        yield out


# -- 1. failover ----------------------------------------------------------------------------------


def start_split(
    g: Shared, c: Cluster, leases: Leases, names: list[str], nodes: list[str], *args: str
) -> dict[str, str]:
    """Start ``nodes`` with the cameras paused, resume the cameras once every node has
    announced itself (so they share them fairly): camera -> the node that runs it."""
    for name in nodes:
        c.start(name, *args)
    assert wait_until(lambda: set(nodes) <= set(leases.nodes()), START_S), (
        f"the nodes did not all announce themselves in {START_S:g} s: {leases.nodes()}"
    )
    g.resume(names)
    split = wait_until(lambda: holders_now(g, names), 30.0)
    assert split, f"the cameras did not all start in 30 s: {dict(started_by(g))}"
    return split


def health_agrees(g: Shared, split: dict[str, str]) -> None:
    """The cameras' health rows in the gallery name the node running each, freshly."""

    def healthy() -> bool:
        fresh = {
            cam.name: cam.node
            for cam in g.ops.list_cameras()
            if cam.name in split
            and cam.health_at is not None
            and time.time() - datetime.fromisoformat(cam.health_at).timestamp() < 5.0
        }
        return fresh == split

    assert wait_until(healthy, 15.0), [(c.name, c.node, c.health_at) for c in g.ops.list_cameras()]


def decided_on(g: Shared, node: str, cameras: list[str], after: float | None = None) -> bool:
    """Whether ``node`` decided a track on each of ``cameras`` (after the time ``after``)."""
    seen = {
        str(result(e).get("camera"))
        for e in tracks(g, after)
        if node_of(e) == node and (after is None or wall(e) > after)
    }
    return set(cameras) <= seen


def takeovers(g: Shared, cameras: list[str], node: str, killed: float) -> dict[str, float]:
    """Seconds from ``killed`` to each camera's ``camera.start`` by ``node`` (the ledger
    polled every 0.25 s, for at most TTL + 15 s)."""
    found: dict[str, float] = {}
    deadline = time.monotonic() + TTL_S + 15.0
    while len(found) < len(cameras) and time.monotonic() < deadline:
        for camera, runs in started_by(g, killed - 1).items():
            if camera in cameras and camera not in found:
                by = [e for e in runs if node_of(e) == node and wall(e) >= killed]
                if by:
                    found[camera] = wall(by[0]) - killed
        time.sleep(POLL_S)
    return found


def never_on_two_at_once(
    g: Shared, watch: LeaseWatch, split: dict[str, str], a_name: str, b_name: str, *,
    killed: float,
) -> None:  # fmt: skip
    """By the ledger, every ``camera.track`` of B on a camera of A came after A's last one;
    by the lease history, A's hold, then B's (B's only on B's cameras), never overlapping."""
    print(f"lease history read {watch.polls} times ({watch.errors} reads failed)")
    all_tracks = tracks(g)
    for camera, first in split.items():
        on = [e for e in all_tracks if result(e).get("camera") == camera]
        by_a = [e for e in on if node_of(e) == a_name]
        by_b = [e for e in on if node_of(e) == b_name]
        assert by_b and len(by_a) + len(by_b) == len(on), camera
        if first == a_name:
            assert by_a and by_a[-1].seq < by_b[0].seq, camera
            assert wall(by_a[-1]) < killed <= wall(by_b[0]), camera
        else:
            assert not by_a, camera
    for camera, first in sorted(split.items()):
        held = holds(watch.history(camera))
        print(
            f"lease {camera}: "
            + " -> ".join(f"{n} [{s - killed:+.2f}, {e - killed:+.2f}]" for n, s, e in held)
            + " (s from the kill)"
        )
        assert [n for n, _, _ in held] == ([a_name, b_name] if first == a_name else [b_name])
        for (_, _, end), (_, start, _) in itertools.pairwise(held):
            assert end <= start, f"{camera}: held by two nodes at once: {held}"


def check_delivery(
    what: str, got: dict[str, list[int]], g: Shared, killed_node: str, killed: float
) -> None:
    """Every event on the ledger was delivered (at least once), in order per camera, but
    those the killed node recorded within 0.5 s before its SIGKILL."""
    ledger = {int(result(e)["event"]): e for e in tracks(g)}
    delivered = {i for ids in got.values() for i in ids}
    missing = sorted(set(ledger) - delivered)
    excused = [
        i
        for i in missing
        if node_of(ledger[i]) == killed_node and killed - 0.5 <= wall(ledger[i]) <= killed
    ]
    print(
        f"{what}: {len(delivered)} of {len(ledger)} events; missing {len(missing)} (recorded "
        f"by the killed node within 0.5 s before its SIGKILL: {len(excused)})"
    )
    assert sorted(excused) == missing, (
        f"{what}: events recorded but never delivered: {sorted(set(missing) - set(excused))}. "
        f"Only an event that {killed_node} recorded within 0.5 s before its SIGKILL may be "
        "missing: a node hands an event to its sinks after the event's transaction commits, "
        "and a node killed in between never hands it on"
    )
    assert not delivered - set(ledger), f"{what}: events that are not on the ledger"
    for camera, ids in got.items():
        assert in_order(ids), f"{what}: {camera}'s events out of order: {ids}"
        assert {result(ledger[i]).get("camera") for i in ids} == {camera}, (what, camera)


def every_event_delivered(
    g: Shared, link: NatsLink, sub: Subscriber | None, killed_node: str, killed: float
) -> None:
    """The ledger's events on MQTT (when there is a broker) and on the JetStream stream."""
    if sub is not None:
        wanted = len(tracks(g))
        wait_until(lambda: sum(map(len, sub.camera_events().values())) >= wanted, 5.0)
        check_delivery("MQTT", sub.camera_events(), g, killed_node, killed)
    stream: dict[str, list[int]] = defaultdict(list)
    for _, event in EventStream(link).read(0, limit=100_000, timeout=5.0):
        stream[str(event["camera"])].append(int(event["id"]))
    check_delivery("JetStream", stream, g, killed_node, killed)


def test_a_killed_nodes_cameras_move_to_the_other_node_and_every_event_is_delivered(
    clips: Clips, pg_url: str, nats_server: NatsServer, link: NatsLink, tmp_path: Path
) -> None:
    """Two nodes share six cameras; node A is SIGKILLed. Its cameras start on node B within
    the TTL + 5 s; no camera ran on both at once (ledger, lease history); B's SIGTERM ends
    every run; the ledger verifies; every event reached MQTT and the JetStream stream in
    order per camera (but what A had not yet handed on when it was killed)."""
    names = [f"fo-{i}" for i in range(6)]
    a_name, b_name = "fo-a", "fo-b"
    shown = dict(zip(names, [clips.ab, clips.bc, clips.ca] * 2, strict=True))
    leases = Leases(link, ttl=TTL_S)
    broker_reason = mosquitto_unavailable()
    with contextlib.ExitStack() as stack:
        servers = stack.enter_context(cameras(shown))
        g = stack.enter_context(gallery(pg_url, list(clips.people)))
        mqtt_args: list[str] = []
        sub: Subscriber | None = None
        if broker_reason is None:
            broker = stack.enter_context(MosquittoBroker())
            sub = Subscriber(broker.port)  # subscribed before any node starts
            stack.callback(sub.close)
            mqtt_args = ["--mqtt", broker.url]
        else:
            print(f"\nno MQTT check: {broker_reason}")
        c = stack.enter_context(cluster(pg_url, nats_server.url, tmp_path))
        watch = stack.enter_context(LeaseWatch(leases, names))
        g.add_cameras(servers, paused=True)
        split = start_split(g, c, leases, names, [a_name, b_name], *mqtt_args)
        per_node = Counter(split.values())
        print(f"\nsplit: {dict(per_node)}: {split}")
        assert per_node[a_name] >= 2 and per_node[b_name] >= 2, split
        a_cameras = sorted(cam for cam, node in split.items() if node == a_name)
        health_agrees(g, split)
        # every camera of A decides a track before A dies (so there is something to overlap)
        assert wait_until(lambda: decided_on(g, a_name, a_cameras), 30.0), "A decided nothing"

        os.kill(c.nodes[a_name].pid, signal.SIGKILL)
        killed = time.time()
        c.nodes[a_name].proc.wait(10)
        took_over = takeovers(g, a_cameras, b_name, killed)
        if sub is not None:  # the broker published A's Last Will
            topic = f"faceledger/nodes/{a_name}/availability"
            assert wait_until(lambda: sub.on(topic)[-1:] == [b"offline"], 10.0), sub.on(topic)
        print(
            "takeover after SIGKILL (s): "
            + ", ".join(f"{cam} {t:.2f}" for cam, t in sorted(took_over.items()))
        )
        assert sorted(took_over) == a_cameras, f"not taken over: {set(a_cameras) - set(took_over)}"
        assert max(took_over.values()) <= TTL_S + 5.0, took_over

        # B runs on, until it decided a track on each of A's cameras too, and 2 s more
        assert wait_until(lambda: decided_on(g, b_name, a_cameras, killed), 30.0), (
            "B decided no track on A's cameras in 30 s"
        )
        time.sleep(2.0)
        code, took = c.terminate(c.nodes[b_name])
        assert code == 0, f"node B exited with {code} {took:.1f} s after SIGTERM"
        print(f"B drained and exited in {took:.2f} s after SIGTERM")
        watch.stop()
        ends = [e for e in g.entries("camera.end") if node_of(e) == b_name]
        assert {result(e).get("camera") for e in ends} == set(names)
        report = g.ops.audit_verify()
        assert report.ok, report

        never_on_two_at_once(g, watch, split, a_name, b_name, killed=killed)
        every_event_delivered(g, link, sub, a_name, killed)


# -- 2. enrollment and erasure reach both nodes at their next decision --------------------------


def clip_time(server: HttpTsServer, truth: ClipTruth) -> float:
    """Where in its clip the live stream of ``server`` is now (s)."""
    epoch = server._epoch  # the test server's own clock: when its first lap began
    assert epoch is not None
    return (time.monotonic() - epoch) % truth.seconds


def just_after_a_track_began(server: HttpTsServer, truth: ClipTruth, after: float = 0.35) -> None:
    """Sleep until ``after`` s into the next appearance of the clip's person: their track
    has begun on every camera of this server, and will be decided ~1 s after it began."""
    t_in = truth.appearances[0].t_in
    wait = (t_in + after - clip_time(server, truth)) % truth.seconds
    time.sleep(wait)


def decided_after(g: Shared, seq: int) -> dict[str, list[LedgerEntry]]:
    """camera -> its ``camera.track`` entries after the entry ``seq``."""
    out: dict[str, list[LedgerEntry]] = defaultdict(list)
    for e in tracks(g):
        if e.seq > seq:
            out[str(result(e).get("camera"))].append(e)
    return out


def effect(
    g: Shared, c: Cluster, on: dict[str, str], change: LedgerEntry, changed: list[str], *,
    expect: str | None,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per node, after the entry ``change``: its first decision (any camera), and the first
    on its camera of ``changed`` (whose every decision since must name ``expect``), with
    the delay from the change, and how long before the change that decision's track began."""
    got = wait_until(
        lambda: (d := decided_after(g, change.seq)) and set(changed) <= set(d) and d, 20.0
    )
    assert got, f"{changed}: no decision in 20 s: {dict(decided_after(g, change.seq))}"
    for camera in changed:
        said = [result(e).get("subject") for e in got[camera]]
        assert set(said) == {expect}, f"{camera} after entry {change.seq}: {said}"
    figures: dict[str, dict[str, Any]] = {}
    for node in sorted(set(on.values())):
        mine = sorted((e for cam in got for e in got[cam] if on[cam] == node), key=lambda e: e.seq)
        (camera,) = [cam for cam in changed if on[cam] == node]
        first = got[camera][0]
        event = next(ev for ev in c.nodes[node].events() if ev["id"] == result(first)["event"])
        figures[node] = {
            "any": f"+{wall(mine[0]) - wall(change):.2f} s "
            f"({result(mine[0])['camera']}, {result(mine[0]).get('subject')})",
            "changed": f"+{wall(first) - wall(change):.2f} s ({camera}, "
            f"{result(first).get('subject')}; its track began "
            f"{wall(change) - datetime.fromisoformat(event['at']).timestamp():.2f} s before)",
            "delay": wall(first) - wall(change),
        }
    return figures


def test_an_enrollment_and_an_erasure_take_effect_at_each_nodes_next_decision(
    clips: Clips, pg_url: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    """Nodes A and B each run a camera on P (enrolled, on the watch list) and one on Q (not
    enrolled). Q is enrolled, then P erased, through a third process (this test's
    Operations). What is measured: a change takes effect at each node's *next decision*,
    because the matcher catches up with the gallery's template log before every decision;
    there is no other propagation delay. The change is timed ~0.35 s after Q's (then P's)
    track began on every camera, before it was decided (~1 s after it began): that very
    track is decided with the change, on both nodes."""
    person_p, _, person_q = clips.people
    p_name, q_name = person_p.name, person_q.name
    a_name, b_name = "pr-a", "pr-b"
    shown = {"p-a": clips.only_a, "q-a": clips.only_c, "p-b": clips.only_a, "q-b": clips.only_c}
    on = {"p-a": a_name, "q-a": a_name, "p-b": b_name, "q-b": b_name}
    with (
        cameras(shown) as servers,
        gallery(pg_url, [person_p]) as g,
        cluster(pg_url, nats_server.url, tmp_path) as c,
    ):
        g.add_cameras(servers, paused=False)
        for node in (a_name, b_name):
            c.start(node, *[arg for cam, n in on.items() if n == node for arg in ("--camera", cam)])
        split = wait_until(lambda: holders_now(g, list(on)), START_S)
        assert split == on, f"cameras not running as asked in {START_S:g} s: {split}"
        before = wait_until(lambda: (d := decided_after(g, 0)) and set(d) == set(on) and d, 30.0)
        assert before, f"not every camera decided a track in 30 s: {dict(decided_after(g, 0))}"
        print()
        for camera, entries in sorted(before.items()):
            said = Counter(result(e).get("subject") for e in entries)
            print(f"before: {camera} decided {dict(said)}")
            if camera.startswith("p"):
                assert said[p_name] and set(said) <= {p_name, None}, (camera, said)
            else:
                assert set(said) == {None}, (camera, said)

        just_after_a_track_began(servers["q-a"], clips.only_c)
        enrolled = g.enroll(person_q)
        print(f"Q enrolled at clip time {clip_time(servers['q-a'], clips.only_c):.2f} s")
        added = effect(g, c, on, enrolled, ["q-a", "q-b"], expect=q_name)
        for node, figures in added.items():
            print(f"after the enrollment, {node}: first decision {figures['any']}; "
                  f"first on Q {figures['changed']}")  # fmt: skip

        just_after_a_track_began(servers["p-a"], clips.only_a)
        erased = g.ops.remove_subject(g.me, p_name).entry
        print(f"P erased at clip time {clip_time(servers['p-a'], clips.only_a):.2f} s")
        gone = effect(g, c, on, erased, ["p-a", "p-b"], expect=None)
        for node, figures in gone.items():
            print(f"after the erasure, {node}: first decision {figures['any']}; "
                  f"first on P {figures['changed']}")  # fmt: skip
        named = [
            e.seq for e in tracks(g) if e.seq > erased.seq and result(e).get("subject") == p_name
        ]
        assert not named, f"entries naming the erased {p_name} after its erasure: {named}"
        delays = [f["delay"] for f in (*added.values(), *gone.values())]
        print(
            f"delays to the first decision on the changed person: "
            f"{', '.join(f'{d:.2f}' for d in delays)} s (target < 2 s: "
            f"{'met' if max(delays) < 2.0 else 'NOT met'})"
        )
        assert max(delays) < 3.0, "a decision came more than 3 s after the change"
        for node in list(c.nodes.values()):
            code, _ = c.terminate(node)
            assert code == 0, f"{node.name} exited with {code}"
        report = g.ops.audit_verify()
        assert report.ok, report


# -- 3. an archive job over two nodes, one killed midway -----------------------------------------


def faceledger_cli(*args: str, env: dict[str, str], timeout: float = 60.0) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "faceledger", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, f"faceledger {' '.join(args)}: {done.returncode}\n{done.stderr}"
    return done.stdout


def consumer(link: NatsLink) -> Any:
    """The job queue's consumer, as the server counts it (deliveries, acks pending)."""
    return link.call(link.js.consumer_info("FACELEDGER_JOBS", "workers"), 5.0)


def test_an_archive_job_over_two_nodes_records_every_file_once_when_one_is_killed(
    clips: Clips, pg_url: str, nats_server: NatsServer, link: NatsLink, tmp_path: Path
) -> None:
    """50 files (copies of 3 small clips) submitted to two nodes without cameras; node A is
    SIGKILLed once ~10 are done. Every job has exactly one ``job.end``, the submission lists
    the 50 files, nothing is left on the queue; a job A held when it died went to B."""
    folder = tmp_path / "archive"
    folder.mkdir()
    for i in range(50):
        source = clips.small[i % len(clips.small)]
        shutil.copyfile(source.path, folder / f"clip-{i:02d}.mp4")
    a_name, b_name = "job-a", "job-b"
    with (
        gallery(pg_url, list(clips.people[:2])) as g,
        cluster(pg_url, nats_server.url, tmp_path) as c,
    ):
        a, b = c.start(a_name), c.start(b_name)
        started = time.monotonic()
        submit = ["jobs", "submit", str(folder), "--nats", nats_server.url]
        submit += ["--purpose", "archive test"]
        submitted = json.loads(faceledger_cli(*submit, "--db", pg_url, "--json", env=c.env))
        ids = [job["id"] for job in submitted["jobs"]]
        assert len(set(ids)) == 50
        (entry,) = [e for e in g.entries("jobs.submit") if e.seq == submitted["ledger_seq"]]
        assert sorted(result(entry)["files"]) == sorted(
            str(p.resolve()) for p in folder.glob("*.mp4")
        )

        def ended() -> list[LedgerEntry]:
            return g.entries("job.end")

        assert wait_until(lambda: len(ended()) >= 10, START_S), (
            f"{len(ended())} jobs done in {START_S:g} s"
        )
        os.kill(a.pid, signal.SIGKILL)
        a.proc.wait(10)
        done_at_kill = len(ended())
        held_at_kill = consumer(link).num_ack_pending
        assert wait_until(lambda: len({result(e)["job"] for e in ended()}) >= 50, 150.0), (
            f"only {len({result(e)['job'] for e in ended()})} of 50 jobs done 150 s after the kill"
        )
        took = time.monotonic() - started
        time.sleep(1.0)  # an acknowledgement, or a late duplicate, lands
        pending = json.loads(
            faceledger_cli("jobs", "status", "--nats", nats_server.url, "--json", env=c.env)
        )["pending"]
        info = consumer(link)
        deliveries = info.delivered.consumer_seq
        code, _ = c.terminate(b)
        assert code == 0, f"node B exited with {code}"

        ends = Counter(result(e)["job"] for e in ended())
        scanned = Counter(result(e)["camera"] for e in ended())
        ended_by = {result(e)["job"]: result(e)["camera"] for e in ended()}
        started_by_a = {
            result(e)["job"] for e in g.entries("job.start") if result(e)["camera"] == a_name
        }
        redone = sorted(j for j in started_by_a if ended_by.get(j) != a_name)
        print(
            f"\n50 jobs in {took:.1f} s; scanned: {dict(scanned)}; {done_at_kill} done when A "
            f"was killed; a job.start by A but no job.end by A, then done by B: {len(redone)} "
            f"{redone}; unacknowledged deliveries right after the kill: {held_at_kill}; "
            f"deliveries in all: {deliveries} (redelivered: {deliveries - 50}); "
            f"pending at the end: {pending}"
        )
        assert set(ends) == set(ids), set(ids) ^ set(ends)
        assert [j for j, n in ends.items() if n != 1] == [], ends
        assert all(ended_by[job] == b_name for job in redone), redone
        assert pending == 0
        assert deliveries >= 50 + len(redone)
        report = g.ops.audit_verify()
        assert report.ok, report


# -- 4. a node stopped with SIGTERM releases its cameras at once --------------------------------


def test_a_node_stopped_with_sigterm_releases_its_cameras_at_once(
    clips: Clips, pg_url: str, nats_server: NatsServer, link: NatsLink, tmp_path: Path
) -> None:
    """With a TTL of 12 s (renewals every 4 s), node A's camera starts on node B within one
    of B's ticks (4 s) + 3 s of A's SIGTERM: A released the lease when it stopped; had it
    waited for the TTL, B could not have taken it before 8 s."""
    ttl = 12.0
    renew = ttl / 3
    names = ["term-1", "term-2"]
    a_name, b_name = "term-a", "term-b"
    leases = Leases(link, ttl=ttl)
    with (
        cameras({n: clips.ab for n in names}) as servers,
        gallery(pg_url, list(clips.people[:2])) as g,
        cluster(pg_url, nats_server.url, tmp_path, FACELEDGER_NODE__LEASE_TTL=str(ttl)) as c,
    ):
        g.add_cameras(servers, paused=True)
        a, b = c.start(a_name), c.start(b_name)
        assert wait_until(lambda: {a_name, b_name} <= set(leases.nodes()), START_S), (
            f"the nodes did not both announce themselves in {START_S:g} s: {leases.nodes()}"
        )
        g.resume(names)
        split = wait_until(lambda: holders_now(g, names), 30.0)
        assert split, f"the 2 cameras did not both start in 30 s: {dict(started_by(g))}"
        print(f"\nsplit: {split}")
        assert sorted(split.values()) == [a_name, b_name], split
        (a_camera,) = [cam for cam, node in split.items() if node == a_name]
        before = leases.holder(a_camera)
        assert before is not None and before.node == a_name
        stopped = time.time()
        code, took = c.terminate(a)
        assert code == 0, f"node A exited with {code} after SIGTERM"

        def moved() -> LedgerEntry | None:
            runs = started_by(g, stopped - 1).get(a_camera, [])
            return next((e for e in runs if node_of(e) == b_name), None)

        taken = wait_until(moved, renew + 3.0 + 10.0)
        assert taken is not None, f"{a_camera} never started on {b_name}"
        delay = wall(taken) - stopped
        ended = [e for e in g.entries("camera.end") if result(e).get("camera") == a_camera]
        assert ended and node_of(ended[-1]) == a_name
        release = leases.history(a_camera)
        print(
            f"A drained and exited in {took:.2f} s (its camera.end {wall(ended[-1]) - stopped:.2f}"
            f" s after SIGTERM); {a_camera} started on B {delay:.2f} s after SIGTERM "
            f"(bound: renew interval {renew:g} s + 3 s; an expiry would need "
            f">= {ttl - renew:g} s); lease history: "
            + ", ".join(f"{i.node}{' released' if i.released else ''}" for i in release)
        )
        assert delay <= renew + 3.0, f"{a_camera} moved {delay:.2f} s after SIGTERM"
        assert any(i.released and i.node == a_name for i in release), release
        code, _ = c.terminate(b)
        assert code == 0
        assert g.ops.audit_verify().ok
