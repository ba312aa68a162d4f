"""How the CLI shows results: rich tables for people, JSON lines for scripts.

Everything stored or from outside (file names, subject names, purposes, comments) is shown
through :func:`faceledger.text.shown` (or :func:`~faceledger.text.visible` in a ``Text``):
control and format characters as escapes, rich markup escaped. JSON output stays exact
(``json.dumps`` escapes control characters itself).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from faceledger.text import shown, visible
from faceledger.types import FaceResult, ImageResult, Threshold

out = Console(soft_wrap=True, emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)
T = TypeVar("T")

COMPACT_BELOW = 100
"""Terminals narrower than this (columns) get the compact identify table."""
PATH_MIN = 16
"""The narrowest a path column is squeezed to (the path's end is kept)."""
FOLDER_CONTEXT = 12
"""Compact, a path column is as wide as its file names and this much of their folders."""
SUBJECT_MIN = 16
"""In the compact identify table, the subject column keeps at least this many columns."""


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


class _ItemColumn(ProgressColumn):
    """The item being worked on (a file's name), its control characters made visible."""

    def render(self, task: Task) -> Text:
        return Text(visible(str(task.fields.get("item", ""))), style="dim")


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Progress]:
    """A progress bar on stderr (hidden when stderr is not a terminal)."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        _ItemColumn(),
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


def path_end(text: str, width: int) -> str:
    """``text`` in at most ``width`` terminal cells: when too long, its start is cut
    (``…party/IMG_1.jpg``), so a path keeps its file's name."""
    if cell_len(text) <= width:
        return text
    kept: list[str] = []
    room = width - 1
    for char in reversed(text):
        room -= cell_len(char)
        if room < 0:
            break
        kept.append(char)
    return "…" + "".join(reversed(kept))


