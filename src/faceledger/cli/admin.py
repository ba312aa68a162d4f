"""Administrative commands: subjects, models, gallery maintenance."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.progress import Progress
from rich.table import Table

from faceledger.cli.common import (
    Db,
    Embedder,
    Json,
    Offline,
    Profile,
    gallery_app,
    gather,
    handle_errors,
    make_config,
    me,
    models_app,
    open_ops,
    subjects_app,
)
from faceledger.cli.render import emit_json, err, out
from faceledger.config import load_config
from faceledger.convert import convert, convertible
from faceledger.embed.base import EMBEDDERS
from faceledger.engine import Engine
from faceledger.errors import ConfigError, InputError, ModelError
from faceledger.faces.align import ArcFaceAligner
from faceledger.faces.detect.base import DETECTORS
from faceledger.models.catalog import CARDS, PROFILES, ModelCard, get_card, get_profile
from faceledger.models.store import ModelStore
from faceledger.runtime.model import OnnxModel
from faceledger.runtime.onnx import choose_providers
from faceledger.runtime.pool import available_cores
from faceledger.text import shown

Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-j",
        min=1,
        max=256,
        show_default=False,
        help="inputs worked on at once, each worker on one core with its own copy of the "
        f"models (default: every core, {available_cores()} here); 1 works through them one "
        "at a time in this process, in the least memory. Output keeps the input order, and "
        "each answer is written to the ledger before it is shown",
    ),
]
"""``--workers N`` of the bulk commands (identify, enroll, detect, scan, gallery reembed)."""

# ---- subjects -------------------------------------------------------------------------------


@subjects_app.command("list")
@handle_errors
def subjects_list(db: Db = None, json_out: Json = False) -> None:
    """Enrolled subjects with their legal basis and template counts."""
    with open_ops(db) as ops:
        rows = ops.subjects()
        where = ops.db_name
    if json_out:
        for s in rows:
            emit_json(
                {
                    "name": s.name,
                    "legal_basis": s.legal_basis,
                    "created_at": s.created_at,
                    "templates": s.templates,
                    "models": list(s.models),
                }
            )
        return
    table = Table(title=f"Subjects in {shown(where)}")
    for col in ("name", "templates", "model", "legal basis", "enrolled"):
        table.add_column(col)
    for s in rows:
        table.add_row(
            shown(s.name),
            str(s.templates),
            shown(", ".join(s.models)),
            shown(s.legal_basis),
            shown(s.created_at),
        )
    out.print(table)
    out.print(f"{len(rows)} subjects")


@subjects_app.command("show")
@handle_errors
def subjects_show(name: str, db: Db = None, json_out: Json = False) -> None:
    """One subject: legal basis and every template (source photo, its sha256, quality)."""
    with open_ops(db) as ops:
        info, templates = ops.subject(name)
    if json_out:
        emit_json(
            {
                "name": info.name,
                "legal_basis": info.legal_basis,
                "created_at": info.created_at,
                "templates": [t.__dict__ for t in templates],
            }
        )
        return
    out.print(
        f"[bold]{shown(info.name)}[/]  enrolled {shown(info.created_at)}\n"
        f"legal basis: {shown(info.legal_basis)}"
    )
    table = Table()
    for col in ("id", "model", "source", "sha256", "quality", "sharpness", "basis", "added"):
        table.add_column(col)
    for t in templates:
        table.add_row(
            str(t.id),
            shown(t.model_id),
            shown(t.source_name),
            shown(t.source_sha256[:12]),
            "—" if t.quality_score is None else f"{t.quality_score:.2f}",
            f"{t.quality:.0f}",
            shown(t.legal_basis),
            shown(t.created_at),
        )
    out.print(table)


@subjects_app.command("remove")
@handle_errors
def subjects_remove(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Erase a subject: its templates and stored face crops are deleted.

    The audit ledger records the erasure by the name's sha256 and counts only.
    """
    with open_ops(db) as ops:
        ops.subject(name)  # raises NotFoundError before asking
        if not yes:
            if not sys.stdin.isatty():
                raise ConfigError("refusing to delete without confirmation; pass --yes")
            typer.confirm(f"Delete subject {name!r} and all its templates?", abort=True)
        removed = ops.remove_subject(me(), name).value.templates
    if json_out:
        emit_json({"removed": name, "templates": removed})
    else:
        out.print(f"removed {shown(name)} ({removed} templates)")


