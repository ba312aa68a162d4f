"""Frame sources on PyAV: video files (every frame, never dropped) and live streams.

A live source (RTSP, HTTP, a V4L2 device) decodes on its own thread into a bounded queue;
when inference falls behind, the *oldest* queued frame is dropped (a live answer about
now beats a late answer about then) and counted. When the stream breaks it reconnects
with exponential back-off. The give-up clock runs in the caller's thread, not the
reader's: whatever the reader is blocked in (a back-off wait, a connection that is never
answered), the caller gets its error once no frame came for ``give_up_after`` seconds.
Files are read in the caller's thread, so nothing is dropped.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.errors import InputError
from faceledger.types import ImageArray

LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


@dataclass(frozen=True)
class Frame:
    index: int
    """Position in the source (counting dropped frames too)."""
    t: float
    """Seconds from the start of the source (presentation time)."""
    image: ImageArray


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int
    """As the container states it (0 when unknown)."""
    duration: float
    has_audio: bool


def upright(frame: Any) -> ImageArray:
    """A decoded PyAV frame as RGB, turned by its display-matrix rotation (phone videos)."""
    image = frame.to_ndarray(format="rgb24")
    turns = round(float(getattr(frame, "rotation", 0) or 0) / 90.0) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def is_live(source: str) -> bool:
    return source.startswith(LIVE_PREFIXES) or source.startswith("/dev/video")


def _reason(exc: BaseException) -> str:
    """A short human reason from a PyAV / OS error."""
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '", 1)[0].strip() or type(exc).__name__


def open_container(
    source: str,
    timeout: float | tuple[float, float] | None = None,
    options: dict[str, str] | None = None,
) -> Any:
    """av.open with errors turned into InputError naming the source; ``timeout`` is in
    seconds, for opening and for each read, or an (open, read) pair; ``options``: FFmpeg's
    demuxer options (e.g. ``{"rtsp_transport": "tcp"}``)."""
    import av

    kwargs: dict[str, Any] = {}
    if source.startswith("/dev/video"):
        kwargs["format"] = "v4l2"
    if timeout is not None:
        kwargs["timeout"] = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    if options:
        kwargs["options"] = options
    try:
        container = av.open(source, **kwargs)
    except FileNotFoundError:
        raise InputError(source, "no such file") from None
    except IsADirectoryError:
        raise InputError(source, "is a folder, not a video") from None
    except (av.FFmpegError, OSError) as exc:
        raise InputError(source, f"cannot open as video ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise InputError(source, "has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        tag = getattr(stream, "codec_tag", "") or "unknown"
        container.close()
        raise InputError(source, f"video codec {tag!r} cannot be decoded by this FFmpeg build")
    return container


def probe(source: str) -> VideoInfo:
    container = open_container(source)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 0
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        if not duration and container.duration:
            duration = container.duration / 1_000_000
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate),
            frames=int(stream.frames or 0),
            duration=duration,
            has_audio=bool(container.streams.audio),
        )
    finally:
        container.close()


def file_frames(path: str | Path) -> Iterator[Frame]:
    """Every frame of a video file, in order. A decode error part-way raises InputError
    after the frames before it were yielded (so work done on them is kept)."""
    import av

    source = str(path)
    container = open_container(source)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    index = 0
    rate = float(stream.average_rate or 25)
    start: float | None = None
    try:
        for frame in container.decode(stream):
            pts = float(frame.time) if frame.time is not None else index / rate
            start = pts if start is None else start
            yield Frame(index, pts - start, upright(frame))
            index += 1
    except av.FFmpegError as exc:
        raise InputError(source, f"video broken after frame {index} ({_reason(exc)})") from None
    finally:
        container.close()
    if index == 0:
        raise InputError(source, "no decodable video frame (truncated, or a codec PyAV lacks)")


LAG_WINDOW_S = 10.0


@dataclass
class StreamHealth:
    """A live stream's health: counts since the start, and the lag (frame arrival to its
    processing done, noted by the consumer with :meth:`processed`) over the last 10 s.
    ``last_error`` is cleared once frames flow again: it describes the stream now."""

    frames: int = 0
    dropped: int = 0
    reconnects: int = 0
    started: float = field(default_factory=time.monotonic)
    last_error: str = ""
    state: str = "connecting"
    done: int = 0
    _lags: list[tuple[float, float]] = field(default_factory=list, repr=False)

    @property
    def fps(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.frames / elapsed if elapsed > 0 else 0.0

    def arrived(self) -> None:
        """A frame came: the stream is live (and an earlier error is history)."""
        self.frames += 1
        if self.state != "live":
            self.state, self.last_error = "live", ""

    def broke(self, error: str) -> None:
        self.state, self.last_error = "reconnecting", error

    def processed(self, lag: float) -> None:
        now = time.monotonic()
        self.done += 1
        self._lags.append((now, lag))
        if len(self._lags) > 4096 or self._lags[0][0] < now - LAG_WINDOW_S:
            self._lags = [(t, v) for t, v in self._lags if t >= now - LAG_WINDOW_S]

    def as_dict(self) -> dict[str, Any]:
        lags = sorted(v for _, v in self._lags)
        return {
            "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "state": self.state,
            "frames": self.frames,
            "processed": self.done,
            "dropped": self.dropped,
            "reconnects": self.reconnects,
            "fps": round(self.fps, 2),
            "lag_s": round(lags[len(lags) // 2], 3) if lags else None,
            "lag_p95_s": round(lags[min(len(lags) - 1, int(0.95 * len(lags)))], 3)
            if lags
            else None,
            "last_error": self.last_error or None,
        }


class LiveSource:
    """A live stream read on a background thread into a bounded, drop-oldest queue."""

    def __init__(
        self,
        url: str,
        *,
        queue_size: int = 4,
        timeout: float = 10.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        give_up_after: float | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.backoff = backoff
        self.give_up_after = give_up_after
        """Stop (with an InputError) when no frame arrived for this many seconds."""
        self.health = StreamHealth()
        self._started = time.monotonic()
        self._last_frame = time.monotonic()
        """When the reader last queued a frame (or when reading started)."""
        self._queue: queue.Queue[Frame | BaseException | None] = queue.Queue(queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def stop(self) -> None:
        self._stop.set()

    def lag(self, frame: Frame) -> float:
        """Seconds since ``frame`` arrived from the stream."""
        return time.monotonic() - self._started - frame.t

    def frames(self, heartbeat: bool = False) -> Iterator[Frame | None]:
        """Frames as they come; raises InputError once none came for ``give_up_after`` s.
        With ``heartbeat``, None every quarter second that no frame came (so that the
        caller can report health through an outage)."""
        self._last_frame = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"decode {self.url}", daemon=True)
        self._thread.start()
        gave_up = False
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self._poll())
                except queue.Empty:
                    silent = time.monotonic() - self._last_frame
                    if self.give_up_after is not None and silent >= self.give_up_after:
                        gave_up = True
                        reason = self.health.last_error or "no answer"
                        raise InputError(
                            self.url, f"no frames for {silent:.1f} s ({reason})"
                        ) from None
                    if not self._thread.is_alive():  # stopped, or ended without a word
                        return
                    if heartbeat:
                        yield None
                    continue
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            # A reader blocked in a connection attempt ends by itself within its timeout
            # (it is a daemon thread); giving up does not wait for it.
            self._thread.join(timeout=0.5 if gave_up else self.timeout + 1)

    def _poll(self) -> float:
        """How long to wait for the next frame before looking at the give-up clock."""
        if self.give_up_after is None:
            return 0.25
        left = self._last_frame + self.give_up_after - time.monotonic()
        return min(0.25, max(left, 0.01))

    def _put(self, item: Frame | BaseException | None) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    dropped = self._queue.get_nowait()
                    if isinstance(dropped, Frame):
                        self.health.dropped += 1

    def _run(self) -> None:
        try:
            self._follow()
        except Exception as exc:  # anything unexpected reaches the caller, not a dead thread
            self._put(InputError(self.url, f"stream reader failed ({type(exc).__name__}: {exc})"))

    def _follow(self) -> None:
        """Read and reconnect until stopped; the caller's give-up clock ends a silent run."""
        delay = self.backoff[0]
        index = 0
        started = self._started
        while not self._stop.is_set():
            try:
                for image in self._decode():
                    # Live time is wall-clock time: stream clocks restart on every reconnect.
                    self._last_frame = time.monotonic()
                    self._put(Frame(index, self._last_frame - started, image))
                    self.health.arrived()
                    index += 1
                    delay = self.backoff[0]
                    if self._stop.is_set():
                        break
                else:
                    if not self._stop.is_set():
                        self.health.broke("stream ended")
            except InputError as exc:
                self.health.broke(exc.reason)
            if self._stop.is_set():
                break
            self.health.reconnects += 1
            self._stop.wait(delay)
            delay = min(delay * 2, self.backoff[1])
        self._put(None)

    def _open_timeout(self) -> float:
        """A connection attempt never outlasts the give-up time, so the reader ends soon
        after the caller gave up."""
        if self.give_up_after is None:
            return self.timeout
        left = self._last_frame + self.give_up_after - time.monotonic()
        return min(self.timeout, max(left, 0.1))

    def _decode(self) -> Iterator[ImageArray]:
        import av

        container = open_container(self.url, (self._open_timeout(), self.timeout))
        try:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                yield upright(frame)
                if self._stop.is_set():
                    return
        except av.FFmpegError as exc:
            raise InputError(self.url, f"stream broke ({_reason(exc)})") from None
        finally:
            container.close()
