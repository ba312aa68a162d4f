"""``faceledger bench cameras``: how many live cameras one node keeps up with, against as
many separate ``faceledger watch`` processes, in the same run.

Each camera is a real HTTP MPEG-TS server (:class:`faceledger.testing.streams.HttpTsServer`)
looping a synthetic 720p clip of LFW people with known identities: on each clip two
people are enrolled and on the cameras' watch list, one is a stranger, and (on the first
clip) one is enrolled but on no list of these cameras, so must stay ``unknown`` there.
The node runs as its own process (``faceledger node``), then the N ``watch`` processes
(each detecting on every (stream fps / detect fps)-th frame, downscaled to the same
side), one after the other on the same streams and gallery.

A camera is **live** when, over the measured window (after models are loaded and every
camera streams), the 95th percentile of its lag (frame arrival to its processing done)
is under 1 s and under 5% of its detection ticks were dropped. CPU is read from
``/proc`` over the same window.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faceledger.config import Config
from faceledger.errors import ConfigError
from faceledger.gallery.cameras import CameraSettings
from faceledger.operations import Acting, Operations
from faceledger.testing.clips import ClipTruth, Person, lfw_people, write_camera_clip
from faceledger.testing.streams import HttpTsServer

WATCHLIST = "bench-cameras"
CLIPS = 4
"""Distinct clips; camera i loops clip i mod CLIPS."""
FPS = 25
WARMUP_S = 10.0
"""Health windows are 10 s: the measured window starts this long after every camera
streams, so that no window reaches back into start-up."""
LIVE_LAG_S = 1.0
LIVE_DROPPED_PCT = 5.0


@dataclass(frozen=True)
class Scene:
    """One clip, whom it shows, and whom a camera may name on it."""

    truth: ClipTruth
    allowed: frozenset[str]
    """People on the cameras' watch list (the only right names)."""
    shown: frozenset[str]


@dataclass
class ModeResult:
    """N cameras under one way of running them (the node, or N watch processes)."""

    mode: str
    cameras: int
    live: bool = False
    live_cameras: int = 0
    lag_p95_s: float | None = None
    dropped_ticks_pct: float = 0.0
    cpu_per_camera: float = 0.0
    """Cores (CPU seconds per second) per camera over the measured window."""
    cpu_total: float = 0.0
    processed_fps_per_camera: float = 0.0
    events: int = 0
    named_rightly: int = 0
    named_wrongly: int = 0
    """Named someone the clip does not show."""
    named_off_list: int = 0
    """Named someone the clip shows who is enrolled but on none of the camera's lists
    (purpose limitation: a node leaves them unknown; watch matches the whole gallery)."""
    unknown: int = 0
    too_poor: int = 0
    wrong: list[str] = field(default_factory=list)
    per_camera: dict[str, dict[str, Any]] = field(default_factory=dict)
    window_s: float = 0.0


@dataclass
class CamerasResult:
    runs: list[dict[str, Any]]
    detect_fps: float
    seconds: float
    height: int

    def as_json(self) -> dict[str, Any]:
        last = self.runs[-1]
        live_node = [r["cameras"] for r in self.runs if r["live"]]
        live_watch = [r["cameras"] for r in self.runs if r.get("baseline_live")]
        return {
            **{k: last[k] for k in ("cameras", "live", "lag_p95_s", "dropped_ticks_pct")},
            "cpu_per_camera": last["cpu_per_camera"],
            "baseline_live": last.get("baseline_live"),
            "largest_live": max(live_node, default=0),
            "baseline_largest_live": max(live_watch, default=0),
            "detect_fps": self.detect_fps,
            "seconds": self.seconds,
            "stream": f"{self.height}p {FPS} fps H.264 over HTTP MPEG-TS",
            "runs": self.runs,
        }


Progress = Callable[[str], None]


