"""The ``faceledger`` command: a thin layer over :class:`faceledger.engine.Engine`.

Exit codes: 0 every input processed (even with no faces), 1 any input or operation failed,
2 usage or configuration errors.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.engine import Connection

from faceledger.cli import (
    admin,  # noqa: F401  (registers the subjects/models/gallery commands)
    audit,  # noqa: F401  (registers the audit and retention commands)
    bench,  # noqa: F401  (registers the bench commands)
    render,
    review,  # noqa: F401  (registers the watchlists and events commands)
    service,  # registers the keys commands
)
from faceledger.cli.common import (
    Case,
    Db,
    Json,
    Offline,
    Profile,
    Purpose,
    Strictness,
    app,
    gather,
    handle_errors,
    make_config,
)
from faceledger.cli.render import emit_json, err, out
from faceledger.engine import Engine, EnrollReport
from faceledger.errors import ConfigError, InputError
from faceledger.gallery.watchlists import WatchLists
from faceledger.images import collect_images
from faceledger.ledger import Ledger
from faceledger.ledger.audit import identify_summary, verify_summary
from faceledger.types import ImageResult

# ---- enroll ---------------------------------------------------------------------------------


def plan_enrollment(
    paths: list[Path], name: str | None
) -> tuple[dict[str, list[Path]], list[tuple[str, str]]]:
    """Subject -> photos; with --name everything is one subject, else one per sub-folder."""
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
                plan.setdefault(child.name, []).extend(collect_images([child]))
            elif child.is_file():
                loose.append((str(child), "not inside a person folder; enroll it with --name NAME"))
    return plan, loose


def require_basis(engine: Engine, names: list[str], basis: str | None) -> None:
    """Refuse before any work when new subjects would be enrolled without a legal basis."""
    new = [s for s in names if not engine.gallery.has_subject(s)]
    if new and not basis:
        shown = ", ".join(new[:5]) + (" ..." if len(new) > 5 else "")
        raise ConfigError(
            f"{len(new)} new subject(s) ({shown}): record the legal basis for enrolling them "
            "with --basis"
        )


def require_watchlists(engine: Engine, names: list[str]) -> None:
    """Refuse before any work when a --watchlist does not exist."""
    if not names:
        return
    known = {wl.name for wl in WatchLists(engine.gallery).all()}
    missing = [n for n in names if n not in known]
    if missing:
        raise ConfigError(
            f"no watch list named {', '.join(map(repr, missing))}; create it first with: "
            "faceledger watchlists create NAME"
        )


def enroll_recorder(
    engine: Engine, basis: str | None, lists: list[str]
) -> Callable[[Connection, EnrollReport], None]:
    """The callback run inside each subject's enrollment transaction: watch lists, ledger."""
    ledger = Ledger(engine.gallery)
    watchlists = WatchLists(engine.gallery) if lists else None

    def record(conn: Connection, report: EnrollReport) -> None:
        if watchlists is not None:
            watchlists.add(conn, report.subject, lists)
        result: dict[str, object] = {
            "subject": report.subject,
            "created": report.created,
            "templates": len(report.digests),
            "legal_basis": basis or None,
        }
        if lists:
            result["watchlists"] = lists
        service.log_in(conn, ledger, "enroll", result, inputs=report.digests, model=engine.model_id)

    return record


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
    profile: Profile = None,
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
        raise ConfigError("no image files to enroll in " + ", ".join(map(str, paths)))
    reports = []
    lists = list(dict.fromkeys(watchlist or []))
    with Engine(make_config(profile, db, offline=offline)) as engine:
        require_basis(engine, list(plan), basis)
        require_watchlists(engine, lists)
        record = enroll_recorder(engine, basis, lists)
        engine.load()
        with render.progress_bar(total, "enrolling") as bar:
            task = bar.task_ids[0]

            def tick(item: str) -> None:
                bar.update(task, advance=1, item=item[-60:])

            for subject, photos in plan.items():
                report = engine.enroll(
                    subject,
                    photos,
                    basis,
                    largest=largest,
                    all_or_nothing=all_or_nothing,
                    progress=tick,
                    record=record,
                )
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
        table = render.Table(title=f"Enrollment into {engine.config.db}")
        for col in ("subject", "status", "templates added", "failed photos"):
            table.add_column(col)
        for r in reports:
            status = "new" if r.created else ("added" if r.enrolled else "[red]not enrolled[/]")
            table.add_row(r.subject, status, str(len(r.enrolled)), str(len(r.failures)))
        out.print(table)
    render.failures_block(failures)
    raise typer.Exit(1 if failures else 0)


