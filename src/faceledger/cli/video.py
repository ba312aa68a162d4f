"""``faceledger scan`` (video files) and ``faceledger watch`` (live streams)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from faceledger.cli import render
from faceledger.cli.admin import Workers
from faceledger.cli.common import (
    Case,
    Db,
    Detector,
    Embedder,
    MinQuality,
    Offline,
    Profile,
    Purpose,
    Strictness,
    app,
    handle_errors,
    me,
    open_ops,
    stop_on_signals,
)
from faceledger.cli.render import err, out
from faceledger.config import Config, parse_duration
from faceledger.engine import Engine
from faceledger.errors import ConfigError, InputError
from faceledger.events import Dispatcher, JsonlSink, Sink, StdoutSink
from faceledger.operations import Acting, Operations
from faceledger.text import shown
from faceledger.types import Match
from faceledger.video.scan import TrackDecision, VideoScanner
from faceledger.video.source import LiveSource, file_frames, probe

Every = Annotated[
    int,
    typer.Option(
        "--every", min=1, help="detect on every N-th frame; the tracker carries boxes between"
    ),
]
KeepUnknown = Annotated[
    str | None,
    typer.Option(
        "--keep-unknown",
        help="also keep unknown faces' best crop for this long (e.g. 30m, 12h, 7d); "
        "by default strangers' faces are not stored",
    ),
]
Best = Annotated[
    int, typer.Option("--best", min=1, max=50, help="embed this many best frames per track")
]
JsonOld = Annotated[Path | None, typer.Option("--json", hidden=True, help="old: --jsonl")]
"""scan's first spelling of --jsonl FILE: still taken (both commands), with a note."""


def jsonl_target(jsonl: Path | None, old: Path | None, command: str) -> Path | None:
    """--jsonl FILE, or the deprecated spelling --json FILE (with a note on stderr)."""
    if old is None:
        return jsonl
    if jsonl is not None:
        raise ConfigError(f"{command}: give --jsonl FILE only (--json FILE is its old spelling)")
    err.print(f"note: {command} --json FILE is deprecated; use --jsonl FILE", markup=False)
    return old


def parse_keep(text: str | None, config: Config) -> timedelta | None:
    """--keep-unknown, or the configured ``keep_unknown`` (default: None, not stored)."""
    return parse_duration(text, "--keep-unknown") or config.keep_unknown


def fmt_t(seconds: float) -> str:
    minutes, s = divmod(seconds, 60)
    return f"{int(minutes):d}:{s:05.2f}"


def tracks_table(decisions: list[TrackDecision], title: str) -> Table:
    table = Table(title=title)
    for col in ("track", "subject", "from", "to", "frames", "best score", "threshold"):
        if col == "subject":
            table.add_column(col, overflow="fold", min_width=12)
        else:
            table.add_column(col, justify="right", no_wrap=True)
    for d in sorted(decisions, key=lambda d: (d.first_t, d.track_id)):
        table.add_row(
            str(d.track_id),
            _who(d.match),
            fmt_t(d.first_t),
            fmt_t(d.last_t),
            str(d.frames),
            "-" if d.match.score < -0.5 else f"{d.match.score:.3f}",
            f"{d.match.threshold.value:.3f}",
        )
    return table


def _who(match: Match) -> str:
    if match.decision == "insufficient_quality":
        return f"[magenta]too poor to decide[/]: {shown(match.reason or '')}"
    return shown(match.subject) if match.subject else "[yellow]unknown[/]"


@contextmanager
def jsonl_writer(path: Path | None) -> Iterator[IO[str] | None]:
    """Events as JSON lines into ``path`` ('-' = stdout), flushed one by one."""
    if path is None:
        yield None
    elif str(path) == "-":
        yield sys.stdout
    else:
        try:
            handle = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write events ({exc.strerror})") from None
        with handle:
            yield handle


def write_event(handle: IO[str] | None, event: dict[str, Any]) -> None:
    if handle is not None:
        handle.write(json.dumps(event, ensure_ascii=False) + "\n")
        handle.flush()


