"""``faceledger bench degraded``: LFW with degraded probes, and the calibrated quality floor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from faceledger.bench import degrade
from faceledger.bench import degraded as protocol
from faceledger.cli.bench import (
    Batch,
    Cache,
    Data,
    JsonFile,
    Threads,
    bars,
    bench_app,
    bench_engine,
    check_peer,
)
from faceledger.cli.common import Detector, Embedder, Offline, Profile, handle_errors
from faceledger.cli.render import err, out
from faceledger.errors import ConfigError

_LEVELS_HELP = "comma-separated levels (default: all): " + ", ".join(degrade.LEVELS)


@bench_app.command("degraded")
@handle_errors
def degraded(
    data: Data = Path("../shared/datasets/lfw"),
    profile: Profile = None,
    embedder: Embedder = None,
    detector: Detector = None,
    levels: Annotated[str | None, typer.Option("--levels", help=_LEVELS_HELP)] = None,
    floor: Annotated[
        str,
        typer.Option(
            "--floor",
            help="quality floor for the 'with floor' figures: auto (calibrated on View 1, one "
            "per FMR) or a number 0..1 for every FMR",
        ),
    ] = "auto",
    floor_tolerance: Annotated[
        float,
        typer.Option(
            "--floor-tolerance",
            min=0.0,
            help="auto floor: a quality bin passes at up to FMR x (1 + this); 0 is the "
            "strict rule, which the clean bins alone can fail (they scatter around the FMR)",
        ),
    ] = protocol.FLOOR_TOLERANCE,
    max_fnmr: Annotated[
        float,
        typer.Option(
            "--max-fnmr",
            min=0.0,
            max=1.0,
            help="auto floor: a quality bin also passes only if at most this share of its "
            "mated pairs is missed at the threshold (1 turns the test off)",
        ),
    ] = protocol.MAX_FNMR,
    peer: Annotated[
        str | None,
        typer.Option("--peer", help="also run face_recognition on the 1:N gallery and probes"),
    ] = None,
    peer_levels: Annotated[
        str | None, typer.Option("--peer-levels", help="levels for the peer (default: --levels)")
    ] = None,
    peer_probes: Annotated[
        int | None,
        typer.Option("--peer-probes", min=1, help="the peer sees N evenly spaced probes only"),
    ] = None,
    distractors: Annotated[
        bool,
        typer.Option(
            "--distractors/--no-distractors",
            help="add the 4,069 one-image people to our 1:N gallery",
        ),
    ] = True,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            help="quick run: N mated + N non-mated pairs of View 1 and of each View 2 fold",
        ),
    ] = None,
    remeasure: Annotated[
        bool,
        typer.Option(
            "--remeasure-quality",
            help="measure the quality factors of cached faces again (after a change to "
            "faceledger.faces.quality); nothing is detected or embedded again",
        ),
    ] = False,
    cache: Cache = Path(".cache/bench"),
    json_file: JsonFile = None,
    markdown_file: Annotated[
        Path | None, typer.Option("--markdown", help="write the tables to this Markdown file")
    ] = None,
    batch: Batch = 32,
    threads: Threads = None,
    offline: Offline = False,
) -> None:
    """How recognition holds up on degraded faces, and the floor that keeps FMR.

    Each level degrades LFW images reproducibly (faceledger.bench.degrade):
    downscale to a target inter-eye distance (never up), dark, blur, noise,
    JPEG, or a camera-like chain of them (cam-good, cam-poor, cam-bad).

    View 1 (pairsDevTrain.txt) calibrates: its images are degraded and compared
    with the clean images (1,100 mated pairs, ~5.9M non-mated comparisons per
    level), and the quality floor is the lowest at which every quality bin
    above it keeps the FMR (one floor each for 1e-2, 1e-3, 1e-4; levels pooled).

    View 2 (pairs.txt, b side degraded) and 1:N (each person's clean first
    image enrolled, the second degraded as the probe) are then reported with
    and without the floor: FMR, FNMR, no face, insufficient quality, names
    given rightly and wrongly; --peer face_recognition runs the same 1:N.

    Example: faceledger bench degraded -p fast --levels clean,ied16,cam-poor

    Cached under --cache per level, detector and model: a re-run, or another
    --floor, takes seconds.
    """
    check_peer(peer)
    chosen = degrade.select(levels)
    options = protocol.Options(
        levels=chosen,
        floor=_floor(floor),
        peer=peer,
        peer_levels=degrade.select(peer_levels) if peer_levels else chosen,
        peer_probes=peer_probes,
        distractors=distractors,
        cache=cache,
        batch=batch,
        remeasure=remeasure,
        floor_tolerance=floor_tolerance,
        max_fnmr=max_fnmr,
    )
    dataset = protocol.DegradedData.open(data, limit)
    engine = bench_engine(profile, offline, threads, embedder, detector)
    with bars() as progress:
        document = protocol.run(engine, dataset, options, progress, engine.config.profile)
    table = protocol.markdown(document)
    for path, text in ((json_file, json.dumps(document, indent=2) + "\n"), (markdown_file, table)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            err.print(f"wrote {path}")
    out.print(table, markup=False, highlight=False)


def _floor(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"--floor {text!r}: give auto or a number between 0 and 1")
    return value
