"""A camera node: many cameras through one shared inference scheduler.

::

    camera feeds (a decoding thread each; ticks at detect_fps; drop-oldest queues)
      -> Scheduler (one thread): a batch of ticks from every camera, fairly
           -> detection for the batch (one call: a GPU runtime can take it as one tensor)
           -> each camera's own tracker (VideoScanner.step)
           -> the crops of every track ready to decide, embedded in one batch
           -> each decision matched against its camera's watch lists only
      -> the operations layer: each event and its ledger entry in one transaction
      -> sinks (JSONL, webhook outbox, MQTT, the event stream)

Models and the gallery index are loaded once per node; the scheduler runs on one thread
per core (``[node] workers``), each serving its share of the cameras. Which cameras a node runs is a
:class:`Claims` policy: :class:`LocalClaims` runs every camera that is not paused (one
node, no extra server); a NATS lease keeper hands a node only the cameras it holds.
Every camera runs as one on-the-record run (its ``camera.start`` and ``camera.end``
entries) from when the node takes it until it stops it: paused, removed, lost, or the
node stopped (every open track is decided first).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import numpy as np

from faceledger.config import NodeConfig
from faceledger.events.sinks import Dispatcher
from faceledger.gallery.cameras import Camera
from faceledger.network.feed import CameraFeed, Tick
from faceledger.operations import Acting, Operations, VideoRun
from faceledger.video.scan import PendingDecision, TrackDecision, VideoScanner, detect_batch

log = logging.getLogger(__name__)
NODE_ROLE = "node"
"""The role a node's ledger entries are written under."""


class Claims(Protocol):
    """Which cameras this node may run now, out of the records; ``changed`` is set when
    that may have changed between two reads of the records (a lease gained or lost)."""

    changed: threading.Event

    def allowed(self, cameras: Sequence[Camera]) -> list[Camera]: ...

    def close(self) -> None: ...


@dataclass
class LocalClaims:
    """Every camera that is not paused (up to ``max_cameras``, in name order)."""

    max_cameras: int | None = None
    only: frozenset[str] | None = None
    changed: threading.Event = field(default_factory=threading.Event)
    """Never set: what is allowed changes only with the records."""

    def allowed(self, cameras: Sequence[Camera]) -> list[Camera]:
        chosen = [c for c in cameras if not c.paused and (self.only is None or c.name in self.only)]
        return chosen[: self.max_cameras] if self.max_cameras is not None else chosen

    def close(self) -> None:
        return None


class CameraRunner:
    """One camera on this node: its feed, its tracker, its on-the-record run."""

    def __init__(
        self, ops: Operations, camera: Camera, node: str, config: NodeConfig, wake: threading.Event
    ) -> None:
        self.ops = ops
        self.camera = camera
        self.name = camera.name
        self.acting = Acting(f"node:{node}", NODE_ROLE, camera.purpose)
        self.feed = CameraFeed(
            camera, queue_size=config.queue_size, backoff=config.backoff, wake=wake
        )
        self.scanner = VideoScanner(
            ops.engine,
            camera.shown_url,
            best_k=config.best,
            decide_after=config.decide_after,
            tracker=config.tracker,
            matcher=lambda: ops.camera_matcher(camera.name),
            min_face=camera.min_face,
        )
        self._run_cm = ops.video_run(
            self.acting, "camera", camera.shown_url, camera=camera.name,
            keep_unknown=ops.config.keep_unknown,
        )  # fmt: skip
        self.run: VideoRun = self._run_cm.__enter__()
        self.started_at = datetime.fromtimestamp(self.feed.started_wall, timezone.utc)
        self.feed.start()

    def event(self, decision: TrackDecision) -> dict[str, Any]:
        """Record one decision (event + ledger entry, one transaction); the event to send."""
        first = self.started_at + timedelta(seconds=decision.first_t)
        event_id = self.run.record(decision, started_at=first)
        stored = self.run.decisions[-1]  # unknown if its subject was erased meanwhile
        return {
            "id": event_id,
            "camera": self.name,
            "at": first.isoformat(timespec="milliseconds"),
            **stored.as_json(),
        }

    def close(self, error: str | None = None) -> None:
        """Stop the feed and end the run (its end entry names ``error`` if one ended it).
        A decoding thread blocked in a read ends by itself within the camera's timeout
        (it is a daemon thread, and queues nothing more that is looked at)."""
        self.feed.stop()
        self.feed.join(1.0)
        if error is None:
            self._run_cm.__exit__(None, None, None)
        else:
            with contextlib.suppress(Exception):
                self._run_cm.__exit__(RuntimeError, RuntimeError(error), None)