@app.command()
@handle_errors
def scan(
    videos: Annotated[list[Path], typer.Argument(help="video files")],
    every: Every = 1,
    best: Best = 5,
    jsonl: Annotated[
        Path | None,
        typer.Option(
            "--jsonl", help="append one event per track to this JSON lines file ('-': stdout)"
        ),
    ] = None,
    json_old: JsonOld = None,
    keep_unknown: KeepUnknown = None,
    workers: Workers = None,
    purpose: Purpose = None,
    case: Case = None,
    strictness: Strictness = None,
    profile: Profile = None,
    embedder: Embedder = None,
    detector: Detector = None,
    db: Db = None,
    min_quality: MinQuality = None,
    offline: Offline = False,
) -> None:
    """Follow every face through a video and decide once per track: who, or unknown.

    Each track (a person's face from appearing to leaving) is identified from its best
    few frames, not frame by frame. Ends with a table: subject, time range, frames, best
    score, threshold. Every event is stored in the gallery database (with the best crop for
    known subjects only, unless --keep-unknown). Several files are scanned at once, one
    per worker (--workers), and reported in the order given. Example:
    faceledger scan clip.mp4 --profile fast --jsonl events.jsonl
    """
    json_file = jsonl_target(jsonl, json_old, "scan")
    failures: list[tuple[str, str]] = []
    acting = me(purpose, case)
    with (
        open_ops(
            db,
            create=True,
            profile=profile,
            strictness=strictness,
            offline=offline,
            embedder=embedder,
            detector=detector,
            min_quality=min_quality,
        ) as ops,
        jsonl_writer(json_file) as handle,
    ):
        keep = parse_keep(keep_unknown, ops.config)
        ops.load()
        ops.purge_expired(acting)
        shown_here = json_file is None or str(json_file) != "-"
        if len(videos) > 1 and workers != 1:  # files at once, reported in the order given
            failures += scan_parallel(
                ops, acting, videos, every, best, keep, workers, handle, shown_here
            )
        else:
            for video in videos:
                decisions: list[TrackDecision] = []
                started = time.perf_counter()
                try:
                    # The start entry, each track's event with its entry as it is decided,
                    # the end entry (with the error, if one ended the file early).
                    with ops.video_run(acting, "scan", video, keep_unknown=keep) as run:
                        decisions = run.decisions
                        for decision in scan_one(ops.engine, video, every, best):
                            event_id = run.record(decision)
                            stored = run.decisions[-1]  # as stored (see VideoRun.record)
                            write_event(handle, {"id": event_id, **stored.as_json()})
                except InputError as exc:
                    failures.append((str(video), exc.reason))
                seconds = time.perf_counter() - started
                if shown_here:
                    title = f"{video}: {len(decisions)} tracks"
                    out.print(tracks_table(decisions, title))
                    err.print(f"[dim]{shown(str(video))}: {seconds:.1f} s[/]")
        if shown_here:
            out.print(render.threshold_line(ops.engine.threshold))
    render.failures_block(failures)
    raise typer.Exit(1 if failures else 0)


def scan_parallel(
    ops: Operations,
    acting: Acting,
    videos: list[Path],
    every: int,
    best: int,
    keep: timedelta | None,
    workers: int | None,
    handle: IO[str] | None,
    shown_here: bool,
) -> list[tuple[str, str]]:
    """Several files scanned at once (one per worker), each file's events written and
    its table shown once its turn comes in the order given; returns the failures."""
    failures: list[tuple[str, str]] = []
    for scanned in ops.scan_files(
        acting, videos, every=every, best=best, keep_unknown=keep, workers=workers
    ):
        run = scanned.run
        decisions = run.decisions if run is not None else []
        event_ids = run.event_ids if run is not None else []
        for event_id, decision in zip(event_ids, decisions, strict=True):
            write_event(handle, {"id": event_id, **decision.as_json()})
        if scanned.error is not None:
            failures.append((str(scanned.path), scanned.error))
        if shown_here:
            out.print(tracks_table(decisions, f"{scanned.path}: {len(decisions)} tracks"))
            err.print(f"[dim]{shown(str(scanned.path))}: {scanned.seconds:.1f} s[/]")
    return failures


