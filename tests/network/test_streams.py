"""Real streaming cameras on 127.0.0.1 (``faceledger.testing.streams``) serving synthetic
camera clips (``faceledger.testing.clips``): PyAV reads them as the engine would.

Every read is bounded in time; every server is closed by the test that made it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from faceledger.errors import InputError
from faceledger.testing.clips import ClipTruth, lfw_people, loop_ts, write_camera_clip
from faceledger.testing.streams import HttpTsServer, RtspServer, rtsp_unavailable
from tests.conftest import LFW, need

SIZE = (640, 360)
FPS = 25
SECONDS = 3.8
"""The shortest clip that holds two people (2.5 s on screen, 0.5 s gap across the loop)."""

OPEN_TIMEOUT_S = 5.0
READ_LIMIT_S = 15.0
"""No read of a stream below may take longer than this."""


@dataclass
class Read:
    """What one client got: frame times (seconds) and sizes."""

    times: list[float]
    sizes: set[tuple[int, int]]

    @property
    def span(self) -> float:
        return self.times[-1] - self.times[0] if self.times else 0.0


def read_stream(url: str, seconds: float, options: dict[str, str] | None = None) -> Read:
    """Decode ``url`` until its frames span ``seconds`` of stream time (bounded)."""
    read = Read([], set())
    deadline = time.monotonic() + READ_LIMIT_S
    with av.open(url, options=options or {}, timeout=OPEN_TIMEOUT_S) as container:
        for frame in container.decode(video=0):
            if frame.time is not None:
                read.times.append(float(frame.time))
            read.sizes.add((frame.width, frame.height))
            if read.span >= seconds:
                break
            assert time.monotonic() < deadline, f"{url}: {read.span:.1f} s of stream"
    return read


def assert_loops(read: Read, truth: ClipTruth) -> None:
    """The frames cover more than one lap of the clip, in increasing time, at full size."""
    assert read.sizes == {truth.size}
    assert read.span > truth.seconds
    assert (np.diff(read.times) > 0).all(), "time went backwards"


def open_fails(url: str, options: dict[str, str] | None = None) -> float:
    """Seconds it took for opening ``url`` to fail (the test fails if it opens)."""
    started = time.monotonic()
    with pytest.raises((OSError, av.error.FFmpegError)):
        av.open(url, options=options or {}, timeout=2.0).close()
    return time.monotonic() - started


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> ClipTruth:
    images = need(LFW / "images")
    people = lfw_people(images, 2, seed=3)
    path = tmp_path_factory.mktemp("clips") / "cam.mp4"
    faces = [(p.name, p.photos[0]) for p in people]
    return write_camera_clip(path, faces, size=SIZE, fps=FPS, seconds=SECONDS, seed=3)


@pytest.fixture
def http(clip: ClipTruth) -> Iterator[HttpTsServer]:
    with HttpTsServer(clip.path) as server:
        yield server


@pytest.fixture
def rtsp_ok() -> None:
    reason = rtsp_unavailable()
    if reason is not None:
        pytest.skip(f"no RTSP server here: {reason}")


# -- clips ---------------------------------------------------------------------------------


def test_lfw_people_are_distinct_deterministic_and_have_enough_photos() -> None:
    images = need(LFW / "images")
    first = lfw_people(images, 5, min_photos=3, seed=7)
    assert first == lfw_people(images, 5, min_photos=3, seed=7)
    assert len({p.name for p in first}) == 5
    assert all(len(p.photos) >= 3 for p in first)
    assert [p.name for p in first] != [p.name for p in lfw_people(images, 5, seed=8)]


def test_lfw_people_refuses_a_missing_folder_or_too_few_people(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder"):
        lfw_people(tmp_path / "nowhere", 1)
    (tmp_path / "Only_One").mkdir()
    (tmp_path / "Only_One" / "Only_One_0001.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="only 0 people"):
        lfw_people(tmp_path, 1, min_photos=2)


def test_the_clip_matches_its_truth(clip: ClipTruth, tmp_path: Path) -> None:
    width, height = clip.size
    assert clip.frames == round(SECONDS * FPS)
    assert len({a.label for a in clip.appearances}) == 2
    for a in clip.appearances:
        assert a.t_out - a.t_in >= 2.5
        x0, y0, x1, y1 = a.box_at_middle
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    # the gap with nobody on screen across the loop's seam
    assert (
        min(a.t_in for a in clip.appearances) + SECONDS - max(a.t_out for a in clip.appearances)
        >= 0.5
    )
    with av.open(str(clip.path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        keyframes = [p.pts for p in container.demux(stream) if p.is_keyframe and p.pts is not None]
    assert len(keyframes) == int(np.ceil(SECONDS))  # one a second
    with av.open(str(clip.path)) as container:
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    assert len(frames) == clip.frames
    empty = frames[0]  # nobody is on screen at the start
    for a in clip.appearances:
        middle = round((a.t_in + a.t_out) / 2 * FPS - 0.5)
        x0, y0, x1, y1 = a.box_at_middle
        diff = np.abs(frames[middle][y0:y1, x0:x1].astype(int) - empty[y0:y1, x0:x1])
        assert diff.mean() > 15, f"no face where the truth puts {a.label}"
    ts = loop_ts(clip.path, tmp_path / "cam.ts")
    with av.open(str(ts)) as container:
        assert sum(1 for _ in container.decode(video=0)) == clip.frames


def test_a_clip_too_short_for_its_people_is_refused(tmp_path: Path) -> None:
    faces = [("a", Path("a.jpg")), ("b", Path("b.jpg")), ("c", Path("c.jpg"))]
    with pytest.raises(ValueError, match="too short"):
        write_camera_clip(tmp_path / "x.mp4", faces, seconds=5.0)


# -- HTTP MPEG-TS --------------------------------------------------------------------------


def test_http_stream_loops_past_the_clip_with_increasing_time(
    http: HttpTsServer, clip: ClipTruth
) -> None:
    read = read_stream(http.url, clip.seconds + 0.8)
    assert_loops(read, clip)
    assert http.clients_served == 1


def test_http_serves_two_clients_at_once(http: HttpTsServer, clip: ClipTruth) -> None:
    reads: list[Read] = []
    peak = 0

    def client() -> None:
        reads.append(read_stream(http.url, 2.0))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + READ_LIMIT_S
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        peak = max(peak, http.active_clients)
        time.sleep(0.05)
    for thread in threads:
        thread.join(1.0)
    assert len(reads) == 2 and all(r.span >= 2.0 and r.sizes == {clip.size} for r in reads)
    assert peak == 2 and http.clients_served == 2


def test_http_outage_refuses_then_comes_back_on_the_same_url(
    http: HttpTsServer, clip: ClipTruth
) -> None:
    url = http.url
    cut: list[BaseException | None] = []

    def watcher() -> None:  # a client streaming when the camera goes away
        try:
            read_stream(url, 60.0)
            cut.append(None)
        except (OSError, av.error.FFmpegError, AssertionError) as exc:
            cut.append(exc)

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    time.sleep(1.5)
    http.stop()
    thread.join(OPEN_TIMEOUT_S + 2)
    assert not thread.is_alive(), "a client was not cut by the outage"
    assert http.active_clients == 0
    assert open_fails(url) < 2.5
    http.start()
    assert http.url == url
    assert read_stream(url, 1.0).sizes == {clip.size}


def test_http_answers_404_elsewhere(http: HttpTsServer) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(http.url.replace("/stream.ts", "/other"), timeout=5)
    assert caught.value.code == 404


# -- RTSP ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("rtsp_ok")
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_stream_loops_past_the_clip(clip: ClipTruth, transport: str) -> None:
    with RtspServer(clip.path) as server:
        read = read_stream(server.url, clip.seconds + 0.8, {"rtsp_transport": transport})
    assert_loops(read, clip)


@pytest.mark.usefixtures("rtsp_ok")
def test_rtsp_with_credentials_refuses_anyone_without_them(clip: ClipTruth) -> None:
    with RtspServer(clip.path, mount="door", user="cam", password="p@ss word") as server:
        assert server.url.startswith("rtsp://cam:p%40ss%20word@127.0.0.1:")
        assert server.url_without_credentials.endswith("/door")
        tcp = {"rtsp_transport": "tcp"}
        assert read_stream(server.url, 1.0, tcp).sizes == {clip.size}
        open_fails(server.url_without_credentials, tcp)
        open_fails(server.url.replace("p%40ss", "wrong"), tcp)


@pytest.mark.usefixtures("rtsp_ok")
def test_rtsp_outage_refuses_then_comes_back_on_the_same_url(clip: ClipTruth) -> None:
    tcp = {"rtsp_transport": "tcp"}
    with RtspServer(clip.path) as server:
        url = server.url
        assert read_stream(url, 0.5, tcp).times
        server.stop()
        assert not server.running
        assert open_fails(url, tcp) < 2.5
        server.start()
        assert server.url == url
        assert read_stream(url, 1.0, tcp).sizes == {clip.size}


@pytest.mark.usefixtures("rtsp_ok")
def test_rtsp_start_failure_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    server = RtspServer(broken)
    with pytest.raises(RuntimeError, match="did not start") as caught:
        server.start()
    assert "stderr" in str(caught.value)
    assert not server.running
    server.close()
