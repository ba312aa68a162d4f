"""How the CLI shows results: rich tables for people, JSON lines for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from faceledger.types import ImageResult, Threshold

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Progress]:
    """A progress bar on stderr (hidden when stderr is not a terminal)."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[item]}", style="dim"),
        console=err,
        transient=True,
        disable=total <= 1,
    )
    with bar:
        bar.add_task(label, total=total, item="")
        yield bar


def track(items: Sequence[T], label: str) -> Iterator[T]:
    with progress_bar(len(items), label) as bar:
        task = bar.task_ids[0]
        for item in items:
            bar.update(task, item=str(item)[-60:])
            yield item
            bar.advance(task)


def box_text(box: Iterable[float]) -> str:
    return "[" + ",".join(f"{v:.0f}" for v in box) + "]"


def threshold_line(threshold: Threshold) -> str:
    return (
        f"threshold {threshold.value:.3f} ({threshold.strictness}): calibrated to a false-match "
        f"rate of {threshold.fmr:g} on {threshold.protocol}"
    )


def identify_table(results: Sequence[ImageResult], top: int) -> Table:
    table = Table(title="Identification", show_lines=False)
    table.add_column("image", overflow="fold", min_width=12)
    table.add_column("face box", no_wrap=True)
    table.add_column("subject", overflow="fold")
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("threshold", justify="right", no_wrap=True)
    if top > 1:
        table.add_column("candidates", overflow="fold")
    for result in results:
        if result.error:
            table.add_row(result.image, "-", f"[red]error: {result.error}[/]", "", "")
            continue
        if not result.faces:
            table.add_row(result.image, "-", "[dim]no face[/]", "", "")
        for face in result.faces:
            match = face.match
            if match is None:
                continue
            subject = match.subject or "[yellow]unknown[/]"
            row = [
                result.image,
                box_text(face.box),
                subject,
                f"{match.score:.3f}",
                f"{match.threshold.value:.3f}",
            ]
            if top > 1:
                row.append(", ".join(f"{c.subject} {c.score:.3f}" for c in match.candidates))
            table.add_row(*row)
    return table


def detect_table(results: Sequence[ImageResult]) -> Table:
    table = Table(title="Detection")
    table.add_column("image", overflow="fold", min_width=12)
    table.add_column("size", no_wrap=True)
    table.add_column("faces", justify="right")
    table.add_column("boxes [x1,y1,x2,y2] and scores", overflow="fold")
    for result in results:
        if result.error:
            table.add_row(result.image, "", "", f"[red]error: {result.error}[/]")
            continue
        size = f"{result.size[0]}x{result.size[1]}" if result.size else ""
        boxes = "; ".join(f"{box_text(f.box)} {f.det_score:.2f}" for f in result.faces)
        table.add_row(result.image, size, str(len(result.faces)), boxes or "[dim]none[/]")
    return table


def failures_block(failures: Sequence[tuple[str, str]]) -> None:
    if not failures:
        return
    err.print(f"[red]{len(failures)} input(s) failed:[/]")
    for source, reason in failures:
        err.print(f"  [red]✗[/] {source}: {reason}")
