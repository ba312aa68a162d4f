"""``faceledger bench``: measured accuracy and speed on public protocols, beside a peer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from faceledger.bench import protocols, report
from faceledger.bench.lfw import LfwEmbedder, image_path, read_pairs
from faceledger.bench.peer import PEERS, FaceRecognitionPeer
from faceledger.bench.run import LfwData, LfwResult, evaluate, summary_row
from faceledger.bench.speed import measure, measure_peer
from faceledger.cli.common import (
    Db,
    Detector,
    Embedder,
    Json,
    Offline,
    Profile,
    app,
    gather,
    handle_errors,
)
from faceledger.cli.render import emit_json, err, out
from faceledger.config import load_config
from faceledger.engine import Engine
from faceledger.errors import ConfigError

if TYPE_CHECKING:
    from faceledger.bench.service import Result as ServiceResult

bench_app = typer.Typer(
    help=(
        "Measure accuracy (LFW verification, 1:N identification, open set) and speed, "
        "optionally beside the face_recognition library in the same run."
    ),
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")

Data = Annotated[
    Path,
    typer.Option("--data", help="LFW folder: images/<person>/<person>_NNNN.jpg and pairs*.txt"),
]
Cache = Annotated[
    Path,
    typer.Option("--cache", help="where detections and embeddings are cached between runs"),
]
Flip = Annotated[
    bool | None,
    typer.Option(
        "--flip/--no-flip",
        help="test-time augmentation: embed the mirrored face too (default: the profile's)",
    ),
]
Batch = Annotated[int, typer.Option("--batch", min=1, help="faces per embedder call")]
Threads = Annotated[
    int | None, typer.Option("--threads", min=0, help="inference threads (0: all cores)")
]
Peer = Annotated[
    str | None,
    typer.Option("--peer", help="also run this library's own pipeline: face_recognition"),
]
JsonFile = Annotated[Path | None, typer.Option("--json", help="write the result to this JSON file")]


@contextmanager
def bars() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """A progress factory: (label, total) -> advance(n), all on one stderr display."""
    display = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    )

    def factory(label: str, total: int) -> Callable[[int], None]:
        task = display.add_task(label, total=total)
        return lambda n: display.advance(task, n)

    with display:
        yield factory


def bench_engine(
    profile: str | None,
    offline: bool,
    threads: int | None,
    embedder: str | None = None,
    detector: str | None = None,
    flip: bool | None = None,
) -> Engine:
    overrides: dict[str, Any] = {
        "profile": profile,
        "offline": offline or None,
        "embedder": embedder,
        "detector": detector,
        "flip": flip,
    }
    if threads is not None:
        overrides["threads"] = threads
    engine = Engine(load_config(**overrides))
    engine.load()
    return engine


def models_of(engine: Engine) -> list[str]:
    names = [engine.detector_card.name, engine.embedder_card.name]
    return names + (["flip"] if engine.flip else [])


def check_peer(peer: str | None) -> None:
    if peer is not None and peer not in PEERS:
        raise ConfigError(f"unknown peer {peer!r}; choose from: {', '.join(PEERS)}")


@bench_app.command("lfw")
@handle_errors
def lfw(
    data: Data = Path("../shared/datasets/lfw"),
    profile: Profile = None,
    embedder: Embedder = None,
    detector: Detector = None,
    flip: Flip = None,
    peer: Peer = None,
    json_file: JsonFile = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report", help="folder for report.md, roc.png and det.png")
    ] = None,
    cache: Cache = Path(".cache/bench"),
    batch: Batch = 32,
    threads: Threads = None,
    speed_sample: Annotated[
        int, typer.Option("--speed-sample", min=0, help="LFW images timed for the speed keys")
    ] = 100,
    per_fold: Annotated[
        int | None,
        typer.Option("--per-fold", min=1, help="quick run: N mated + N non-mated pairs per fold"),
    ] = None,
    offline: Offline = False,
) -> None:
    """LFW View 2 (10 folds), 1:N closed set (5,749 people) and open set, as one JSON result.

    Thresholds are never tuned on View 2 here: the accuracy uses the standard 10-fold
    protocol, and TAR/FNIR use thresholds set on the non-mated scores themselves.
    """
    check_peer(peer)
    dataset = LfwData.open(data, per_fold)
    engine = bench_engine(profile, offline, threads, embedder, detector, flip)
    results: dict[str, LfwResult] = {}
    columns: list[dict[str, Any]] = []
    sample = _sample_paths(dataset, speed_sample)
    with bars() as progress:
        ours = LfwEmbedder(engine, data, cache, batch)
        result = evaluate(
            ours,
            dataset,
            engine.config.profile,
            "cosine",
            progress,
            search_threshold=_search_threshold(engine),
        )
        if sample:
            speed = measure(engine, sample, progress("timing ours", len(sample)))
            result.summary.update(
                ms_detect=speed.ms_detect,
                ms_embed_per_face=speed.ms_embed_per_face,
                images_per_s=speed.images_per_s,
            )
        label = f"faceledger {engine.config.profile}"
        results[label] = result
        columns.append(
            {"profile": engine.config.profile, "models": models_of(engine), **result.summary}
        )
        if peer:
            other = FaceRecognitionPeer(data, cache)
            peer_result = evaluate(other, dataset, peer, "euclidean", progress)
            if sample:
                rate = measure_peer(other, sample, progress("timing the peer", len(sample)))
                peer_result.summary["images_per_s"] = rate
            results[peer] = peer_result
            columns.append(
                {"profile": peer, "models": ["dlib HOG", "dlib ResNet-128"], **peer_result.summary}
            )
    document = {
        **summary_row(columns[0]),
        "details": result.details,
        "peer": {**summary_row(columns[1]), "details": results[peer].details} if peer else None,
    }
    _write_outputs(document, columns, results, json_file, report_dir)


def _sample_paths(dataset: LfwData, count: int) -> list[Path]:
    keys = dataset.keys()
    if count == 0 or not keys:
        return []
    step = max(1, len(keys) // count)
    return [image_path(dataset.root, k) for k in keys[::step][:count]]


def _write_outputs(
    document: dict[str, Any],
    columns: list[dict[str, Any]],
    results: dict[str, LfwResult],
    json_file: Path | None,
    report_dir: Path | None,
) -> None:
    table = report.markdown(columns)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(document, indent=2) + "\n")
        err.print(f"wrote {json_file}")
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "report.md").write_text(table)
        (report_dir / "results.json").write_text(json.dumps(document, indent=2) + "\n")
        for path in report.plots(results, report_dir):
            err.print(f"wrote {path}")
    out.print(table, markup=False, highlight=False)


@bench_app.command("speed")
@handle_errors
def speed(
    images: Annotated[list[Path], typer.Option("--images", help="photos or folders to time on")],
    profile: Profile = None,
    embedder: Embedder = None,
    detector: Detector = None,
    flip: Flip = None,
    count: Annotated[int, typer.Option("--count", min=1, help="images to time on")] = 200,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="images processed in parallel")
    ] = 1,
    peer: Peer = None,
    json_file: JsonFile = None,
    threads: Threads = None,
    offline: Offline = False,
) -> None:
    """Detect ms per image, align+embed ms per face (batch 1 and batched), images/s, peak RSS."""
    check_peer(peer)
    files = gather(images)
    step = max(1, len(files) // count)
    sample = files[::step][:count]
    engine = bench_engine(profile, offline, threads, embedder, detector, flip)
    with bars() as progress:
        result = measure(engine, sample, progress("timing ours", len(sample)), workers)
        peer_rate = None
        if peer:
            other = FaceRecognitionPeer(Path("."), None)
            peer_rate = measure_peer(other, sample, progress("timing the peer", len(sample)))
    document: dict[str, Any] = {
        "profile": engine.config.profile,
        "models": models_of(engine),
        "ms_detect": result.ms_detect,
        "ms_embed_per_face": result.ms_embed_per_face,
        "ms_embed_per_face_batched": {
            str(k): v for k, v in result.ms_embed_per_face_batched.items()
        },
        "images_per_s": result.images_per_s,
        "peak_rss_mb": result.peak_rss_mb,
        "images": result.images,
        "faces": result.faces,
        "threads": engine.config.threads,
        "workers": workers,
        "peer": {"name": peer, "images_per_s": peer_rate} if peer else None,
        "speed_ratio": result.images_per_s / peer_rate if peer_rate else None,
    }
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(document, indent=2) + "\n")
    emit_json(document)


def _search_threshold(engine: Engine) -> Callable[[int], float] | None:
    """Gallery size -> the threshold ``identify`` uses (None: no threshold calibrated)."""
    try:
        engine.identification_threshold(1)
    except ConfigError:
        return None
    return lambda n: engine.identification_threshold(n).value


@bench_app.command("calibrate")
@handle_errors
def calibrate(
    data: Data = Path("../shared/datasets/lfw"),
    profile: Profile = None,
    embedder: Embedder = None,
    detector: Detector = None,
    flip: Flip = None,
    cache: Cache = Path(".cache/bench"),
    batch: Batch = 32,
    threads: Threads = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="quick run: N mated and N non-mated pairs only"),
    ] = None,
    offline: Offline = False,
) -> None:
    """Thresholds at FMR 1e-2 to 1e-6 from LFW View 1 (pairsDevTrain.txt); never View 2.

    Mated scores: the file's 1,100 same-person pairs. Non-mated: every pair of images of
    two different people among the images it names. Paste the result into the model card.
    """
    pairs = read_pairs(data / "pairsDevTrain.txt")
    if limit is not None:
        pairs = [p for p in pairs if p.same][:limit] + [p for p in pairs if not p.same][:limit]
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    engine = bench_engine(profile, offline, threads, embedder, detector, flip)
    with bars() as progress:
        vectors, fallbacks = LfwEmbedder(engine, data, cache, batch).run(
            keys, progress("embedding View 1", len(keys))
        )
    cal = protocols.calibration(vectors, pairs)
    emit_json(
        {
            "profile": engine.config.profile,
            "models": models_of(engine),
            "protocol": "LFW View 1 pairsDevTrain",
            "images": len(keys),
            "det_failures": len(fallbacks),
            "mated_pairs": cal.mated_pairs,
            "non_mated_pairs": cal.non_mated_pairs,
            "thresholds": {f"{f:g}": round(t, 4) for f, t in cal.thresholds.items()},
            "tar": {f"{f:g}": round(v, 4) for f, v in cal.tar.items()},
        }
    )


@bench_app.command("table")
@handle_errors
def table(
    results: Annotated[list[Path], typer.Argument(help="JSON files written by bench lfw --json")],
) -> None:
    """One Markdown table, a column per result (and its peer), for the docs."""
    columns: list[dict[str, Any]] = []
    for path in results:
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not a bench result ({exc})") from exc
        if not isinstance(document, dict) or "profile" not in document:
            raise ConfigError(f"{path}: not a bench result (no 'profile' key)")
        columns.append(document)
        if document.get("peer") and all(
            c["profile"] != document["peer"]["profile"] for c in columns
        ):
            columns.append(document["peer"])
    out.print(report.markdown(columns, ratio=False), markup=False, highlight=False)


@bench_app.command("video")
@handle_errors
def video(
    clip: Annotated[Path, typer.Argument(help="a video file")],
    known: Annotated[
        list[str] | None,
        typer.Option(
            "--known", help="NAME=PHOTO of a person to enroll (repeatable), for ours and the peer"
        ),
    ] = None,
    profile: Profile = None,
    embedder: Embedder = None,
    detector: Detector = None,
    every: Annotated[int, typer.Option("--every", min=1, help="detect every N-th frame")] = 1,
    height: Annotated[
        int | None, typer.Option("--height", help="first resize the clip to this many lines")
    ] = None,
    per_frame_too: Annotated[
        bool, typer.Option("--per-frame", help="also time embedding every face of every frame")
    ] = False,
    peer: Peer = None,
    json_file: JsonFile = None,
    threads: Threads = None,
    offline: Offline = False,
) -> None:
    """Video speed (fps, multiple of real time) and decisions, beside the peer's video demo.

    The people given with --known are enrolled into a temporary gallery.
    """
    import tempfile

    from faceledger.bench import video as vb

    check_peer(peer)
    people = dict(_known(k) for k in known or [])
    with tempfile.TemporaryDirectory() as tmp:
        if height is not None:
            err.print(f"resizing {clip} to {height} lines")
            clip = vb.upscale_clip(clip, Path(tmp) / f"clip_{height}p.mp4", height)
        overrides: dict[str, Any] = {
            "profile": profile, "offline": offline or None, "embedder": embedder,
            "detector": detector, "db": Path(tmp) / "gallery.db",
        }  # fmt: skip
        if threads is not None:
            overrides["threads"] = threads
        engine = Engine(load_config(**overrides))
        engine.load()
        for name, photo in people.items():
            report_ = engine.enroll(name, [photo], "benchmark", largest=True)
            if not report_.enrolled:
                raise ConfigError(f"{photo}: could not enroll {name}: {report_.failures}")
        frames = vb.probe(str(clip)).frames or None
        runs = []
        with bars() as progress:
            runs.append(
                vb.scan(engine, clip, every, progress(f"scan --every {every}", frames or 0))
            )
            if per_frame_too:
                runs.append(vb.per_frame(engine, clip, progress("per-frame", frames or 0)))
            if peer:
                runs.append(vb.peer(clip, people, progress("peer", frames or 0)))
        engine.close()
    document = {
        "clip": str(clip),
        "profile": engine.config.profile,
        "models": models_of(engine),
        "runs": [r.as_dict() for r in runs],
        "speed_ratio_vs_last": [round(r.fps / runs[-1].fps, 2) for r in runs],
    }
    if json_file is not None:
        json_file.write_text(json.dumps(document, indent=2) + "\n")
    emit_json(document)


def _known(text: str) -> tuple[str, Path]:
    name, sep, photo = text.partition("=")
    if not sep or not name or not Path(photo).is_file():
        raise ConfigError(f"--known {text!r}: give NAME=PHOTO with an existing photo")
    return name, Path(photo)


@bench_app.command("service")
@handle_errors
def service(
    clients: Annotated[
        int, typer.Option("--clients", min=1, max=64, help="concurrent identify clients")
    ] = 4,
    seconds: Annotated[
        float, typer.Option("--seconds", min=1, max=600, help="how long the clients run")
    ] = 60.0,
    profile: Profile = None,
    embedder: Embedder = None,
    detector: Detector = None,
    flip: Flip = None,
    images: Annotated[
        Path, typer.Option("--images", help="a folder of person folders (a few are enrolled)")
    ] = Path("../shared/datasets/smoke/identities"),
    db: Db = None,
    max_requests: Annotated[
        int, typer.Option("--max-requests", min=1, max=100_000, help="stop after this many")
    ] = 100_000,
    threads: Threads = None,
    json_out: Json = False,
    offline: Offline = False,
) -> None:
    """Load on the REST API: N identify clients against a local server for S seconds.

    Enrolls a few people (into a temporary gallery unless --db), starts the server on
    127.0.0.1, then reports requests/s, latency percentiles, errors, and the audit-ledger
    check (one 'identify' entry per answered request, the hash chain intact).
    """
    try:
        from faceledger.bench import service as sb
    except ImportError as exc:
        if exc.name != "httpx":
            raise
        raise ConfigError("bench service needs httpx for its clients: pip install httpx") from None
    settings = {
        f"FACELEDGER_{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in {
            "profile": profile,
            "embedder": embedder,
            "detector": detector,
            "flip": flip,
            "threads": threads,
            "offline": offline or None,
        }.items()
        if value is not None
    }
    options = sb.Options(
        clients=clients,
        seconds=seconds,
        images=images,
        db=db,
        settings=settings,
        max_requests=max_requests,
    )
    result = sb.run(options, say=lambda line: err.print(line, highlight=False))
    if json_out:
        emit_json(result.as_json())
    else:
        out.print(_service_table(result))
    if result.error_count or not result.ledger.ok:
        if result.server_log:
            err.print(result.server_log, markup=False, highlight=False)
        raise typer.Exit(1)


def _service_table(result: ServiceResult) -> Table:
    check = result.ledger
    table = Table(title=f"REST load: {result.profile} ({result.model}), {result.cores} cores")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("clients", str(result.clients)),
        ("seconds", f"{result.seconds:.1f}"),
        ("requests", f"{result.requests:,}" + (" (capped)" if result.capped else "")),
        ("requests/s", f"{result.requests_per_s:.2f}"),
        ("latency p50 / p90 / p99 ms", f"{result.p50_ms} / {result.p90_ms} / {result.p99_ms}"),
        ("errors", ", ".join(f"{k}: {v}" for k, v in result.errors.items()) or "0"),
        ("identify entries / answered", f"{check.entries:,} / {check.answered:,}"),
        ("ledger_seq distinct, recorded", f"{check.seqs_distinct}, {check.seqs_in_ledger}"),
        ("ledger chain", check.chain),
        ("ledger check", "[green]ok[/]" if check.ok else "[red]FAILED[/]"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


from faceledger.cli import bench_index  # noqa: E402, F401  (registers bench index)