@dataclass
class SchedulerStats:
    batches: int = 0
    frames: int = 0
    decisions: int = 0
    embedded: int = 0
    busy_s: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)


class Scheduler:
    """The node's one inference loop over every camera's ticks (see the module notes)."""

    def __init__(
        self,
        ops: Operations,
        config: NodeConfig,
        emit: Callable[[CameraRunner, TrackDecision], None],
    ) -> None:
        self.ops = ops
        self.config = config
        self.emit = emit
        self.wake = threading.Event()
        self.stats = SchedulerStats()
        self._cursor = 0

    def collect(self, runners: Sequence[CameraRunner], stop: threading.Event) -> list[Tick]:
        """Up to ``max_batch`` ticks, the oldest of each camera in turn; once one is there,
        wait at most ``max_wait`` for the batch to fill."""
        batch: list[Tick] = []
        deadline: float | None = None
        while not stop.is_set():
            self.wake.clear()
            batch += self._round(runners, self.config.max_batch - len(batch))
            if len(batch) >= self.config.max_batch:
                break
            now = time.monotonic()
            if batch and deadline is None:
                deadline = now + self.config.max_wait
            if deadline is not None and now >= deadline:
                break
            self.wake.wait(0.1 if deadline is None else max(deadline - now, 0.0))
            if deadline is None and not batch:
                break  # nothing came: let the caller look at its cameras
        return batch

    def _round(self, runners: Sequence[CameraRunner], room: int) -> list[Tick]:
        taken: list[Tick] = []
        if not runners:
            return taken
        n = len(runners)
        progress = True
        while room > 0 and progress:
            progress = False
            for step in range(n):
                if room <= 0:
                    break
                runner = runners[(self._cursor + step) % n]
                tick = runner.feed.take()
                if tick is not None:
                    taken.append(tick)
                    room -= 1
                    progress = True
            self._cursor = (self._cursor + 1) % n
        return taken

    def process(self, batch: Sequence[Tick], runners: dict[str, CameraRunner]) -> None:
        """Detect, track, embed and decide one batch of ticks."""
        started = time.perf_counter()
        live = [(t, runners[t.camera]) for t in batch if t.camera in runners]
        ready: list[tuple[CameraRunner, PendingDecision]] = []
        with self.ops.inference() as engine:
            found = detect_batch(
                engine,
                [t.frame.image for t, _ in live],
                [r.camera.min_face for _, r in live],
                self.config.detect_max_side,
            )
            for (tick, runner), faces in zip(live, found, strict=True):
                ready += [(runner, p) for p in runner.scanner.step(tick.frame, faces)]
            vectors = self._embed(engine, ready)
        self._decide(ready, vectors)
        done = time.monotonic()  # the lag covers the tick's decisions and their records
        for tick, runner in live:
            runner.feed.health.done(done, done - tick.arrived)
        self.stats.batches += 1
        self.stats.frames += len(live)
        self.stats.batch_sizes.append(len(live))
        self.stats.busy_s += time.perf_counter() - started

    def finish(self, runner: CameraRunner) -> None:
        """Decide every track still open on a camera that stops."""
        pending = [(runner, p) for p in runner.scanner.finish_pending()]
        with self.ops.inference() as engine:
            vectors = self._embed(engine, pending)
        self._decide(pending, vectors)

    def _embed(
        self, engine: Any, ready: Sequence[tuple[CameraRunner, PendingDecision]]
    ) -> list[np.ndarray | None]:
        """Every ready track's crops in one batch; each track's rows back."""
        crops = [p.crops for _, p in ready if p.crops is not None]
        if not crops:
            return [None] * len(ready)
        vectors = engine.embed_crops(np.concatenate(crops)).vectors
        self.stats.embedded += len(vectors)
        rows: list[np.ndarray | None] = []
        at = 0
        for _, pending in ready:
            if pending.crops is None:
                rows.append(None)
            else:
                rows.append(vectors[at : at + len(pending.crops)])
                at += len(pending.crops)
        return rows

    def _decide(
        self,
        ready: Sequence[tuple[CameraRunner, PendingDecision]],
        vectors: Sequence[np.ndarray | None],
    ) -> None:
        for (runner, pending), rows in zip(ready, vectors, strict=True):
            decision = runner.scanner.conclude(pending, rows)
            self.stats.decisions += 1
            self.emit(runner, decision)


