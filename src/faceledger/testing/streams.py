"""Real streaming cameras on 127.0.0.1 for tests and benchmarks: HTTP MPEG-TS and RTSP.

::

    from faceledger.testing.streams import HttpTsServer, RtspServer, rtsp_unavailable

    with HttpTsServer(Path("cam.mp4")) as cam:    # http://127.0.0.1:PORT/stream.ts
        av.open(cam.url)                          # an endless, real-time MPEG-TS
        cam.stop()                                # an outage: the port refuses connections
        cam.start()                               # back, on the same port

    if rtsp_unavailable() is None:
        with RtspServer(Path("cam.mp4"), user="u", password="p") as cam:
            av.open(cam.url, options={"rtsp_transport": "tcp"})  # rtsp://u:p@127.0.0.1:PORT/cam

Both serve a clip's H.264 as it is (no decoding or encoding), looped forever with
timestamps that keep increasing, paced at real time, so each costs a few percent of a CPU
core. The HTTP server is in-process (PyAV muxes MPEG-TS for each client, one thread each);
the RTSP server is GStreamer's, run as a subprocess of the *system* Python, which has
PyGObject (see ``rtsp_main.py``). Every wait is bounded; every thread is a daemon and is
joined on ``stop()``/``close()``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from faceledger.testing.servers import Managed, free_port

if TYPE_CHECKING:
    import av.container
    import av.stream

__all__ = ["HttpTsServer", "RtspServer", "free_port", "rtsp_unavailable"]

SYSTEM_PYTHON = "/usr/bin/python3"
"""The interpreter that has PyGObject with GStreamer (the project's venv does not)."""

RTSP_SCRIPT = Path(__file__).with_name("rtsp_main.py")
"""The RTSP server program, run by :data:`SYSTEM_PYTHON`."""

RTSP_ELEMENTS = ("qtdemux", "h264parse", "appsrc", "appsink", "rtph264pay")
"""GStreamer elements the RTSP server needs."""

START_TIMEOUT_S = 15.0
"""How long ``RtspServer.start()`` waits for the server to say it is ready."""

STOP_TIMEOUT_S = 3.0
"""How long a stopping server (or a thread of one) may take before it is killed or left."""

_PROBE_TIMEOUT_S = 20.0
_STDERR_TAIL = 2000
_PORT_ATTEMPTS = 3
_MPEGTS_OPTIONS = {"mpegts_copyts": "1"}
"""Keep our timestamps as they are (no mux delay added), so a frame's pts modulo the clip's
duration is its time in the clip."""


# -- HTTP MPEG-TS --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Packet:
    """One H.264 packet of the clip, times in the clip's stream time base from dts 0."""

    data: bytes
    pts: int
    dts: int
    duration: int
    keyframe: bool


@dataclass(frozen=True)
class _Clip:
    """A clip's video packets in memory, with the open input that serves as the template
    of every client's output stream (its codec parameters)."""

    packets: tuple[_Packet, ...]
    time_base: Fraction
    duration: int
    container: av.container.InputContainer
    stream: av.stream.Stream

    def keyframe_at_or_before(self, position: int) -> int:
        """The index of the last keyframe whose dts is at most ``position``."""
        best = 0
        for i, packet in enumerate(self.packets):
            if packet.dts > position:
                break
            if packet.keyframe:
                best = i
        return best


def _load_clip(path: Path) -> _Clip:
    """Demux (without decoding) every video packet of ``path`` into memory."""
    import av

    container = av.open(str(path))
    try:
        stream = container.streams.video[0]
        raw: list[tuple[bytes, int, int, int, bool]] = []
        for p in container.demux(stream):
            if p.dts is not None and p.size > 0:
                pts = p.pts if p.pts is not None else p.dts
                raw.append((bytes(p), pts, p.dts, p.duration or 0, p.is_keyframe))
        if not raw or stream.time_base is None:
            raise ValueError(f"{path}: no video packets")
        start = raw[0][2]
        packets = tuple(
            _Packet(data, pts - start, dts - start, length, key)
            for data, pts, dts, length, key in raw
        )
    except BaseException:
        container.close()
        raise
    step = packets[-1].duration or (packets[-1].dts // max(len(packets) - 1, 1)) or 1
    duration = max(p.pts for p in packets) + step
    return _Clip(packets, stream.time_base, duration, container, stream)


class _ClientGone(Exception):
    """The client disconnected, or the server is stopping."""


class _SocketSink:
    """A write-only file for PyAV: ``write`` sends to the client's socket, and raises when
    the client is gone or the server stops (which ends that client's muxing)."""

    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self.sock = sock
        self.stopping = stopping

    def write(self, data: bytes) -> int:
        if self.stopping.is_set():
            raise _ClientGone("the server is stopping")
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise _ClientGone(str(exc)) from exc
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered here."""


class HttpTsServer(Managed):
    """An HTTP camera: ``GET <path>`` answers an endless real-time MPEG-TS of ``clip``.

    The stream is live: every client sees the same moment, starting at the keyframe at or
    before "now" (a lap of the clip is its duration since the first ``start()``; the pts of
    a frame, modulo the clip's duration, is its time in the clip). One thread per client.
    """

    def __init__(
        self, clip: Path, *, host: str = "127.0.0.1", port: int = 0, path: str = "/stream.ts"
    ) -> None:
        self.clip_path = clip
        self.host = host
        self.port = port or free_port(host)
        self.path = path
        self.clients_served = 0
        self._clip: _Clip | None = None
        self._server: ThreadingHTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._clients: dict[threading.Thread, socket.socket] = {}
        self._epoch: float | None = None

    # -- public --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    @property
    def active_clients(self) -> int:
        """How many clients are being streamed to now."""
        with self._lock:
            return len(self._clients)

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> HttpTsServer:
        """Listen (again) on the same port; the clip is read on the first start."""
        if self._server is not None:
            return self
        if self._clip is None:
            self._clip = _load_clip(self.clip_path)
        if self._epoch is None:
            self._epoch = time.monotonic()
        self._stopping.clear()
        server = ThreadingHTTPServer((self.host, self.port), self._handler_class())
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._serve_thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name=f"http-ts:{self.port}", daemon=True
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        """An outage: stop listening (connections are refused) and cut every client."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            clients = dict(self._clients)
        for sock in clients.values():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in [*clients, self._serve_thread]:
            if thread is not None:
                thread.join(STOP_TIMEOUT_S)
        self._serve_thread = None

    def close(self) -> None:
        """Stop and let go of the clip."""
        self.stop()
        if self._clip is not None:
            self._clip.container.close()
            self._clip = None

    # -- serving -------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urlsplit(self.path).path != owner.path:
                    self.send_error(404, f"the stream is at {owner.path}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                owner._serve_client(self.connection)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read their own output."""

        return Handler

    def _serve_client(self, sock: socket.socket) -> None:
        me = threading.current_thread()
        with self._lock:
            self._clients[me] = sock
            self.clients_served += 1
        try:
            self._stream_to(_SocketSink(sock, self._stopping))
        except _ClientGone:
            pass
        finally:
            with self._lock:
                self._clients.pop(me, None)

    def _stream_to(self, sink: _SocketSink) -> None:
        """Mux the clip, looping from the live point, into ``sink`` until it fails."""
        import av

        clip, epoch = self._clip, self._epoch
        assert clip is not None and epoch is not None
        out = av.open(
            sink, "w", format="mpegts", buffer_size=4096, container_options=_MPEGTS_OPTIONS
        )
        try:
            with self._lock:
                target = out.add_stream_from_template(clip.stream)
            for packet, wall in self._schedule(clip, epoch):
                if self._stopping.wait(max(0.0, wall - time.monotonic())):
                    raise _ClientGone("the server is stopping")
                out.mux(self._av_packet(packet, target, clip))
        except av.error.FFmpegError as exc:  # the socket failed inside PyAV's muxer
            raise _ClientGone(str(exc)) from exc
        finally:
            with contextlib.suppress(_ClientGone, av.error.FFmpegError, OSError):
                out.close()

    @staticmethod
    def _schedule(clip: _Clip, epoch: float) -> Iterator[tuple[_Packet, float]]:
        """(packet with times shifted to its lap, wall-clock time to send it), forever,
        from the keyframe at or before the live point."""
        ticks = int((time.monotonic() - epoch) / clip.time_base)
        lap, position = divmod(ticks, clip.duration)
        index = clip.keyframe_at_or_before(position)
        while True:
            for packet in clip.packets[index:]:
                shift = lap * clip.duration
                shifted = _Packet(
                    packet.data,
                    packet.pts + shift,
                    packet.dts + shift,
                    packet.duration,
                    packet.keyframe,
                )
                yield shifted, epoch + float(shifted.dts * clip.time_base)
            index, lap = 0, lap + 1

    @staticmethod
    def _av_packet(packet: _Packet, target: Any, clip: _Clip) -> Any:
        import av

        out = av.Packet(packet.data)
        out.pts, out.dts, out.duration = packet.pts, packet.dts, packet.duration
        out.time_base = clip.time_base
        out.is_keyframe = packet.keyframe
        out.stream = target
        return out


# -- RTSP ----------------------------------------------------------------------------------

_PROBE = """
import sys
try:
    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import Gst, GstRtspServer
except (ImportError, ValueError) as exc:
    print(f"PyGObject with GstRtspServer 1.0 is not importable: {exc}")
    sys.exit(0)
Gst.init(None)
missing = [name for name in sys.argv[1:] if Gst.ElementFactory.find(name) is None]
if missing:
    print("GStreamer elements missing: " + ", ".join(missing))
"""


@functools.lru_cache(maxsize=1)
def rtsp_unavailable() -> str | None:
    """Why :class:`RtspServer` cannot run here, or ``None`` when it can: the system Python
    must import GStreamer's RTSP server through PyGObject and have the elements it uses."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is absent"
    try:
        done = subprocess.run(
            [SYSTEM_PYTHON, "-c", _PROBE, *RTSP_ELEMENTS],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{SYSTEM_PYTHON} took over {_PROBE_TIMEOUT_S:g} s to load GStreamer"
    if done.returncode != 0:
        return f"{SYSTEM_PYTHON} failed probing GStreamer: {done.stderr.strip()[-300:]}"
    return done.stdout.strip() or None


class RtspServer(Managed):
    """An RTSP camera: ``rtsp://[user:password@]127.0.0.1:PORT<mount>`` serves ``clip``'s
    H.264 over RTP (TCP or UDP), looped forever at real time, every client seeing the same
    stream. With ``user`` and ``password``, basic authentication is required."""

    def __init__(
        self,
        clip: Path,
        *,
        mount: str = "/cam",
        port: int = 0,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        if (user is None) != (password is None):
            raise ValueError("give both user and password, or neither")
        self.clip_path = clip
        self.mount = mount if mount.startswith("/") else "/" + mount
        self.user = user
        self.password = password
        self._port_chosen = port == 0
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stderr: IO[bytes] | None = None
        self._started_once = False

    # -- public --------------------------------------------------------------------------

    @property
    def url_without_credentials(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    @property
    def url(self) -> str:
        """The url to open, with the credentials in it when there are any."""
        if self.user is None or self.password is None:
            return self.url_without_credentials
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"rtsp://{credentials}@127.0.0.1:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RtspServer:
        """Run the server (again, on the same port) and wait until it listens.

        Raises ``RuntimeError`` with the server's stderr when it does not get ready in
        :data:`START_TIMEOUT_S`."""
        if self.running:
            return self
        self.stop()  # let go of a server that ended by itself
        reason = rtsp_unavailable()
        if reason is not None:
            raise RuntimeError(f"the RTSP server cannot run here: {reason}")
        attempts = _PORT_ATTEMPTS if self._port_chosen and not self._started_once else 1
        for attempt in range(attempts):
            error = self._launch()
            if error is None:
                self._started_once = True
                return self
            if attempt + 1 < attempts and "cannot listen" in error:
                self.port = free_port()
                continue
            raise RuntimeError(f"the RTSP server on port {self.port} did not start: {error}")
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """An outage: end the server (SIGTERM, then SIGKILL), cutting every client."""
        process, self._process = self._process, None
        if process is not None:
            _end(process)
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT_S)
            self._reader = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def close(self) -> None:
        self.stop()

    # -- the subprocess ------------------------------------------------------------------

    def _command(self) -> list[str]:
        command = [SYSTEM_PYTHON, str(RTSP_SCRIPT), str(self.port), self.mount]
        command.append(str(self.clip_path))
        if self.user is not None and self.password is not None:
            command += [self.user, self.password]
        return command

    def _launch(self) -> str | None:
        """Start the subprocess; ``None`` once it is ready, else why it is not (it is
        stopped then)."""
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        process = subprocess.Popen(
            self._command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self._process = process
        ready = threading.Event()
        self._reader = threading.Thread(
            target=_watch_stdout, args=(process, ready), name=f"rtsp:{self.port}", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.wait(0.05):
            if process.poll() is not None or time.monotonic() > deadline:
                break
        if ready.is_set():
            return None
        state = "it exited" if process.poll() is not None else f"not ready in {START_TIMEOUT_S:g} s"
        tail = self._stderr_tail()
        self.stop()
        return f"{state}; stderr: {tail or '(empty)'}"

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-_STDERR_TAIL:]


def _watch_stdout(process: subprocess.Popen[bytes], ready: threading.Event) -> None:
    """Set ``ready`` when the server prints "ready"; then drain its stdout until it ends."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == b"ready":
            ready.set()
    process.stdout.close()


def _end(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL when that is not enough in :data:`STOP_TIMEOUT_S`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)