# ---- models ---------------------------------------------------------------------------------


def _store(offline: bool = False) -> ModelStore:
    config = make_config(offline=offline)
    return ModelStore(config.model_cache, config.model_mirror, config.model_paths, config.offline)


def _providers(card: ModelCard, onnx: list[str]) -> list[str]:
    """The execution providers ``card``'s model runs on here: ``onnx`` (the configured ones
    this onnxruntime has) for an ONNX model, none for a dlib one (dlib runs on its own)."""
    registry = DETECTORS if card.kind == "detector" else EMBEDDERS
    cls = registry.lookup(card)
    return onnx if isinstance(cls, type) and issubclass(cls, OnnxModel) else []


def _profiles_using(name: str) -> str:
    return ", ".join(p.name for p in PROFILES.values() if name in (p.detector, p.embedder))


def _locate(store: ModelStore, card: ModelCard) -> tuple[str, str]:
    """(status, where) of a card's files: ok, unconverted, missing or mismatch.

    A card that is converted locally (EdgeFace) is ``ok`` once its converted file is
    there; with only its source present it is ``unconverted``.
    """
    try:
        found = store.find(card)
        source = f"{found.origin}: {found.path().parent}" if found else ""
        if not card.converted:
            return ("ok", source) if found else ("missing", "")
        converted = store.find_converted(card)
    except ModelError as exc:
        return "mismatch", str(exc)
    if converted is not None:
        return "ok", f"converted: {converted}"
    if found is not None:
        return "unconverted", (
            f"not converted (source in {source}); run: faceledger models convert {card.name}"
        )
    return "missing", ""


@models_app.command("list")
@handle_errors
def models_list(json_out: Json = False) -> None:
    """Every model in the catalog: kind, licence, profiles and where its files were found."""
    store = _store(offline=True)
    onnx = choose_providers(make_config(offline=True).providers)
    rows = []
    for card in CARDS:
        status, where = _locate(store, card)
        if status == "mismatch":
            where = f"CHECKSUM MISMATCH ({where})"
        rows.append((card, status, where or "not found"))
    if json_out:
        for card, status, where in rows:
            emit_json(
                {
                    "name": card.name,
                    "kind": card.kind,
                    "architecture": card.architecture,
                    "providers": _providers(card, onnx),
                    "licence": card.licence,
                    "source": card.source,
                    "profiles": _profiles_using(card.name),
                    "files": [f.name for f in card.files],
                    "converted_file": card.converted or None,
                    "status": status,
                    "found": where,
                    "thresholds": {f"{k:g}": v for k, v in card.thresholds.items()},
                    "calibration": card.calibration,
                    "published_accuracy": card.published_accuracy,
                }
            )
        return
    table = Table(title="Model catalog", caption=f"ONNX models run on: {', '.join(onnx)}")
    for col in ("name", "kind", "profiles", "licence", "found"):
        table.add_column(col)
    for card, _status, where in rows:
        table.add_row(card.name, card.kind, _profiles_using(card.name), card.licence, where)
    out.print(table)


