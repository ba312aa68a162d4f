"""``faceledger redact``: a copy of a video or photo with the faces hidden."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from faceledger.cli import render
from faceledger.cli.common import (
    Case,
    Db,
    Detector,
    Embedder,
    Json,
    Offline,
    Profile,
    Purpose,
    Strictness,
    app,
    handle_errors,
    me,
    open_ops,
)
from faceledger.cli.render import emit_json, err, out
from faceledger.errors import InputError
from faceledger.images import IMAGE_SUFFIXES
from faceledger.operations import Acting, Operations
from faceledger.text import shown
from faceledger.video.redact import Keep, RedactReport
from faceledger.video.source import probe


class Method(str, Enum):
    blur = "blur"
    pixelate = "pixelate"
    box = "box"


@app.command()
@handle_errors
def redact(
    source: Annotated[Path, typer.Argument(help="video file or photo")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="the redacted copy to write (a new file)")
    ],
    keep: Annotated[
        list[str] | None,
        typer.Option(
            "--keep",
            help="leave this enrolled subject's face visible (repeatable); everyone else is hidden",
        ),
    ] = None,
    keep_enrolled: Annotated[
        bool,
        typer.Option("--keep-enrolled", help="leave every enrolled subject visible"),
    ] = False,
    method: Annotated[
        Method, typer.Option("--method", "-m", help="how faces are hidden")
    ] = Method.blur,
    every: Annotated[
        int,
        typer.Option(
            "--every",
            min=1,
            help="detect on every N-th frame (tracks carry the boxes in between; faster, "
            "but a face entering between detections is hidden later)",
        ),
    ] = 1,
    force: Annotated[bool, typer.Option("--force", help="replace the output if it exists")] = False,
    purpose: Purpose = None,
    case: Case = None,
    strictness: Strictness = None,
    profile: Profile = None,
    embedder: Embedder = None,
    detector: Detector = None,
    db: Db = None,
    offline: Offline = False,
    json_out: Json = False,
) -> None:
    """Write a copy of a video or photo with every face blurred, except consenting people.

    Every face is hidden by default. With --keep NAME or --keep-enrolled,
    faces of tracks identified as those enrolled subjects stay visible;
    a face that is not positively identified is hidden.
    Video keeps its size, frame rate and timing; audio is copied. Each redaction is
    recorded in the audit ledger (with who was kept visible, and their scores) before the
    copy is handed over.

    Example: faceledger redact clip.mp4 -o clip_redacted.mp4 --keep alice -p fast
    """
    wanted = Keep.of(keep or (), keep_enrolled)
    is_image = source.suffix.lower() in IMAGE_SUFFIXES
    acting = me(purpose, case)
    # a redaction is written to the ledger, so the gallery is made when there is none yet;
    # models load on first use, after the paths are checked
    with open_ops(
        db,
        create=True,
        profile=profile,
        strictness=strictness,
        offline=offline,
        embedder=embedder,
        detector=detector,
    ) as ops:
        if is_image:
            report = ops.redact(
                acting, source, output, keep=wanted, method=method.value, force=force,
                image=True,
            ).value  # fmt: skip
        else:
            report = _redact_video(ops, acting, source, output, wanted, method.value, every, force)
    if json_out:
        emit_json(report.as_json())
    else:
        out.print(_summary(report))
    if not report.complete:
        for note in report.notes:
            err.print(f"[red]error:[/] {shown(report.source)}: {shown(note)}")
        raise typer.Exit(1)


def _redact_video(
    ops: Operations,
    acting: Acting,
    source: Path,
    output: Path,
    keep: Keep,
    method: str,
    every: int,
    force: bool,
) -> RedactReport:
    expected = 0
    if source.is_file():
        try:
            expected = probe(str(source)).frames
        except InputError:  # redact_video reports an unreadable input with its reason
            expected = 0
    with render.progress_bar(max(expected, 2), "pass 1/2 detecting") as bar:
        task = bar.task_ids[0]
        stage_now = ["detecting"]
        started = [time.monotonic()]

        def tick(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            if stage != stage_now[0]:
                stage_now[0], started[0] = stage, now
                bar.reset(task, total=max(total, 1), description="pass 2/2 writing", item="")
            elapsed = now - started[0]
            fps = done / elapsed if elapsed > 0 else 0.0
            bar.update(
                task,
                completed=done,
                total=max(total, done, 1),
                item=f"{fps:.1f} frames/s",
            )

        return ops.redact(
            acting,
            source,
            output,
            keep=keep,
            method=method,
            every=every,
            force=force,
            progress=tick,
        ).value


def _summary(report: RedactReport) -> str:
    kept = (
        f", {report.kept_tracks} kept visible ({', '.join(report.kept_subjects)})"
        if report.kept_tracks
        else ""
    )
    if report.kind == "image":
        body = (
            f"{report.width}x{report.height}, {report.detections} face(s) found, "
            f"{report.faces_blurred} hidden{kept}"
        )
    else:
        speed = report.frames / report.seconds if report.seconds > 0 else 0.0
        audio = f", {report.audio_streams} audio stream(s) copied" if report.audio_streams else ""
        body = (
            f"{report.frames} frames {report.width}x{report.height} at {report.fps:.3g} fps "
            f"({report.codec}{audio}); {report.tracks} track(s){kept}; "
            f"{report.faces_blurred} face regions hidden ({report.method}); "
            f"{report.seconds:.1f} s, {speed:.1f} frames/s"
        )
    status = "wrote" if report.complete else "[yellow]wrote (incomplete)[/]"
    return f"{status} {shown(report.output)}: {shown(body)}"
