"""The ``faceledger`` command: a thin layer over :class:`faceledger.operations.Operations`
(which writes every action's ledger entry; the CLI parses, calls and renders).

Exit codes: 0 every input processed (even with no faces), 1 any input or operation failed,
2 usage or configuration errors.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from faceledger.cli import (
    admin,  # noqa: F401  (registers the subjects/models/gallery commands)
    audit,  # noqa: F401  (registers the audit and retention commands)
    bench,  # noqa: F401  (registers the bench commands)
    bench_bulk,  # noqa: F401  (registers bench bulk)
    bench_cameras,  # noqa: F401  (registers bench cameras)
    bench_console,  # noqa: F401  (registers bench console)
    bench_degraded,  # noqa: F401  (registers bench degraded)
    bench_shared,  # noqa: F401  (registers bench shared-db)
    cameras,  # noqa: F401  (registers the cameras commands)
    jobs,  # noqa: F401  (registers the jobs commands)
    render,
    review,  # noqa: F401  (registers the watchlists and events commands)
    service,  # noqa: F401  (registers the keys commands)
)
from faceledger.cli.admin import Workers
from faceledger.cli.common import (
    Case,
    Db,
    Detector,
    Embedder,
    Json,
    MinQuality,
    Offline,
    Profile,
    Purpose,
    Strictness,
    app,
    gather,
    handle_errors,
    me,
    open_ops,
)
from faceledger.cli.render import emit_json, err, out
from faceledger.errors import ConfigError
from faceledger.images import collect_images
from faceledger.text import shown, subject_name

# ---- enroll ---------------------------------------------------------------------------------


def plan_enrollment(
    paths: list[Path], name: str | None
) -> tuple[dict[str, list[Path]], list[tuple[str, str]]]:
    """Subject -> photos; with --name everything is one subject, else one per sub-folder
    (its name checked as a new subject's: a folder whose name is refused is a failure of
    that folder, and the others go on)."""
    missing = next((p for p in paths if not p.exists()), None)
    if missing is not None and not name:  # with --name, a missing photo is one failure
        raise ConfigError(f"{missing}: no such file or folder")
    if name:
        return {name: list(collect_images(paths))}, []
    plan: dict[str, list[Path]] = {}
    loose: list[tuple[str, str]] = []
    for root in paths:
        if not root.is_dir():
            raise ConfigError(
                f"{root}: give a folder with one sub-folder per person, or --name NAME for photos "
                "of one person"
            )
        for child in sorted(root.iterdir()):
            if child.is_dir():
                try:
                    subject = subject_name(child.name)
                except ConfigError as exc:
                    loose.append((str(child), f"{exc}; rename the folder"))
                    continue
                plan.setdefault(subject, []).extend(collect_images([child]))
            elif child.is_file():
                loose.append((str(child), "not inside a person folder; enroll it with --name NAME"))
    return plan, loose


@app.command()
@handle_errors
def enroll(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="folder of person folders, or photos/folders of one person with --name"
        ),
    ],
    basis: Annotated[
        str | None,
        typer.Option(
            "--basis",
            "-b",
            help="legal basis for processing these people's faces, e.g. 'signed consent "
            "forms, 2026-11' (required for new subjects)",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="enroll all given photos as this one subject")
    ] = None,
    largest: Annotated[
        bool,
        typer.Option(
            "--largest",
            help="in photos with several faces, enroll the largest "
            "(otherwise such photos are rejected)",
        ),
    ] = False,
    all_or_nothing: Annotated[
        bool,
        typer.Option(
            "--all-or-nothing", help="enroll none of a subject's photos if any of them fails"
        ),
    ] = False,
    watchlist: Annotated[
        list[str] | None,
        typer.Option(
            "--watchlist",
            "-w",
            help="also put the enrolled subjects on this watch list (repeatable; create it "
            "first with: faceledger watchlists create)",
        ),
    ] = None,
    workers: Workers = None,
    profile: Profile = None,
    embedder: Embedder = None,
    detector: Detector = None,
    db: Db = None,
    offline: Offline = False,
    json_out: Json = False,
) -> None:
    """Enroll people from photos: each person's folder name becomes the subject name.

    Example: faceledger enroll ./known/ --basis "signed consent forms, 2026-11"
    """
    plan, failures = plan_enrollment(paths, name)
    total = sum(len(v) for v in plan.values())
    if total == 0:
        render.failures_block(failures)
        raise ConfigError("no image files to enroll in " + ", ".join(map(str, paths)))
    reports = []
    lists = list(dict.fromkeys(watchlist or []))
    acting = me()
    with open_ops(
        db, create=True, profile=profile, offline=offline, embedder=embedder, detector=detector
    ) as ops:
        ops.require_new_basis(list(plan), basis)
        ops.require_watchlists(lists)
        ops.load()
        where = ops.db_name
        with render.progress_bar(total, "enrolling") as bar:
            task = bar.task_ids[0]

            def tick(item: str) -> None:
                bar.update(task, advance=1, item=item[-60:])

            for report, _entry in ops.enroll_many(
                acting,
                plan,
                basis,
                largest=largest,
                all_or_nothing=all_or_nothing,
                watchlists=lists,
                progress=tick,
                workers=workers,
            ):
                reports.append(report)
                failures.extend(report.failures)
    if json_out:
        for r in reports:
            emit_json(
                {
                    "subject": r.subject,
                    "created": r.created,
                    "enrolled": list(r.enrolled),
                    "failures": [{"source": s, "reason": m} for s, m in r.failures],
                }
            )
    else:
        table = render.Table(title=f"Enrollment into {where}")
        for col in ("subject", "status", "templates added", "failed photos"):
            table.add_column(col)
        for r in reports:
            status = "new" if r.created else ("added" if r.enrolled else "[red]not enrolled[/]")
            table.add_row(shown(r.subject), status, str(len(r.enrolled)), str(len(r.failures)))
        out.print(table)
    render.failures_block(failures)
    raise typer.Exit(1 if failures else 0)


# ---- identify / verify / detect ------------------------------------------------------------


@app.command()
@handle_errors
def identify(
    paths: Annotated[list[Path], typer.Argument(help="photos or folders of photos")],
    top: Annotated[
        int, typer.Option("--top", "-k", min=1, max=100, help="list this many candidates per face")
    ] = 1,
    draw: Annotated[
        Path | None,
        typer.Option(
            "--draw",
            help="write annotated copies (boxes, names or 'unknown', scores) into this folder",
        ),
    ] = None,
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
    json_out: Json = False,
) -> None:
    """Find every face and say who it is, 'unknown' when no subject clears the threshold,
    or 'too poor to decide' when the face is below the quality floor (with the reason, e.g.
    "face 10 px between the eyes; needs 14 px"): a face that small, blurred, dark or turned
    is never named, since the stated false-match rate does not hold for it.

    Each image's search is written to the audit ledger (its sha256, never the image).
    """
    from faceledger.cli.draw import annotate_identified

    files = gather(paths)
    acting = me(purpose, case)
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
        if ops.searchable() == 0:
            err.print(
                f"[yellow]warning:[/] the gallery {ops.db_name} is empty; "
                "every face will be unknown"
            )
        threshold = ops.search_threshold
        results = []
        with render.progress_bar(len(files), "identifying") as bar:
            task = bar.task_ids[0]
            for recorded in ops.identify_many(acting, files, top, workers=workers):
                bar.update(task, advance=1, item=recorded.value.image[-60:])
                results.append(recorded.value)
                if json_out:
                    emit_json(recorded.value.to_dict())
                if draw is not None and recorded.value.error is None:
                    annotate_identified(recorded.value, draw, ops.config)
    failures = [(r.image, r.error) for r in results if r.error is not None]
    if not json_out:
        out.print(render.identify_table(results, top))
        faces = [f for r in results for f in r.faces]
        decided = [f.match.decision for f in faces if f.match is not None]
        known, poor = decided.count("match"), decided.count("insufficient_quality")
        out.print(render.threshold_line(threshold))
        out.print(
            f"{len(results)} images, {len(faces)} faces: {known} identified, "
            f"{decided.count('unknown')} unknown, {poor} too poor to decide, "
            f"{len(failures)} failed"
        )
        if draw is not None:
            out.print(f"annotated copies in {draw}")
    render.failures_block(failures)
    raise typer.Exit(1 if failures else 0)


@app.command()
@handle_errors
def verify(
    image_a: Annotated[Path, typer.Argument(help="first photo")],
    image_b: Annotated[Path, typer.Argument(help="second photo")],
    purpose: Purpose = None,
    case: Case = None,
    strictness: Strictness = None,
    profile: Profile = None,
    embedder: Embedder = None,
    detector: Detector = None,
    db: Db = None,
    min_quality: MinQuality = None,
    offline: Offline = False,
    json_out: Json = False,
) -> None:
    """Are the main (largest) faces of two photos the same person?

    The comparison is written to the audit ledger of the gallery (--db): the photos'
    sha256, the score and the decision.
    """
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
        result = ops.verify(me(purpose, case), image_a, image_b).value  # a failure is recorded too
    decision = {
        "same": "same person",
        "different": "different people",
        "insufficient_quality": f"too poor to decide ({result.reason})",
    }[result.decision]
    if json_out:
        emit_json(
            {
                "images": [str(image_a), str(image_b)],
                "score": round(result.score, 4),
                "threshold": round(result.threshold.value, 4),
                "threshold_fmr": result.threshold.fmr,
                "same": result.same,
                "decision": result.decision,
                "reason": result.reason,
                "quality": [q.to_dict() for q in result.quality or ()],
                "notes": list(result.notes),
            }
        )
        return
    for note in result.notes:
        err.print(f"[yellow]note:[/] {shown(note)}")
    out.print(f"score {result.score:.3f}  ->  [bold]{decision}[/]")
    out.print(render.threshold_line(result.threshold))


@app.command()
@handle_errors
def detect(
    paths: Annotated[list[Path], typer.Argument(help="photos or folders of photos")],
    draw: Annotated[
        Path | None,
        typer.Option("--draw", help="write annotated copies (boxes, landmarks) into this folder"),
    ] = None,
    workers: Workers = None,
    purpose: Purpose = None,
    case: Case = None,
    profile: Profile = None,
    detector: Detector = None,
    db: Db = None,
    offline: Offline = False,
    json_out: Json = False,
) -> None:
    """Find faces: boxes, detector scores and five landmarks; optionally draw them.

    Nobody is identified, but locating faces is processing them: each image's detection
    is written to the audit ledger of the gallery (--db): its sha256 and the face count.
    """
    from faceledger.cli.draw import annotate

    files = gather(paths)
    acting = me(purpose, case)
    results = []
    with (
        open_ops(db, create=True, profile=profile, offline=offline, detector=detector) as ops,
        render.progress_bar(len(files), "detecting") as bar,
    ):
        task = bar.task_ids[0]
        # a bad image is a result with its error (recorded too), and the batch goes on
        for recorded in ops.detect_many(acting, files, workers=workers, pixels=draw is not None):
            result, found = recorded.value
            bar.update(task, advance=1, item=result.image[-60:])
            if draw is not None and found is not None:
                annotate(found, draw)
            results.append(result)
            if json_out:
                emit_json(result.to_dict())
    failures = [(r.image, r.error) for r in results if r.error is not None]
    if not json_out:
        out.print(render.detect_table(results))
        if draw is not None:
            out.print(f"annotated copies in {draw}")
    render.failures_block(failures)
    raise typer.Exit(1 if failures else 0)


# Registered after the photo commands above, so that `--help` lists those first.
from faceledger.cli import node, redact, serve, video  # noqa: E402, F401  (scan, watch, redact, serve, node)


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # e.g. `faceledger identify ... | head`
        sys.stderr.close()