def run_cameras_bench(
    config: Config,
    counts: Sequence[int],
    *,
    lfw_images: Path,
    detect_fps: float = 5.0,
    seconds: float = 30.0,
    height: int = 720,
    baseline: bool = True,
    progress: Progress = print,
) -> CamerasResult:
    """Run the node (and the N watch processes) for each count in ``counts``."""
    if not lfw_images.is_dir():
        raise ConfigError(f"{lfw_images}: no LFW photos there (the clips are made of them)")
    width = {720: 1280, 360: 640}.get(height)
    if width is None:
        raise ConfigError(f"--height {height}: 720 or 360")
    with tempfile.TemporaryDirectory(prefix="faceledger-bench-cameras-") as tmp:
        work = Path(tmp)
        progress(f"writing {CLIPS} clips ({width}x{height}, {FPS} fps) of LFW people")
        scenes, people = _scenes(work, lfw_images, (width, height))
        runs = []
        for n in counts:
            db = work / f"gallery-{n}.db"
            with _servers(scenes, n) as servers:
                _gallery(
                    config,
                    db,
                    scenes=scenes,
                    people=people,
                    urls=[s.url for s in servers],
                    detect_fps=detect_fps,
                )
                progress(f"{n} cameras: one node for {seconds:g} s")
                node = _run_node(config, db, scenes=scenes, n=n, seconds=seconds, work=work)
                row: dict[str, Any] = asdict(node)
                progress(_line(node))
                if baseline:
                    progress(f"{n} cameras: {n} separate watch processes for {seconds:g} s")
                    watch = _run_watch(
                        config, db, servers=servers, scenes=scenes, n=n, detect_fps=detect_fps,
                        seconds=seconds, work=work,
                    )  # fmt: skip
                    progress(_line(watch))
                    row["baseline_live"] = watch.live
                    row["baseline"] = asdict(watch)
            runs.append(row)
        return CamerasResult(runs, detect_fps, seconds, height)


def _line(r: ModeResult) -> str:
    lag = "-" if r.lag_p95_s is None else f"{r.lag_p95_s:.2f}"
    return (
        f"  {r.mode}: live {r.live} ({r.live_cameras}/{r.cameras} cameras), lag p95 {lag} s, "
        f"dropped {r.dropped_ticks_pct:.1f}% of ticks, {r.cpu_per_camera:.3f} cores per "
        f"camera; named rightly {r.named_rightly}, wrongly {r.named_wrongly}, "
        f"off-list {r.named_off_list}, unknown {r.unknown}"
    )


# ---- the scene ------------------------------------------------------------------------