class Worker:
    """One scheduler thread and the cameras it serves (a camera stays with one worker, so
    its frames are tracked in order). Inference releases the GIL: with a worker per core,
    a node uses every core."""

    def __init__(self, node: Node, index: int) -> None:
        self.node = node
        self.scheduler = Scheduler(node.ops, node.config, node._emit)
        self.runners: dict[str, CameraRunner] = {}
        self.lock = threading.Lock()
        """Held while a batch is processed, and while a camera joins or leaves."""
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"scheduler {node.name}/{index}", daemon=True
        )

    def start(self) -> Worker:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        stop = self.node.stop_event
        try:
            while not stop.is_set():
                with self.lock:
                    runners = list(self.runners.values())
                if not runners:
                    stop.wait(0.1)
                    continue
                batch = self.scheduler.collect(runners, stop)
                if batch:
                    with self.lock:
                        self.scheduler.process(batch, self.runners)
        except BaseException as exc:  # the node stops, and says why
            self.error = exc
            log.exception("%s: a scheduler failed", self.node.name)
            self.node.stop()


class Node:
    """Runs the cameras its claims allow until stopped (see the module notes)."""

    def __init__(
        self,
        ops: Operations,
        name: str,
        *,
        config: NodeConfig | None = None,
        claims: Claims | None = None,
        dispatcher: Dispatcher | None = None,
        on_health: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.ops = ops
        self.name = name
        self.config = config or ops.config.node
        self.claims = claims or LocalClaims()
        self.dispatcher = dispatcher or Dispatcher([])
        self.on_health = on_health
        self.stop_event = threading.Event()
        count = self.config.workers or os.cpu_count() or 1
        self.workers = [Worker(self, i) for i in range(count)]
        self.events_sent = 0
        self._emit_lock = threading.Lock()
        self._last_reload = -1e9
        self._last_health = time.monotonic()

    @property
    def runners(self) -> dict[str, CameraRunner]:
        """Every camera running on this node, by name."""
        found: dict[str, CameraRunner] = {}
        for worker in self.workers:
            found.update(worker.runners)
        return found

    @property
    def stats(self) -> SchedulerStats:
        """The schedulers' counts, summed."""
        total = SchedulerStats()
        for worker in self.workers:
            s = worker.scheduler.stats
            total.batches += s.batches
            total.frames += s.frames
            total.decisions += s.decisions
            total.embedded += s.embedded
            total.busy_s += s.busy_s
            total.batch_sizes += s.batch_sizes
        return total

    def stop(self) -> None:
        self.stop_event.set()
        for worker in self.workers:
            worker.scheduler.wake.set()

    def run(self, seconds: float | None = None) -> None:
        """Run until :meth:`stop` (or for ``seconds``); then every camera is drained:
        open tracks decided, runs ended on the record."""
        ends = None if seconds is None else time.monotonic() + seconds
        for worker in self.workers:
            worker.start()
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                if ends is not None and now >= ends:
                    break
                if now - self._last_reload >= self.config.reload_every or self.claims_changed():
                    self.reconcile()
                    self._last_reload = now
                if now - self._last_health >= self.config.health_every:
                    self.report_health()
                self.stop_event.wait(0.05)
        finally:
            self.stop_event.set()
            for worker in self.workers:
                worker.scheduler.wake.set()
                worker.join(30)
            self.drain()
        failed = next((w.error for w in self.workers if w.error is not None), None)
        if failed is not None:
            raise failed

    def claims_changed(self) -> bool:
        return self.claims.changed.is_set()

    def reconcile(self) -> None:
        """Start the cameras now allowed, stop those no longer (paused, removed, lost,
        or changed: a changed record restarts its camera)."""
        self.claims.changed.clear()
        records = self.ops.list_cameras()
        wanted = {c.name: c for c in self.claims.allowed(records)}
        for name, runner in self.runners.items():
            if name not in wanted or wanted[name] != _settled(runner.camera, wanted[name]):
                self._stop_camera(name)
        running = self.runners
        for name, camera in wanted.items():
            if name not in running:
                self._start_camera(camera)

    def report_health(self) -> None:
        self._last_health = time.monotonic()
        for name, runner in self.runners.items():
            health = runner.feed.health.snapshot()
            if not runner.feed.alive and health["state"] != "stopped":
                health["state"] = "failed"
            self.ops.report_camera_health(name, self.name, health)
            if self.on_health is not None:
                self.on_health(name, health)

    def drain(self) -> None:
        runners = self.runners
        for runner in runners.values():  # every stream stops at once ...
            runner.feed.stop()
        for name in runners:  # ... then each camera's open tracks are decided
            self._stop_camera(name)
        self.claims.close()

    def _start_camera(self, camera: Camera) -> None:
        worker = min(self.workers, key=lambda w: len(w.runners))
        wake = worker.scheduler.wake
        try:
            runner = CameraRunner(self.ops, camera, self.name, self.config, wake)
        except Exception as exc:  # one camera that cannot start must not stop the others
            log.warning("%s: camera %s did not start: %s", self.name, camera.name, exc)
            return
        with worker.lock:
            worker.runners[camera.name] = runner
        log.info("%s: camera %s started (%s)", self.name, camera.name, camera.shown_url)

    def _stop_camera(self, name: str, error: str | None = None) -> None:
        worker = next(w for w in self.workers if name in w.runners)
        with worker.lock:  # not while one of its batches is being processed
            runner = worker.runners.pop(name)
            runner.feed.stop()
            try:
                worker.scheduler.finish(runner)
            except BaseException:
                runner.close(error or "stopping failed")
                raise
        runner.close(error)  # outside the lock: the worker's other cameras go on
        health = runner.feed.health.snapshot()
        with contextlib.suppress(Exception):
            self.ops.report_camera_health(name, self.name, health)
        if self.on_health is not None:
            self.on_health(name, health)
        log.info("%s: camera %s stopped", self.name, name)

    def _emit(self, runner: CameraRunner, decision: TrackDecision) -> None:
        event = runner.event(decision)
        with self._emit_lock:  # sinks are called one event at a time
            self.dispatcher.send(event)
            self.events_sent += 1


def _settled(running: Camera, record: Camera) -> Camera:
    """The running camera as the record would show it if only its health and pause state
    changed (those do not restart a camera)."""
    from dataclasses import replace

    return replace(
        running, health=record.health, health_at=record.health_at, node=record.node,
        updated_at=record.updated_at, paused=record.paused,
    )  # fmt: skip
