"""``faceledger bench bulk``: enroll and identify LFW folders, against face_recognition's CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from faceledger.cli.bench import JsonFile, bench_app
from faceledger.cli.common import handle_errors
from faceledger.cli.render import err, out
from faceledger.errors import ConfigError

if TYPE_CHECKING:
    from faceledger.bench.bulk import Result


@bench_app.command("bulk")
@handle_errors
def bulk(
    data: Annotated[
        Path, typer.Option("--data", help="the LFW folder (images/, pairs.txt)")
    ] = Path("../shared/datasets/lfw"),
    images: Annotated[
        int,
        typer.Option("--images", min=2, help="probe photos: half enrolled people, half strangers"),
    ] = 1000,
    profiles: Annotated[
        str, typer.Option("--profiles", help="comma-separated profiles to run")
    ] = "fast,embedded",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="workers (and face_recognition --cpus) [default: all cores]"
        ),
    ] = None,
    peer: Annotated[
        bool, typer.Option("--peer/--no-peer", help="also run face_recognition's CLI")
    ] = True,
    json_file: JsonFile = None,
) -> None:
    """Time the folder jobs people run first, each as its own process on the same photos:
    `faceledger enroll` and `faceledger identify --workers N` per profile, face_recognition's
    CLI with --cpus N, and the models alone (read, detect, align, embed) for the share of
    their speed the command keeps. Prints images/s, correct and wrong names.

    Example: faceledger bench bulk --images 1000 --profiles fast,embedded --json bulk.json"""
    from faceledger.bench import bulk as protocol

    names = [p.strip() for p in profiles.split(",") if p.strip()]
    if not names:
        raise ConfigError("--profiles: name at least one profile")
    count = workers or os.cpu_count() or 1
    env = dict(os.environ)
    if "FACELEDGER_MODEL_MIRROR" not in env and Path("../shared/models").is_dir():
        env["FACELEDGER_MODEL_MIRROR"] = str(Path("../shared/models").resolve())
    result = protocol.run(
        data, images, profiles=names, workers=count, peer=peer, env=env,
        say=lambda line: err.print(line, highlight=False, markup=False),
    )  # fmt: skip
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(result.as_json(), indent=2) + "\n")
        err.print(f"wrote {json_file}", highlight=False)
    out.print(table(result))
    if any(r.rc not in (0, 1) for r in result.runs):
        for r in result.runs:
            if r.note:
                err.print(f"{r.program}: {r.note}", markup=False, highlight=False)
        raise typer.Exit(1)


def table(result: Result) -> Table:
    view = Table(
        title=f"{result.images} LFW photos ({result.known} enrolled people's second photos, "
        f"{result.images - result.known} strangers); {result.cores} cores"
    )
    for col in ("program", "workers", "enroll /s", "identify /s", "vs models alone",
                "correct", "wrong", "failed"):  # fmt: skip
        view.add_column(col, justify="left" if col == "program" else "right")
    for r in result.runs:
        profile = r.program.removeprefix("faceledger ")
        alone = result.engine_alone.get(profile)
        share = f"{r.images_per_s / alone:.2f}x" if alone else ""
        view.add_row(
            r.program, str(r.workers),
            f"{r.enroll_per_s:.1f}" if r.enroll_per_s else "",
            f"{r.images_per_s:.1f}", share,
            str(r.correct), str(r.wrong), str(r.failed),
        )  # fmt: skip
    return view