@models_app.command("pull")
@handle_errors
def models_pull(
    names: Annotated[
        list[str] | None, typer.Argument(help="model names (see 'models list')")
    ] = None,
    profile: Profile = None,
) -> None:
    """Fetch models into the cache (from the mirror or upstream), verifying each sha256."""
    wanted = list(names or [])
    if profile:
        p = get_profile(profile)
        wanted += [p.detector, p.embedder]
    if not wanted:
        raise ConfigError("name the models to pull, or give --profile")
    store = _store()
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("downloading", total=None)

        def show(file: str, done: int, total: int) -> None:
            bar.update(task, description=f"downloading {file}", completed=done, total=total or None)

        store.progress = show
        for name in dict.fromkeys(wanted):
            card = get_card(name)
            resolved = store.resolve(card)
            out.print(f"{name}: ok ({resolved.origin}: {resolved.path().parent})")
            if card.converted and store.find_converted(card) is None:
                bar.update(task, description=f"converting {name}", total=None)
                store.notice = lambda line: err.print(line, highlight=False, markup=False)
                store.convert_now(card)


@models_app.command("convert")
@handle_errors
def models_convert(
    name: Annotated[str, typer.Argument(help=f"model to convert: {' | '.join(convertible())}")],
    check: Annotated[
        list[Path] | None,
        typer.Option(
            "--check",
            help="photo or folder whose faces measure the conversion (the largest face of "
            "each, up to 16); without it, synthetic images are used",
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", "-p", help="profile whose detector finds the --check faces"),
    ] = None,
    converter: Annotated[
        str,
        typer.Option(
            "--converter",
            help="numpy: read the state dict and write the ONNX graph without PyTorch; "
            "torch: the PyTorch reference, which also measures the float network against "
            "the published int8 model (needs pip install 'faceledger\\[convert]')",
        ),
    ] = "numpy",
    offline: Offline = False,
    json_out: Json = False,
) -> None:
    r"""Make a model's ONNX file from its published PyTorch weights (no PyTorch needed).

    The source file is found like any model file (cache, mirror, download) and its sha256
    checked; the ONNX file goes into the model cache with its own sha256 recorded beside
    it. The runtime does this by itself on first use; this command redoes it, on --check
    faces if given. With --converter torch the network is built and exported by PyTorch,
    and its parity with the published int8 model and onnxruntime's agreement with PyTorch
    are measured and reported.
    """
    card = get_card(name)
    store = _store(offline)
    faces = _check_faces(check, profile, offline) if check else None
    report = convert(
        card,
        store,
        faces,
        say=lambda line: err.print(line, highlight=False, markup=False),
        converter=converter,
    )
    if json_out:
        emit_json(report.as_dict())
        return
    lines = [
        f"{name}: converted {report.source} -> {report.path} "
        f"({report.converter} converter, {report.seconds:.1f} s)",
        f"  sha256 {report.sha256}",
    ]
    if report.quantized_cosine:
        parity = ", ".join(
            f"{engine} {low:.4f}" for engine, (low, _mean) in report.quantized_cosine.items()
        )
        lines.append(
            f"  float vs published int8 model, lowest cosine on {report.checked_on}: {parity}"
        )
    if report.onnx_max_abs_diff is not None:
        lines.append(f"  onnxruntime vs torch: max abs diff {report.onnx_max_abs_diff:.1e}")
    else:
        lines.append(f"  checked with onnxruntime on {report.checked_on}")
    out.print("\n".join(lines), highlight=False, markup=False)


_MAX_CHECK_FACES = 16


def _check_faces(paths: list[Path], profile: str | None, offline: bool) -> np.ndarray:
    """ArcFace-aligned 112x112 crops of the largest face in each photo (profile's detector)."""
    aligner = ArcFaceAligner(112)
    crops = []
    with Engine(make_config(profile, offline=offline)) as engine:
        for path in gather(paths)[:_MAX_CHECK_FACES]:
            try:
                image = engine.read(path)
            except InputError as exc:
                err.print(f"[yellow]skipped[/] {shown(str(exc))}")
                continue
            faces = engine.detect(image).largest()
            if len(faces) == 0:
                err.print(f"[yellow]skipped[/] {shown(str(path))}: no face found")
                continue
            crops.append(aligner.align(image, faces)[0])
    if not crops:
        raise ConfigError("no face found in the --check photos")
    return np.stack(crops)


@models_app.command("verify")
@handle_errors
def models_verify(json_out: Json = False) -> None:
    """Check the sha256 of every model file that is present; exit 1 on any mismatch.

    Locally converted files are checked against the sha256 recorded when they were made.
    """
    store = _store(offline=True)
    bad = 0
    colours = {"ok": "green", "unconverted": "yellow", "missing": "yellow", "mismatch": "red"}
    for card in CARDS:
        status, where = _locate(store, card)
        bad += status == "mismatch"
        if json_out:
            emit_json({"name": card.name, "status": status, "where": where})
        else:
            out.print(f"[{colours[status]}]{status:11}[/] {card.name:20} {where}")
    raise typer.Exit(1 if bad else 0)


# ---- gallery --------------------------------------------------------------------------------


@gallery_app.command("reembed")
@handle_errors
def gallery_reembed(
    profile: Profile = None, db: Db = None, offline: Offline = False, workers: Workers = None
) -> None:
    """Re-embed every template from its stored aligned crop with the profile's embedder."""
    with open_ops(db, profile=profile, offline=offline) as ops:
        model = ops.model_id
        err.print(f"re-embedding {ops.db_name} with {model} ...")
        count = ops.reembed(me(), workers).value
    out.print(f"re-embedded {count} templates with {model}")


IndexKind = Annotated[
    str | None,
    typer.Option(
        "--kind",
        help="exact (numpy), flat (FAISS, exact), hnsw, ivf or ivfpq (approximate); "
        "default: the configuration's index.kind (auto: by gallery size)",
    ),
]


@gallery_app.command("index")
@handle_errors
def gallery_index(
    profile: Profile = None,
    embedder: Embedder = None,
    kind: IndexKind = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="build it from every template now, and save it")
    ] = False,
    db: Db = None,
    offline: Offline = False,
    json_out: Json = False,
) -> None:
    """The vector index searches run over: its kind and parameters, how many templates it
    holds, where it is saved, and how long opening it took.

    The index of a profile's templates is kept in a file beside the gallery (a folder
    named after it; for PostgreSQL, in the user cache) and caught up with every change
    before each search, so a search does not read every template from the database.
    --rebuild builds it from scratch (after changing --kind or its parameters, for one).

    Example: faceledger gallery index --profile fast --kind hnsw --rebuild"""
    overrides: dict[str, object] = {"profile": profile, "db": db, "embedder": embedder,
                                    "offline": offline or None}  # fmt: skip
    if kind is not None:
        overrides["index"] = {"kind": kind}
    with open_ops(config=load_config(**overrides)) as ops:
        stats = ops.index_stats(rebuild=rebuild)
        model = ops.model_id
    if json_out:
        emit_json({"model": model, **dataclasses.asdict(stats)})
        return
    params = ", ".join(f"{k}={v}" for k, v in stats.params.items()) or "none"
    out.print(
        f"{model}: {stats.kind} index of {stats.size} templates (parameters: {params}); "
        f"{_opened[stats.source]} in {stats.open_s:.2f} s; "
        + (f"saved in {stats.folder}" if stats.folder else "kept in memory only")
    )


_opened = {"saved": "read from its file", "database": "built from the database",
           "empty": "empty"}  # fmt: skip


@gallery_app.command("info")
@handle_errors
def gallery_info(db: Db = None, json_out: Json = False) -> None:
    """Where the gallery is, how many subjects and templates, made by which models."""
    with open_ops(db) as ops:
        models = ops.model_counts()
        subjects = len(ops.subjects())
        where = ops.db_name
    if json_out:
        emit_json({"db": where, "subjects": subjects, "templates_by_model": models})
    else:
        per_model = ", ".join(f"{n} x {m}" for m, n in models.items()) or "no templates"
        out.print(f"{where}: {subjects} subjects; {per_model}")