# ---- identify / verify / detect ------------------------------------------------------------


def record_identify(
    ledger: Ledger, engine: Engine, result: ImageResult, purpose: str | None, case: str | None
) -> None:
    service.log(
        ledger,
        "identify",
        identify_summary(result),
        inputs=service.digests_of([Path(result.image)]),
        model=engine.model_id,
        purpose=purpose,
        case_ref=case,
    )


@app.command()
@handle_errors
def identify(
    paths: Annotated[list[Path], typer.Argument(help="photos or folders of photos")],
    top: Annotated[
        int, typer.Option("--top", "-k", min=1, max=100, help="list this many candidates per face")
    ] = 1,
    purpose: Purpose = None,
    case: Case = None,
    strictness: Strictness = None,
    profile: Profile = None,
    db: Db = None,
    offline: Offline = False,
    json_out: Json = False,
) -> None:
    """Find every face and say who it is, or 'unknown' when no subject clears the threshold.

    Each image's search is written to the audit ledger (its sha256, never the image).
    """
    files = gather(paths)
    with Engine(make_config(profile, db, strictness, offline)) as engine:
        if engine.matcher().index.size == 0:
            err.print(
                f"[yellow]warning:[/] the gallery {engine.config.db} is empty; "
                "every face will be unknown"
            )
        ledger = Ledger(engine.gallery)
        results = []
        for result in engine.identify_many(render.track(files, "identifying"), top):
            record_identify(ledger, engine, result, purpose, case)
            results.append(result)
            if json_out:
                emit_json(result.to_dict())
    failures = [(r.image, r.error) for r in results if r.error is not None]
    if not json_out:
        out.print(render.identify_table(results, top))
        faces = [f for r in results for f in r.faces]
        known = sum(1 for f in faces if f.match and f.match.known)
        out.print(render.threshold_line(engine.threshold))
        out.print(
            f"{len(results)} images, {len(faces)} faces: {known} identified, "
            f"{len(faces) - known} unknown, {len(failures)} failed"
        )
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
    db: Db = None,
    offline: Offline = False,
    json_out: Json = False,
) -> None:
    """Are the main (largest) faces of two photos the same person?

    The comparison is written to the audit ledger of the gallery (--db): the photos'
    sha256, the score and the decision.
    """
    with Engine(make_config(profile, db, strictness, offline)) as engine:
        ledger = Ledger(engine.gallery)

        def record(summary: dict[str, Any]) -> None:
            inputs = service.digests_of([image_a, image_b])
            service.log(
                ledger, "verify", summary, inputs=inputs, model=engine.model_id,
                purpose=purpose, case_ref=case,
            )  # fmt: skip

        try:
            result = engine.verify(image_a, image_b)
        except InputError as exc:  # a failed comparison is recorded too
            record({"error": exc.reason})
            raise
        record(verify_summary(result))
    decision = "same person" if result.same else "different people"
    if json_out:
        emit_json(
            {
                "images": [str(image_a), str(image_b)],
                "score": round(result.score, 4),
                "threshold": round(result.threshold.value, 4),
                "threshold_fmr": result.threshold.fmr,
                "same": result.same,
                "notes": list(result.notes),
            }
        )
        return
    for note in result.notes:
        err.print(f"[yellow]note:[/] {note}")
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
    profile: Profile = None,
    offline: Offline = False,
    json_out: Json = False,
) -> None:
    """Find faces: boxes, detector scores and five landmarks; optionally draw them."""
    from faceledger.cli.draw import annotate

    files = gather(paths)
    results = []
    with Engine(make_config(profile, None, offline=offline)) as engine:
        for result, found in engine.detect_many(render.track(files, "detecting")):
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
from faceledger.cli import redact, serve, video  # noqa: E402, F401  (scan, watch, redact, serve)


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # e.g. `faceledger identify ... | head`
        sys.stderr.close()