def _scenes(
    work: Path, lfw_images: Path, size: tuple[int, int]
) -> tuple[list[Scene], list[Person]]:
    people = lfw_people(lfw_images, CLIPS * 3 + 1, min_photos=2, seed=11)
    scenes = []
    for i in range(CLIPS):
        group = people[3 * i : 3 * i + 3]
        faces = [(p.name, p.photos[1]) for p in group]  # enrolled from photo 0, seen on 1
        truth = write_camera_clip(
            work / f"clip-{i}.mp4", faces, size=size, fps=FPS, seconds=12.0, seed=i,
            face_side=max(96, size[1] // 5),
        )  # fmt: skip
        allowed = frozenset(p.name for p in group[:2])
        scenes.append(Scene(truth, allowed, frozenset(p.name for p in group)))
    return scenes, people


def _gallery(
    config: Config,
    db: Path,
    *,
    scenes: Sequence[Scene],
    people: Sequence[Person],
    urls: Sequence[str],
    detect_fps: float,
) -> None:
    """Enroll the allowed people (on the watch list) and one person on no list; add a
    camera for each server."""
    cfg = config.model_copy(update={"db": str(db)})
    me = Acting.os_user("bench cameras")
    off_list = people[2]  # shown on clip 0, enrolled, on no list of these cameras
    with Operations(cfg) as ops:
        ops.create_watchlist(me, WATCHLIST)
        for scene in scenes:
            for person in people:
                if person.name in scene.allowed:
                    ops.enroll(me, person.name, [person.photos[0]], "bench", watchlists=[WATCHLIST])
        ops.enroll(me, off_list.name, [off_list.photos[0]], "bench")
        for i, url in enumerate(urls):
            ops.add_camera(
                me,
                CameraSettings(
                    f"cam-{i + 1}", url, "bench: live capacity",
                    "benchmark, synthetic clips of LFW", (WATCHLIST,), detect_fps=detect_fps,
                ),
            )  # fmt: skip


@contextlib.contextmanager
def _servers(scenes: Sequence[Scene], n: int) -> Iterator[list[HttpTsServer]]:
    servers = [HttpTsServer(scenes[i % len(scenes)].truth.path) for i in range(n)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.close()


# ---- running and measuring ---------------------------------------------------------------


def _env(config: Config) -> dict[str, str]:
    env = dict(os.environ)
    env["FACELEDGER_PROFILE"] = config.profile
    env["FACELEDGER_DETECT_MAX_SIDE"] = str(config.node.detect_max_side)  # watch: same side
    env["FACELEDGER_OFFLINE"] = "1" if config.offline else env.get("FACELEDGER_OFFLINE", "0")
    if config.model_mirror is not None:
        env["FACELEDGER_MODEL_MIRROR"] = str(config.model_mirror)
    env["FACELEDGER_MODEL_CACHE"] = str(config.model_cache)
    env["COLUMNS"] = "10000"  # one health line per line: rich wraps at the width
    return env


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Lines:
    """A child's stderr, read on a thread: JSON health lines (anything from the first '{')."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        import threading

        self.lines: list[tuple[float, dict[str, Any]]] = []
        self.text: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.text.append(line)
            at = line.find("{")
            if at < 0:
                continue
            with contextlib.suppress(ValueError):
                self.lines.append((time.monotonic(), json.loads(line[at:].strip())))

    def join(self) -> None:
        self._thread.join(5)


def _stop(processes: Sequence[subprocess.Popen[str]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _wait_streaming(
    feeds: Sequence[tuple[str, _Lines]], processes: Sequence[subprocess.Popen[str]]
) -> None:
    """Until every camera has reported live (bounded: 120 s). ``feeds``: each camera with
    the log its health lines are in (a node's lines name their camera; watch's do not)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        live = {
            name
            for name, log in feeds
            if any(h.get("state") == "live" and h.get("camera", name) == name for _, h in log.lines)
        }
        if len(live) == len(feeds):
            return
        ended = [p for p in processes if p.poll() is not None]
        if ended:
            text = "".join(feeds[0][1].text[-20:])
            raise ConfigError(f"a camera process ended (exit {ended[0].returncode}):\n{text}")
        time.sleep(0.2)
    raise ConfigError("the cameras did not all stream within 120 s")


def _run_node(
    config: Config, db: Path, *, scenes: Sequence[Scene], n: int, seconds: float, work: Path
) -> ModeResult:
    events = work / f"node-{n}.jsonl"
    command = [
        sys.executable, "-m", "faceledger", "node", "--db", str(db), "--name", "bench-node",
        "--health-every", "2", "--jsonl", str(events),
    ]  # fmt: skip
    names = [f"cam-{i + 1}" for i in range(n)]
    process = subprocess.Popen(
        command, env=_env(config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    log = _Lines(process)
    try:
        _wait_streaming([(name, log) for name in names], [process])
        time.sleep(WARMUP_S)
        t0, cpu0 = time.monotonic(), _cpu(process.pid)
        time.sleep(seconds)
        t1, cpu1 = time.monotonic(), _cpu(process.pid)
    finally:
        _stop([process])
        log.join()
    timed = {
        name: [(t, h) for t, h in log.lines if h.get("camera") == name and t0 <= t <= t1 + 0.5]
        for name in names
    }
    result = ModeResult("node", n, window_s=round(t1 - t0, 1))
    _measure(result, timed, "ticks")
    result.cpu_total = round((cpu1 - cpu0) / (t1 - t0), 3)
    result.cpu_per_camera = round(result.cpu_total / n, 3)
    _score(result, [events], scenes, names)
    return result


def _run_watch(
    config: Config,
    db: Path,
    *,
    servers: Sequence[HttpTsServer],
    scenes: Sequence[Scene],
    n: int,
    detect_fps: float,
    seconds: float,
    work: Path,
) -> ModeResult:
    every = max(1, round(FPS / detect_fps))
    names = [f"cam-{i + 1}" for i in range(n)]
    files = [work / f"watch-{n}-{i + 1}.jsonl" for i in range(n)]
    processes = []
    for name, server, file in zip(names, servers, files, strict=True):
        command = [
            sys.executable, "-m", "faceledger", "watch", server.url, "--name", name,
            "--db", str(db), "--every", str(every), "--health-every", "2",
            "--jsonl", str(file), "--purpose", "bench cameras: baseline",
        ]  # fmt: skip
        processes.append(
            subprocess.Popen(
                command,
                env=_env(config),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    logs = [_Lines(p) for p in processes]
    try:
        _wait_streaming(list(zip(names, logs, strict=True)), processes)
        time.sleep(WARMUP_S)
        t0, cpu0 = time.monotonic(), sum(_cpu(p.pid) for p in processes)
        time.sleep(seconds)
        t1, cpu1 = time.monotonic(), sum(_cpu(p.pid) for p in processes)
    finally:
        _stop(processes)
        for log in logs:
            log.join()
    timed = {
        name: [(t, h) for t, h in log.lines if t0 <= t <= t1 + 0.5]
        for name, log in zip(names, logs, strict=True)
    }
    result = ModeResult("watch", n, window_s=round(t1 - t0, 1))
    _measure(result, timed, "frames")
    result.cpu_total = round((cpu1 - cpu0) / (t1 - t0), 3)
    result.cpu_per_camera = round(result.cpu_total / n, 3)
    _score(result, files, scenes, names)
    return result


def _measure(
    result: ModeResult, timed: dict[str, list[tuple[float, dict[str, Any]]]], ticks_key: str
) -> None:
    """Lag (the worst 10-s window's p95) and dropped ticks over the window, per camera."""
    lags: list[float] = []
    dropped_all = ticks_all = 0
    processed_fps = []
    for name, lines in timed.items():
        if len(lines) < 2:
            result.per_camera[name] = {"live": False, "why": "no health in the window"}
            continue
        first, last = lines[0][1], lines[-1][1]
        ticks = int(last[ticks_key]) - int(first[ticks_key])
        dropped = int(last["dropped"]) - int(first["dropped"])
        pct = 100.0 * dropped / ticks if ticks > 0 else 100.0
        worst = max(
            (h["lag_p95_s"] for _, h in lines if h.get("lag_p95_s") is not None), default=None
        )
        span = lines[-1][0] - lines[0][0]
        done = int(last["processed"]) - int(first["processed"])
        fps = done / span if span > 0 else 0.0
        live = worst is not None and worst < LIVE_LAG_S and pct < LIVE_DROPPED_PCT
        result.per_camera[name] = {
            "live": live, "lag_p95_s": worst, "dropped_ticks_pct": round(pct, 2),
            "processed_fps": round(fps, 2),
        }  # fmt: skip
        result.live_cameras += int(live)
        if worst is not None:
            lags.append(float(worst))
        dropped_all += dropped
        ticks_all += max(ticks, 0)
        processed_fps.append(fps)
    result.live = result.live_cameras == result.cameras
    result.lag_p95_s = round(max(lags), 3) if lags else None
    result.dropped_ticks_pct = round(100.0 * dropped_all / ticks_all, 2) if ticks_all else 100.0
    if processed_fps:
        result.processed_fps_per_camera = round(sum(processed_fps) / len(processed_fps), 2)


def _score(
    result: ModeResult, files: Sequence[Path], scenes: Sequence[Scene], names: Sequence[str]
) -> None:
    """Who was named, against whom each camera's clip shows and may name."""
    scene_of = {name: scenes[i % len(scenes)] for i, name in enumerate(names)}
    for file in files:
        if not file.exists():
            continue
        for line in file.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                _count(result, event, scene_of)


def _count(result: ModeResult, event: dict[str, Any], scene_of: dict[str, Scene]) -> None:
    result.events += 1
    scene = scene_of.get(str(event.get("camera")))
    subject = event.get("subject")
    if event.get("decision") == "insufficient_quality":
        result.too_poor += 1
    elif subject is None:
        result.unknown += 1
    elif scene is not None and subject in scene.allowed:
        result.named_rightly += 1
    elif scene is not None and subject in scene.shown:
        result.named_off_list += 1
    else:
        result.named_wrongly += 1
        result.wrong.append(f"{event.get('camera')}: {subject}")