def scan_one(engine: Engine, video: Path, every: int, best: int) -> Iterator[TrackDecision]:
    """Decisions for one file, with a progress bar; decisions made before a fault are kept."""
    info = probe(str(video))
    scanner = VideoScanner(engine, str(video), every=every, best_k=best)
    bar = Progress(
        TextColumn("[bold]scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]} fps"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    started = time.perf_counter()
    with bar:
        task = bar.add_task("scan", total=info.frames or None, fps="-")
        try:
            for frame in file_frames(video):
                yield from scanner.feed(frame)
                done = frame.index + 1
                rate = done / max(time.perf_counter() - started, 1e-9)
                bar.update(task, completed=done, fps=f"{rate:.1f}")
        finally:
            yield from scanner.finish()


@app.command()
@handle_errors
def watch(
    url: Annotated[str, typer.Argument(help="rtsp://..., http(s)://..., or /dev/videoN")],
    name: Annotated[str, typer.Option("--name", help="camera name, recorded with each event")],
    jsonl: Annotated[
        Path | None, typer.Option("--jsonl", help="append events to this JSON lines file")
    ] = None,
    json_old: JsonOld = None,
    webhook: Annotated[
        str | None,
        typer.Option(
            "--webhook",
            help="POST each event (JSON) here; retried with back-off from an outbox in the "
            "database, so events survive restarts",
        ),
    ] = None,
    keep_unknown: KeepUnknown = None,
    every: Every = 1,
    best: Best = 5,
    decide_after: Annotated[
        float,
        typer.Option("--decide-after", min=0.0, help="decide a track once followed this long (s)"),
    ] = 1.0,
    give_up_after: Annotated[
        float | None,
        typer.Option("--give-up-after", help="exit 1 when no frame came for this long (s)"),
    ] = None,
    health_every: Annotated[
        float, typer.Option("--health-every", help="print stream health every N seconds")
    ] = 10.0,
    purpose: Purpose = None,
    case: Case = None,
    strictness: Strictness = None,
    profile: Profile = None,
    embedder: Embedder = None,
    detector: Detector = None,
    db: Db = None,
    min_quality: MinQuality = None,
    offline: Offline = False,
) -> None:
    """Follow a live stream until stopped (Ctrl-C / SIGTERM), one event per decided track.

    Reconnects with back-off when the stream drops; when inference falls behind, the
    oldest frames are dropped (counted in the health line). Events go to stdout as JSON
    lines and, with --jsonl, to a file. Stopping flushes every decided event.
    """
    jsonl = jsonl_target(jsonl, json_old, "watch")
    acting = me(purpose, case)
    source = LiveSource(url, give_up_after=give_up_after)
    stop = stop_on_signals(source.stop)
    failed = False
    try:
        with open_ops(
            db,
            create=True,
            profile=profile,
            strictness=strictness,
            offline=offline,
            embedder=embedder,
            detector=detector,
            min_quality=min_quality,
        ) as ops:
            keep = parse_keep(keep_unknown, ops.config)
            ops.load()
            ops.purge_expired(me(purpose, case))
            sinks: list[Sink] = [StdoutSink()]
            if jsonl is not None:
                sinks.append(JsonlSink(jsonl))
            if webhook is not None:
                sinks.append(ops.webhook_sink(webhook))
            dispatcher = Dispatcher(sinks)
            scanner = VideoScanner(
                ops.engine, url, every=every, best_k=best, decide_after=decide_after
            )
            started_at = datetime.now(timezone.utc)
            try:
                with ops.video_run(
                    acting, "watch", f"{name}: {url}", camera=name, keep_unknown=keep
                ) as run:

                    def emit(decision: TrackDecision) -> None:
                        first = started_at + timedelta(seconds=decision.first_t)
                        event_id = run.record(decision, started_at=first)  # with its entry
                        stored = run.decisions[-1].as_json()  # as stored (see VideoRun.record)
                        dispatcher.send({"id": event_id, "camera": name, **stored})

                    _follow(source, scanner, emit, name, health_every)
            except InputError as exc:  # recorded in the end entry, then reported
                err.print(f"[red]error:[/] {shown(str(exc))}")
                failed = True
            finally:
                dispatcher.close()
                health = json.dumps(source.health.as_dict())
                err.print(f"{shown(name)}: stopped; {shown(health)}")
    finally:
        stop()
    raise typer.Exit(1 if failed else 0)


def _follow(
    source: LiveSource,
    scanner: VideoScanner,
    emit: Callable[[TrackDecision], None],
    name: str,
    health_every: float,
) -> None:
    """The live loop: each decided track to ``emit`` as it is decided, the health line every
    ``health_every`` s (through outages too, with its time); stopping (or a fault) flushes
    every track still open."""
    last_health = time.monotonic()
    try:
        for frame in source.frames(heartbeat=True):  # None: no frame now (an outage)
            if frame is not None:
                for decision in scanner.feed(frame):
                    emit(decision)
                source.health.processed(source.lag(frame))
            if time.monotonic() - last_health >= health_every:
                health = json.dumps(source.health.as_dict())
                err.print(f"[dim]{shown(name)}: {shown(health)}[/]", soft_wrap=True)
                last_health = time.monotonic()
    finally:
        for decision in scanner.finish():
            emit(decision)
