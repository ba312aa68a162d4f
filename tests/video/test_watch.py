"""Live streams: a local HTTP MPEG-TS "camera" on 127.0.0.1 that goes away and comes back.

The stream is the real clip remuxed to MPEG-TS and paced at real time. RTSP goes through
the same FFmpeg demuxer and reconnect logic; an RTSP server is not available on PyPI, so
the live tests use HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from faceledger.config import load_config
from faceledger.errors import InputError
from faceledger.operations import Acting, Operations
from faceledger.video.source import LiveSource
from tests.conftest import standin_env


def remux_to_ts(src: Path, dst: Path) -> Path:
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mpegts") as out:
        stream = inp.streams.video[0]
        target = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = target
            out.mux(packet)
    return dst


class Camera:
    """Serves one MPEG-TS file at about real time to every client, until stopped."""

    def __init__(self, payload: bytes, seconds: float, port: int = 0) -> None:
        self.payload = payload
        self.rate = len(payload) / seconds
        self.port = port
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.end_headers()
                chunk = 16_384
                try:
                    for i in range(0, len(camera.payload), chunk):
                        self.wfile.write(camera.payload[i : i + chunk])
                        time.sleep(chunk / camera.rate)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cam1.ts"


class Hook:
    """A webhook receiver on 127.0.0.1: keeps every POSTed event, answers 204."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.events.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def camera(smoke: Path, tmp_path: Path) -> Iterator[Camera]:
    ts = remux_to_ts(smoke / "video" / "short_hamilton_clip.mp4", tmp_path / "cam.ts")
    cam = Camera(ts.read_bytes(), seconds=9.2)
    cam.start()
    yield cam
    cam.stop()


def test_live_source_reconnects_after_the_camera_goes_away(camera: Camera) -> None:
    source = LiveSource(camera.url, timeout=3.0, backoff=(0.2, 1.0), queue_size=8)
    seen = 0
    restarted = False
    start = time.monotonic()
    during_outage: list[dict[str, object]] = []
    for frame in source.frames(heartbeat=True):
        if frame is None:  # no frame now: the health can still be reported
            during_outage.append(source.health.as_dict())
            if not restarted and len(during_outage) >= 4:
                camera.start()  # ... and comes back on the same port
                restarted = True
            continue
        seen += 1
        source.health.processed(source.lag(frame))
        assert frame.image.shape == (360, 640, 3)
        if seen == 30 and not restarted:
            camera.stop()  # the camera goes away mid-stream ...
        if restarted and source.health.reconnects >= 1 and seen > 60:
            source.stop()
        assert time.monotonic() - start < 60, "the stream did not come back"
    assert source.health.reconnects >= 1
    assert seen > 60
    # through the outage the health said so, with its time; after it, the error is gone
    assert any(h["state"] == "reconnecting" and h["last_error"] for h in during_outage)
    assert all(str(h["at"]).endswith("+00:00") for h in during_outage)
    after = source.health.as_dict()
    assert after["state"] == "live" and after["last_error"] is None
    assert after["lag_p95_s"] is not None and after["lag_p95_s"] < 5


def test_a_stream_that_never_answers_gives_up_with_a_named_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/none.ts"
    source = LiveSource(url, timeout=1.0, backoff=(0.1, 0.2), give_up_after=1.5)
    with pytest.raises(InputError) as info:
        list(source.frames())
    assert url in str(info.value)
    assert source.health.reconnects >= 1


def free_port() -> int:
    with socket.socket() as s:  # a port nobody listens on (once this socket is closed)
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed_give_up(source: LiveSource) -> tuple[float, InputError]:
    started = time.monotonic()
    with pytest.raises(InputError) as info:
        list(source.frames())
    return time.monotonic() - started, info.value


def test_a_refused_stream_gives_up_on_time_with_the_default_back_off() -> None:
    """The back-off (0.5, 1, 2, 4 s ...) does not stretch the give-up time: with 4 s the
    old clock, read only between waits, gave up after 7.5 s."""
    url = f"http://127.0.0.1:{free_port()}/none.ts"
    elapsed, error = timed_give_up(LiveSource(url, give_up_after=4.0))
    assert 4.0 <= elapsed < 4.0 + 1.5, elapsed
    assert url in str(error) and "no frames for 4." in str(error)


