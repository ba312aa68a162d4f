"""Camera nodes coordinated over NATS JetStream, against a real nats-server: camera leases
(CAS, expiry, a keeper's failover and partition safety), the archive job queue and the
event stream. Every wait is bounded; the figures measured are printed (``pytest -s``)."""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faceledger.errors import ConfigError, StorageBusyError
from faceledger.network.nats import (
    EventStream,
    JobQueue,
    KeeperEvent,
    LeaseKeeper,
    Leases,
    NatsLink,
    decode_key,
    encode_key,
)
from faceledger.testing.nats import NatsServer, nats_unavailable

_REASON = nats_unavailable()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

_KV_KEY_CHARS = set("-/_=.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


# -- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(base=tmp_path_factory.mktemp("nats")) as running:
        yield running


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of this test's own, for a test that stops it."""
    with NatsServer(base=tmp_path) as running:
        yield running


@pytest.fixture
def link(server: NatsServer) -> Iterator[NatsLink]:
    with NatsLink(server.url, name="test-a") as opened:
        yield opened


@pytest.fixture
def other_link(server: NatsServer) -> Iterator[NatsLink]:
    """A second connection: another node."""
    with NatsLink(server.url, name="test-b") as opened:
        yield opened


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> float | None:
    """Seconds until ``condition()`` held, or None if it did not within ``timeout``."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(step)


class Cameras:
    """What a node runs: on_gained starts a camera, on_lost stops it."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.lost: dict[str, float] = {}
        self._lock = threading.Lock()

    def on_gained(self, camera: str) -> None:
        with self._lock:
            assert camera not in self.running
            self.running.add(camera)

    def on_lost(self, camera: str) -> None:
        with self._lock:
            self.running.discard(camera)
            self.lost[camera] = time.monotonic()

    def count(self) -> int:
        with self._lock:
            return len(self.running)


def _keeper(leases: Leases, node: str, cameras: list[str], running: Cameras) -> LeaseKeeper:
    return LeaseKeeper(
        leases,
        node,
        wanted=lambda: cameras,
        max_held=None,
        on_gained=running.on_gained,
        on_lost=running.on_lost,
    )


def _holds(events: list[KeeperEvent]) -> list[tuple[str, str, float, float]]:
    """(camera, node, start, end) of every hold in a keeper's log (end inf while held)."""
    opened: dict[str, float] = {}
    out: list[tuple[str, str, float, float]] = []
    for event in events:
        if event.kind == "gained":
            assert event.camera not in opened, f"gained {event.camera} twice"
            opened[event.camera] = event.monotonic
        else:
            start = opened.pop(event.camera)
            out.append((event.camera, event.node, start, event.monotonic))
    node = events[0].node if events else "?"
    out.extend((camera, node, start, math.inf) for camera, start in opened.items())
    return out


def _assert_no_overlap(*keepers: LeaseKeeper) -> float:
    """No camera held by two keepers at any moment; the smallest gap between one's loss
    and another's gain of the same camera (inf when none changed hands)."""
    holds = sorted(
        (hold for keeper in keepers for hold in _holds(list(keeper.log))),
        key=lambda hold: (hold[0], hold[2]),
    )
    smallest = math.inf
    for camera, group in itertools.groupby(holds, key=lambda hold: hold[0]):
        latest: tuple[str, str, float, float] | None = None  # the hold that ends last
        for hold in group:
            if latest is not None:
                assert latest[3] <= hold[2], f"{camera} held by {latest[1]} and {hold[1]} at once"
                if latest[1] != hold[1]:
                    smallest = min(smallest, hold[2] - latest[3])
            if latest is None or hold[3] >= latest[3]:
                latest = hold
    return smallest


# -- the link --------------------------------------------------------------------------------


def test_an_unreachable_server_is_a_clear_error_within_the_connect_timeout() -> None:
    with NatsServer() as doomed:
        port = doomed.port
    url = f"nats://faceledger:s3cret@127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(StorageBusyError) as caught:
        NatsLink(url, name="nobody-home", connect_timeout=1.0)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    print(f"unreachable server reported after {elapsed:.2f} s: {message}")
    assert elapsed < 2.5
    assert f"127.0.0.1:{port}" in message
    assert "s3cret" not in message


# -- leases ----------------------------------------------------------------------------------


def test_a_lease_is_one_nodes_until_released(link: NatsLink, other_link: NatsLink) -> None:
    bucket = _unique("leases")
    a, b = Leases(link, bucket=bucket, ttl=5), Leases(other_link, bucket=bucket, ttl=5)
    lease = a.take("cam-1", "node-a")
    assert lease is not None and lease.node == "node-a"
    assert b.take("cam-1", "node-b") is None
    holder = b.holder("cam-1")
    assert holder is not None and holder.node == "node-a"
    renewed = a.renew(lease)
    assert renewed is not None and renewed.revision > lease.revision
    assert renewed.expires >= lease.expires and renewed.since == lease.since
    assert b.take("cam-1", "node-b") is None
    a.release(renewed)
    assert b.holder("cam-1") is None
    taken = b.take("cam-1", "node-b")
    assert taken is not None and taken.node == "node-b"
    assert a.holder("cam-1") == b.holder("cam-1")
    assert set(a.all()) == {"cam-1"} and a.all()["cam-1"].node == "node-b"
    history = a.history("cam-1")
    assert [(entry.node, entry.released) for entry in history] == [
        ("node-a", False),
        ("node-a", False),
        ("node-a", True),
        ("node-b", False),
    ]


def test_renewal_and_release_are_compare_and_set(link: NatsLink, other_link: NatsLink) -> None:
    bucket = _unique("leases")
    a, b = Leases(link, bucket=bucket, ttl=5), Leases(other_link, bucket=bucket, ttl=5)
    first = a.take("cam-1", "node-a")
    assert first is not None
    second = a.renew(first)
    assert second is not None
    assert a.renew(first) is None  # a stale revision
    third = a.renew(second)
    assert third is not None
    a.release(third)
    theirs = b.take("cam-1", "node-b")
    assert theirs is not None
    a.release(third)  # our old lease: must not delete theirs
    a.release(first)
    holder = a.holder("cam-1")
    assert holder is not None and holder.node == "node-b"
    assert a.renew(third) is None


def test_an_expired_lease_is_taken_over(link: NatsLink, other_link: NatsLink) -> None:
    bucket = _unique("leases")
    ttl = 2.0
    a, b = Leases(link, bucket=bucket, ttl=ttl), Leases(other_link, bucket=bucket, ttl=ttl)
    lease = a.take("cam-1", "node-a")
    assert lease is not None
    taken_at = time.monotonic()
    won: list[object] = []

    def b_took() -> bool:
        got = b.take("cam-1", "node-b")
        if got is not None:
            won.append(got)
        return bool(won)

    waited = _wait_for(b_took, ttl + 1.0, step=0.1)
    print(f"takeover of an unrenewed lease (ttl {ttl:g} s) after {waited} s")
    assert waited is not None, "node B did not take over within ttl + 1 s"
    assert time.monotonic() - taken_at >= ttl - 0.2, "taken before the lease expired"
    assert a.renew(lease) is None
    holder = a.holder("cam-1")
    assert holder is not None and holder.node == "node-b"


def test_odd_camera_names_round_trip(link: NatsLink) -> None:
    leases = Leases(link, bucket=_unique("leases"), ttl=5)
    names = ["lobby door", "кам/1", "a.b*c>d", "x=y", "_x-", "🙂 cam", "1/2/3", ".dot."]
    for name in names:
        key = encode_key(name)
        assert set(key) <= _KV_KEY_CHARS and not key.startswith(".") and not key.endswith(".")
        assert decode_key(key) == name
        assert leases.take(name, "node ü/1") is not None
    held = leases.all()
    assert set(held) == set(names)
    assert {info.node for info in held.values()} == {"node ü/1"}
    for name in names:
        holder = leases.holder(name)
        assert holder is not None and holder.camera == name
        assert [entry.camera for entry in leases.history(name)] == [name]


def test_a_bucket_with_another_ttl_is_a_config_error(link: NatsLink) -> None:
    bucket = _unique("leases")
    Leases(link, bucket=bucket, ttl=5)
    Leases(link, bucket=bucket, ttl=5)  # the same settings: fine
    with pytest.raises(ConfigError, match="ttl"):
        Leases(link, bucket=bucket, ttl=7)


# -- the keeper ------------------------------------------------------------------------------


def _share(
    link: NatsLink, other_link: NatsLink, ttl: float, count: int
) -> tuple[list[LeaseKeeper], list[Cameras], list[str]]:
    bucket = _unique("keep")
    cameras = [f"cam-{index}" for index in range(1, count + 1)]
    a, b = Leases(link, bucket=bucket, ttl=ttl), Leases(other_link, bucket=bucket, ttl=ttl)
    running = [Cameras(), Cameras()]
    keepers = [_keeper(a, "node-a", cameras, running[0]), _keeper(b, "node-b", cameras, running[1])]
    waited = _wait_for(lambda: sum(len(k.held()) for k in keepers) == count, 3 * ttl + 3)
    print(f"{count} cameras shared after {waited} s: {[k.held() for k in keepers]}")
    assert waited is not None, f"not all cameras taken: {[k.held() for k in keepers]}"
    return keepers, running, cameras


def test_two_keepers_share_and_one_takes_over_after_a_kill(
    link: NatsLink, other_link: NatsLink
) -> None:
    ttl = 3.0
    (a, b), (ran_a, ran_b), cameras = _share(link, other_link, ttl, 6)
    try:
        assert len(a.held()) >= 2 and len(b.held()) >= 2
        assert set(a.held()).isdisjoint(b.held())
        assert ran_a.running == set(a.held()) and ran_b.running == set(b.held())
        killed = time.monotonic()
        b.stop(release=False)  # a SIGKILL: no release, no more renewals
        waited = _wait_for(lambda: len(a.held()) == 6, ttl + 2.0)
        print(f"takeover after a kill (ttl {ttl:g} s): all 6 held by A after {waited} s")
        assert waited is not None, f"A holds {a.held()} {ttl + 2:g} s after B was killed"
        assert ran_a.running == set(cameras)
        assert time.monotonic() - killed < ttl + 2.0
    finally:
        a.stop()
        b.stop()
    gap = _assert_no_overlap(a, b)
    print(f"smallest gap between B's loss and A's gain of a camera: {gap:.3f} s")
    assert gap > 0


def test_a_keeper_stopped_with_release_frees_its_cameras_at_once(
    link: NatsLink, other_link: NatsLink
) -> None:
    ttl = 3.0
    (a, b), (ran_a, ran_b), cameras = _share(link, other_link, ttl, 6)
    try:
        assert len(a.held()) >= 2 and len(b.held()) >= 2
        theirs = set(b.held())
        b.stop(release=True)
        assert ran_b.running == set()
        left = {camera: info.node for camera, info in a.leases.all().items() if camera in theirs}
        assert "node-b" not in left.values(), f"B's leases left after its release: {left}"
        waited = _wait_for(lambda: len(a.held()) == 6, a.renew_every + 1.0)
        print(f"release to take: all 6 held by A {waited} s after B stopped with release")
        assert waited is not None, f"A holds {a.held()} one tick + 1 s after B's release"
        assert ran_a.running == set(cameras)
    finally:
        a.stop()
        b.stop()
    assert not a.leases.all(), "stop(release=True) left leases behind"
    _assert_no_overlap(a, b)


def test_a_partitioned_keeper_gives_up_by_its_local_deadline(own_server: NatsServer) -> None:
    ttl = 3.0
    cameras = ["cam-1", "cam-2", "cam-3"]
    with NatsLink(own_server.url, name="partitioned") as link:
        leases = Leases(link, bucket=_unique("part"), ttl=ttl)
        running = Cameras()
        keeper = _keeper(leases, "node-p", cameras, running)
        try:
            assert _wait_for(lambda: len(keeper.held()) == 3, 3 * ttl) is not None
            cut = time.monotonic()
            own_server.stop()
            waited = _wait_for(lambda: running.count() == 0, ttl)
            print(f"partition: on_lost for every lease {waited} s after the server stopped")
            assert waited is not None, f"still running {running.running} a ttl after the cut"
            latest = max(running.lost.values()) - cut
            print(f"the last on_lost came {latest:.3f} s after the cut (deadline ttl - ttl/5)")
            assert latest <= ttl
            assert keeper.held() == []
            own_server.start()  # the outage ends: same port, same JetStream store
            back = _wait_for(lambda: running.count() == 3, ttl + 4.0)
            print(f"after the outage the keeper held its cameras again in {back} s")
            assert back is not None, f"holds {keeper.held()} after the server came back"
        finally:
            keeper.stop()
    kinds = Counter(event.kind for event in keeper.log)
    assert kinds["gained"] == 6 and kinds["lost"] == 3 and kinds["released"] == 3


def test_a_keeper_gives_up_in_time_when_the_server_stops_answering(
    own_server: NatsServer,
) -> None:
    """A partition that does not close the connection (the server frozen by SIGSTOP):
    every request hangs until its own timeout, yet no deadline slips."""
    ttl = 3.0
    cameras = ["cam-1", "cam-2", "cam-3", "cam-4"]
    with NatsLink(own_server.url, name="frozen") as link:
        leases = Leases(link, bucket=_unique("frozen"), ttl=ttl)
        running = Cameras()
        keeper = _keeper(leases, "node-f", cameras, running)
        try:
            assert _wait_for(lambda: len(keeper.held()) == 4, 3 * ttl) is not None
            cut = time.monotonic()
            own_server.freeze()
            try:
                waited = _wait_for(lambda: running.count() == 0, ttl)
                assert waited is not None, f"still running {running.running} a ttl after"
            finally:
                own_server.thaw()
            latest = max(running.lost.values()) - cut
            print(f"frozen server: the last on_lost came {latest:.3f} s after the freeze")
            assert latest <= ttl
            back = _wait_for(lambda: running.count() == 4, 2 * ttl + 3.0)
            print(f"after the thaw the keeper held its cameras again in {back} s")
            assert back is not None, f"holds {keeper.held()} after the server answered again"
        finally:
            keeper.stop()
    _assert_no_overlap(keeper)


# -- the job queue ---------------------------------------------------------------------------


def test_unacked_jobs_come_back_to_another_worker(link: NatsLink) -> None:
    ack_wait = 2.0
    name = _unique("J")
    queue = JobQueue(link, stream=name, subject=f"jobs.{name}", ack_wait=ack_wait)
    ids = [f"job-{index}" for index in range(20)]
    for index, ident in enumerate(ids):
        queue.submit({"id": ident, "n": index})
    assert queue.pending() == 20
    first, second = queue.worker(), queue.worker()
    acks: Counter[str] = Counter()
    for _ in range(2):
        job = first.next(2.0)
        assert job is not None and job.deliveries == 1
        job.ack()
        acks[job.data["id"]] += 1
    abandoned = [first.next(2.0) for _ in range(3)]
    dropped_at = time.monotonic()
    dropped = {job.data["id"] for job in abandoned if job is not None}
    assert len(dropped) == 3
    first.close()  # the worker dies without acking them
    came_back: dict[str, float] = {}
    deadline = dropped_at + ack_wait + 2.0
    while len(acks) < 20 and time.monotonic() < deadline:
        job = second.next(0.5)
        if job is None:
            continue
        if job.data["id"] in dropped:  # not deliveries > 1: see the in_progress test
            came_back[job.data["id"]] = time.monotonic() - dropped_at
        job.ack()
        acks[job.data["id"]] += 1
    print(f"redelivery of unacked jobs (ack_wait {ack_wait:g} s) after: {came_back}")
    assert set(came_back) == dropped
    assert all(ack_wait - 0.3 <= after <= ack_wait + 2.0 for after in came_back.values())
    assert set(acks) == set(ids) and set(acks.values()) == {1}
    assert _wait_for(lambda: queue.pending() == 0, 2.0) is not None
    assert second.next(0.3) is None

    seq = queue.submit({"id": "dup-1", "path": "/archive/a.mp4"})
    assert queue.submit({"id": "dup-1", "path": "/archive/a.mp4"}) == seq
    assert queue.pending() == 1
    job = second.next(1.0)
    assert job is not None and job.data["id"] == "dup-1" and job.seq == seq
    job.ack()
    assert second.next(0.3) is None


def test_a_job_in_progress_is_not_redelivered(link: NatsLink) -> None:
    ack_wait = 1.5
    name = _unique("J")
    queue = JobQueue(link, stream=name, subject=f"jobs.{name}", ack_wait=ack_wait)
    queue.submit({"id": "long", "path": "/archive/long.mp4"})
    scanner, idle = queue.worker(), queue.worker()
    job = scanner.next(1.0)
    assert job is not None
    for _ in range(3):
        time.sleep(ack_wait * 0.6)
        job.in_progress()
    assert idle.next(0.2) is None  # 2.7 s + 0.2 s > ack_wait: kept by in_progress
    job.nak()
    again = idle.next(1.0)
    # nats-server before 2.10.15 may count a redelivery that raced an expired pull request
    # as a first delivery (nats-server#5305, #5338): check the job, not the count
    assert again is not None and again.seq == job.seq and again.deliveries >= 1
    again.term()
    assert _wait_for(lambda: queue.pending() == 0, 2.0) is not None


# -- the event stream ------------------------------------------------------------------------


def test_events_read_back_in_order_without_duplicates(link: NatsLink) -> None:
    name = _unique("E")
    stream = EventStream(link, stream=name, subject_prefix=f"events.{name}")
    events = [
        {"id": f"ev-{index}", "camera": ["door.1", "yard 2"][index % 2], "n": index}
        for index in range(10)
    ]
    seqs = [stream.publish(event) for event in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 10
    assert stream.publish(dict(events[3])) == seqs[3]  # re-sent: stored once
    read = stream.read()
    assert [seq for seq, _ in read] == seqs
    assert [event for _, event in read] == events
    assert stream.read(since_seq=seqs[4]) == read[5:]
    assert stream.read(limit=3) == read[:3]
    assert stream.read(since_seq=seqs[-1]) == []
    assert stream.subject_for("door.1") == f"events.{name}.door_1"
