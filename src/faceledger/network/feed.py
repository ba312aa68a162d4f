"""One camera's frames: a decoding thread (PyAV), detection ticks, a drop-oldest queue,
and the camera's health.

Every frame of the stream is decoded (a compressed stream cannot skip frames), but only
the frames at the camera's detection ticks (``detect_fps``) are converted to RGB and
queued: that conversion is most of a frame's cost after decoding. When the node's
scheduler falls behind, the *oldest* queued tick is dropped and counted (a live answer
about now beats a late answer about then). When the stream breaks, the thread
reconnects with exponential back-off; the health says so the whole time, and its last
error is cleared once frames flow again.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from faceledger.errors import InputError
from faceledger.gallery.cameras import Camera
from faceledger.types import ImageArray
from faceledger.video.source import Frame, open_container, upright

WINDOW_S = 10.0
"""Rates and lags in the health are over the last this many seconds."""


@dataclass(frozen=True)
class Tick:
    """A frame due for detection, with when it arrived (monotonic s)."""

    camera: str
    frame: Frame
    arrived: float


class Health:
    """What a camera's thread and the scheduler observe; :meth:`snapshot` is the report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state = "starting"
        self.last_error: str | None = None
        self.error_at: str | None = None
        self.frames = 0
        self.ticks = 0
        self.dropped = 0
        self.processed = 0
        self.reconnects = 0
        self.started = time.monotonic()
        self._frame_samples: collections.deque[tuple[float, int]] = collections.deque()
        """(when, frames so far) at each snapshot: the input rate over the window."""
        self._done: collections.deque[tuple[float, float]] = collections.deque()
        """(done at, lag) of each processed tick in the window."""
        self._dropped_at: collections.deque[float] = collections.deque()
        self._ticks_at: collections.deque[float] = collections.deque()

    def frame(self, now: float) -> None:
        """A frame was decoded (called for every frame: kept cheap, no lock; the counts
        are read under the GIL and sampled for rates by :meth:`snapshot`)."""
        self.frames += 1
        if self.state != "live":
            with self._lock:
                self.state = "live"
                self.last_error = None  # recovered: the error is history, not health
                self.error_at = None

    def tick(self, now: float) -> None:
        with self._lock:
            self.ticks += 1
            self._ticks_at.append(now)

    def drop(self, now: float) -> None:
        with self._lock:
            self.dropped += 1
            self._dropped_at.append(now)

    def done(self, now: float, lag: float) -> None:
        with self._lock:
            self.processed += 1
            self._done.append((now, lag))

    def failed(self, state: str, error: str | None) -> None:
        with self._lock:
            self.state = state
            if error is not None:
                self.last_error = error
                self.error_at = _iso_now()

    def set_state(self, state: str) -> None:
        with self._lock:
            self.state = state

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The health as reported: state, rates and lag over the last :data:`WINDOW_S`."""
        now = time.monotonic() if now is None else now
        with self._lock:
            edge = now - WINDOW_S
            for times in (self._dropped_at, self._ticks_at):
                while times and times[0] < edge:
                    times.popleft()
            samples = self._frame_samples
            samples.append((now, self.frames))
            while len(samples) > 1 and samples[0][0] < edge:
                samples.popleft()
            since, frames_then = samples[0] if len(samples) > 1 else (self.started, 0)
            while self._done and self._done[0][0] < edge:
                self._done.popleft()
            span = max(min(WINDOW_S, now - self.started), 1e-3)
            lags = sorted(lag for _, lag in self._done)
            ticks = len(self._ticks_at)
            return {
                "state": self.state,
                "input_fps": round((self.frames - frames_then) / max(now - since, 1e-3), 2),
                "processed_fps": round(len(self._done) / span, 2),
                "frames": self.frames,
                "ticks": self.ticks,
                "processed": self.processed,
                "dropped": self.dropped,
                "dropped_pct": round(100.0 * len(self._dropped_at) / ticks, 2) if ticks else 0.0,
                "lag_s": round(lags[len(lags) // 2], 3) if lags else None,
                "lag_p95_s": round(lags[min(len(lags) - 1, int(0.95 * len(lags)))], 3)
                if lags
                else None,
                "reconnects": self.reconnects,
                "last_error": self.last_error,
                "error_at": self.error_at,
                "at": _iso_now(),
            }


def _iso_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class CameraFeed:
    """A camera's decoding thread; :meth:`take` hands out its queued ticks."""

    def __init__(
        self,
        camera: Camera,
        *,
        queue_size: int = 2,
        backoff: tuple[float, float] = (0.5, 10.0),
        wake: threading.Event | None = None,
    ) -> None:
        self.camera = camera
        self.name = camera.name
        self.url = camera.detect_url or camera.url
        """What is decoded: the detection sub-stream when there is one."""
        self.period = 1.0 / camera.detect_fps
        self.backoff = backoff
        self.health = Health()
        self.wake = wake or threading.Event()
        """Set whenever a tick is queued (the scheduler waits on it)."""
        self._queue: collections.deque[Tick] = collections.deque()
        self._size = queue_size
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera {self.name}", daemon=True)
        self.started_wall = time.time()
        self._start = time.monotonic()
        self._index = 0

    def start(self) -> CameraFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def take(self) -> Tick | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def waiting(self) -> int:
        with self._lock:
            return len(self._queue)

    # ---- the thread ---------------------------------------------------------------------

    def _put(self, tick: Tick) -> None:
        with self._lock:
            if len(self._queue) >= self._size:
                self._queue.popleft()
                self.health.drop(tick.arrived)
            self._queue.append(tick)
        self.wake.set()

    def _run(self) -> None:
        delay = self.backoff[0]
        while not self._stop.is_set():
            self.health.set_state("connecting" if self.health.frames == 0 else "reconnecting")
            try:
                for _ in self._frames():
                    delay = self.backoff[0]
                if not self._stop.is_set():
                    self.health.failed("reconnecting", "stream ended")
            except InputError as exc:
                self.health.failed("reconnecting", exc.reason)
            except Exception as exc:  # a reader fault must show in health, not kill the thread
                self.health.failed("reconnecting", f"{type(exc).__name__}: {exc}")
            if self._stop.is_set():
                break
            self.health.reconnects += 1
            self._stop.wait(delay)
            delay = min(delay * 2, self.backoff[1])
        self.health.set_state("stopped")

    def _frames(self) -> Iterator[None]:
        """Decode until the stream ends or breaks; queue the frames at detection ticks."""
        import av

        options = {"rtsp_transport": self.camera.transport} if self._is_rtsp() else {}
        timeout = self.camera.timeout
        container = open_container(self.url, (timeout, timeout), options)
        next_tick = time.monotonic()
        try:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                now = time.monotonic()
                self.health.frame(now)
                if now >= next_tick:
                    # ticks keep their rhythm, but one that fell a whole period behind
                    # (a stall) restarts from now instead of firing a burst
                    next_tick = max(next_tick + self.period, now)
                    self._queue_tick(upright(frame), now)
                yield None
                if self._stop.is_set():
                    return
        except av.FFmpegError as exc:
            raise InputError(self.name, f"stream broke ({exc.strerror or exc})") from None
        finally:
            container.close()

    def _queue_tick(self, image: ImageArray, now: float) -> None:
        self.health.tick(now)
        frame = Frame(self._index, now - self._start, image)
        self._index += 1
        self._put(Tick(self.name, frame, now))

    def _is_rtsp(self) -> bool:
        return self.url.startswith(("rtsp://", "rtsps://")) and self.camera.transport != "auto"