@dataclass(frozen=True)
class PathCell:
    """A path in a table cell, on one line: cut at its start when the column is narrow
    (:func:`path_end`); control characters shown as escapes."""

    path: str

    @property
    def width(self) -> int:
        """Terminal cells the whole path takes."""
        return cell_len(visible(self.path))

    @property
    def name_width(self) -> int:
        """Terminal cells the file's name takes (the path after its last ``/``)."""
        return cell_len(visible(self.path.rsplit("/", 1)[-1]))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(min(self.width, PATH_MIN), self.width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text(path_end(visible(self.path), options.max_width), no_wrap=True)


def box_text(box: Iterable[float]) -> str:
    return "[" + ",".join(f"{v:.0f}" for v in box) + "]"


def threshold_line(threshold: Threshold) -> str:
    if threshold.fpir is None:
        return (
            f"threshold {threshold.value:.3f} ({threshold.strictness}): calibrated to a "
            f"false-match rate of {threshold.fmr:g} on {threshold.protocol}"
        )
    beyond = ", extrapolated beyond the calibrated rates" if threshold.extrapolated else ""
    return (
        f"threshold {threshold.value:.3f} ({threshold.strictness}): at most {threshold.fpir:g} "
        f"of searches for someone not enrolled name anyone, over {threshold.templates:,} "
        f"template{'' if threshold.templates == 1 else 's'} (false-match rate "
        f"{threshold.fmr:.1e} per comparison on {threshold.protocol}{beyond})"
    )


def _face_cells(face: FaceResult, top: int, compact: bool) -> list[str]:
    """The cells after the image of one identified face. Compact: the box without its
    brackets, the candidates under the subject (one a line), no threshold."""
    match = face.match
    if match is None:  # detected but not identified: not a row of this table
        return []
    box = box_text(face.box)
    if match.decision == "insufficient_quality":
        subject = f"[magenta]too poor to decide[/]: {shown(match.reason or '')}"
        score = "-"
    else:
        subject = shown(match.subject) if match.subject else "[yellow]unknown[/]"
        score = f"{match.score:.3f}"
    others = [f"{shown(c.subject)} {c.score:.3f}" for c in match.candidates] if top > 1 else []
    if compact:
        return [box[1:-1], "\n".join([subject, *(f"[dim]{c}[/]" for c in others)]), score]
    row = [box, subject, score, f"{match.threshold.value:.3f}"]
    return [*row, ", ".join(others)] if top > 1 else row


def _wide_columns(table: Table, top: int) -> None:
    table.add_column("image", min_width=PATH_MIN)
    table.add_column("face box", no_wrap=True)
    table.add_column("subject", overflow="fold")
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("threshold", justify="right", no_wrap=True)
    if top > 1:
        table.add_column("candidates", overflow="fold")


def _compact_columns(table: Table, rows: list[list[Any]], top: int, width: int) -> None:
    """Four columns that fill ``width``: the box and the score as wide as they are; the
    image as wide as its file names and a little of their folders, while the subject
    keeps :data:`SUBJECT_MIN`; the subject the rest (long names fold)."""
    box = max([len("face box"), *(cell_len(row[1]) for row in rows)])
    room = width - 13 - box - len("score")  # 13: the borders and padding of 4 columns
    paths = [row[0] for row in rows if isinstance(row[0], PathCell)]
    wanted = max([PATH_MIN, *(min(p.width, p.name_width + FOLDER_CONTEXT) for p in paths)])
    image = max(PATH_MIN, min(wanted, room - SUBJECT_MIN))
    table.add_column("image", width=image)
    table.add_column("face box", no_wrap=True)
    heading = "subject (candidates)" if top > 1 else "subject"
    table.add_column(heading, width=max(room - image, 7), overflow="fold")
    table.add_column("score", justify="right", no_wrap=True)


def identify_table(results: Sequence[ImageResult], top: int) -> IdentifyTable:
    """The identification table, laid out for the console that prints it."""
    return IdentifyTable(tuple(results), top)


@dataclass(frozen=True)
class IdentifyTable:
    """One row per face; each image named once, by its path (its start cut when the column
    is narrow, so the file's name stays). Six columns (with the threshold, and the
    candidates when ``top`` > 1) when every cell fits on one line at the console's width;
    else, and always below :data:`COMPACT_BELOW` columns, four that fill the width
    (:func:`_compact_columns`): the threshold line under the table states the threshold,
    and the candidates go under the subject."""

    results: tuple[ImageResult, ...]
    top: int

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(console, options.max_width)

    def table(self, console: Console, width: int) -> Table:
        if width >= COMPACT_BELOW:
            wide = self._table(self.rows(compact=False), compact=False, width=width)
            unbounded = console.options.update_width(10 * width)
            if Measurement.get(console, unbounded, wide).maximum <= width:
                return wide
        return self._table(self.rows(compact=True), compact=True, width=width)

    def _table(self, rows: list[list[Any]], *, compact: bool, width: int) -> Table:
        table = Table(title="Identification")
        if compact:
            _compact_columns(table, rows, self.top, width)
        else:
            _wide_columns(table, self.top)
        for row in rows:
            table.add_row(*row)
        return table

    def rows(self, compact: bool) -> list[list[Any]]:
        blank = [""] * (1 if compact else 2 + (self.top > 1))
        rows: list[list[Any]] = []
        for result in self.results:
            image = PathCell(result.image)
            if result.error:
                rows.append([image, "-", f"[red]error: {shown(result.error)}[/]", *blank])
                continue
            faces = [f for f in result.faces if f.match is not None]
            if not faces:
                rows.append([image, "-", "[dim]no face[/]", *blank])
            for i, face in enumerate(faces):
                rows.append([image if i == 0 else "", *_face_cells(face, self.top, compact)])
        return rows


def detect_table(results: Sequence[ImageResult]) -> Table:
    table = Table(title="Detection")
    table.add_column("image", min_width=PATH_MIN)
    table.add_column("size", no_wrap=True)
    table.add_column("faces", justify="right")
    table.add_column("boxes [x1,y1,x2,y2] and scores", overflow="fold")
    for result in results:
        image = PathCell(result.image)
        if result.error:
            table.add_row(image, "", "", f"[red]error: {shown(result.error)}[/]")
            continue
        size = f"{result.size[0]}x{result.size[1]}" if result.size else ""
        boxes = "; ".join(f"{box_text(f.box)} {f.det_score:.2f}" for f in result.faces)
        table.add_row(image, size, str(len(result.faces)), boxes or "[dim]none[/]")
    return table


def failures_block(failures: Sequence[tuple[str, str]]) -> None:
    if not failures:
        return
    err.print(f"[red]{len(failures)} input(s) failed:[/]")
    for source, reason in failures:
        err.print(f"  [red]✗[/] {shown(source)}: {shown(reason)}", highlight=False)