def test_a_stream_that_accepts_but_never_answers_gives_up_on_time() -> None:
    """A server that takes the connection and never says a word: the reader is blocked in
    opening it (10 s timeout), and the caller still gets its error on time."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # the kernel accepts connections; nobody reads or answers
        url = f"http://127.0.0.1:{server.getsockname()[1]}/cam.ts"
        elapsed, error = timed_give_up(LiveSource(url, give_up_after=2.0))
    assert 2.0 <= elapsed < 2.0 + 1.5, elapsed
    assert url in str(error)


def test_watch_gives_up_after_the_given_time_and_takes_the_old_json_spelling(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from faceledger.cli.main import app

    url = f"http://127.0.0.1:{free_port()}/none.ts"
    events = tmp_path / "events.jsonl"
    result = CliRunner().invoke(
        app,
        ["watch", url, "--name", "door-9", "--give-up-after", "1.5", "--json", str(events),
         "--db", str(tmp_path / "g.db")],
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr
    assert "note: watch --json FILE is deprecated; use --jsonl FILE" in result.stderr
    assert url in result.stderr and "no frames for 1." in result.stderr


def test_watch_command_survives_an_outage_and_flushes_every_event_on_sigterm(
    camera: Camera, smoke: Path, tmp_path: Path
) -> None:
    db = tmp_path / "g.db"
    env = {**os.environ, **standin_env(), "FACELEDGER_DB": str(db), "FACELEDGER_PROFILE": "fast"}
    with Operations(load_config(db=db, profile="fast")) as ops:
        photo = smoke / "video" / "lin-manuel-miranda.png"
        report, _ = ops.enroll(Acting.os_user(), "lin-manuel-miranda", [photo], "test")
    assert report.enrolled, report.failures
    events_file = tmp_path / "events.jsonl"
    hook = Hook()
    watch = subprocess.Popen(
        [sys.executable, "-m", "faceledger", "watch", camera.url, "--name", "door-1",
         "--jsonl", str(events_file), "--decide-after", "1.0", "--every", "2",
         "--webhook", hook.url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(12)  # one pass of the clip (9 s) and a reconnect
        camera.stop()
        time.sleep(2)
        camera.start()
        time.sleep(6)
    finally:
        watch.send_signal(signal.SIGTERM)
        stdout, stderr = watch.communicate(timeout=60)
        hook.stop()
    assert watch.returncode == 0, stderr
    health = json.loads(stderr.rsplit("stopped; ", 1)[1].splitlines()[0])
    assert health["reconnects"] >= 1 and health["frames"] > 100

    printed = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    written = [json.loads(line) for line in events_file.read_text().splitlines()]
    with Operations(load_config(db=db, profile="fast"), create=False) as ops:
        stored = ops.list_events(limit=1000)
        entries = {
            a: ops.audit_entries(action=a) for a in ("watch.start", "watch.track", "watch.end")
        }
        assert ops.audit_verify().ok
    ids = [e["id"] for e in written]
    assert len(ids) == len(set(ids))  # no event twice
    assert sorted(ids) == sorted(e.id for e in stored) == sorted(e["id"] for e in printed)
    assert sorted({e["id"] for e in hook.events}) == sorted(ids)  # the webhook got them all
    assert all(e["camera"] == "door-1" for e in written)
    assert {e["subject"] for e in written} - {None} <= {"lin-manuel-miranda"}
    assert any(e["subject"] == "lin-manuel-miranda" for e in written)

    # on the record: the stream's start, each event's entry (written with it), the stop
    assert len(entries["watch.start"]) == len(entries["watch.end"]) == 1
    start, end = entries["watch.start"][0], entries["watch.end"][0]
    assert start.result == {"source": f"door-1: {camera.url}", "camera": "door-1"}
    tracks = entries["watch.track"]
    assert sorted(e.result["event"] for e in tracks) == sorted(ids)
    assert all(e.result["camera"] == "door-1" for e in tracks)
    assert start.seq < min(e.seq for e in tracks) and max(e.seq for e in tracks) < end.seq
    assert end.result["tracks"] == len(ids) and "error" not in end.result
    assert end.result["events"] == [min(ids), max(ids)]
    print(f"watch: {len(ids)} events, {len(tracks)} watch.track entries, health {health}")
