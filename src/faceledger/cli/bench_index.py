"""``faceledger bench index``: search speed and recall in galleries of up to millions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from faceledger.cli.bench import Cache, Data, JsonFile, bars, bench_app, bench_engine
from faceledger.cli.common import Detector, Embedder, Offline, Profile, handle_errors
from faceledger.cli.render import err, out
from faceledger.errors import ConfigError
from faceledger.gallery.index import INDEX_KINDS


@bench_app.command("index")
@handle_errors
def index(
    size: Annotated[int, typer.Option("--size", help="synthetic distractors in the gallery")],
    dim: Annotated[int, typer.Option("--dim", help="embedding dimension (must be the embedder's)")],
    kind: Annotated[
        str, typer.Option("--index", help="index kind: " + ", ".join(INDEX_KINDS))
    ] = "flat",
    distractors: Annotated[
        str,
        typer.Option(
            "--distractors", help="face (distributed like real embeddings) or random (uniform)"
        ),
    ] = "face",
    json_file: JsonFile = None,
    db: Annotated[
        Path | None,
        typer.Option("--db", help="write the gallery here (a new SQLite file) and keep it"),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="keep the working folder (gallery, index, arrays)")
    ] = False,
    index_only: Annotated[
        bool,
        typer.Option(
            "--index-only",
            help="no SQLite gallery: distractors go straight into the index in seeded chunks "
            "(for sizes a gallery cannot hold, e.g. 10M with ivfpq)",
        ),
    ] = False,
    sweep: Annotated[
        list[int] | None,
        typer.Option(
            "--sweep",
            help="search-time values to try on the saved index (hnsw: efSearch, ivf/ivfpq: "
            "nprobe, pq: pq_rerank); repeat it [default: the kind's usual range]",
        ),
    ] = None,
    no_sweep: Annotated[bool, typer.Option("--no-sweep", help="try no other values")] = False,
    hnsw_m: Annotated[int | None, typer.Option("--hnsw-m", help="HNSW links per vector")] = None,
    ef_construction: Annotated[int | None, typer.Option("--ef-construction")] = None,
    ef_search: Annotated[int | None, typer.Option("--ef-search", help="HNSW efSearch")] = None,
    nlist: Annotated[int | None, typer.Option("--nlist", help="IVF lists")] = None,
    nprobe: Annotated[int | None, typer.Option("--nprobe", help="IVF lists searched")] = None,
    pq_bytes: Annotated[int | None, typer.Option("--pq-bytes", help="IVF-PQ code bytes")] = None,
    pq_subquantizers: Annotated[
        int | None, typer.Option("--pq-subquantizers", help="pq: 4-bit codes per vector")
    ] = None,
    pq_rerank: Annotated[
        int | None, typer.Option("--pq-rerank", help="pq: candidates re-scored exactly")
    ] = None,
    people: Annotated[
        int | None,
        typer.Option("--people", min=8, help="use a seeded sample of this many LFW people"),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the split and distractors")] = 0,
    chunk: Annotated[int, typer.Option("--chunk", help="distractors per chunk")] = 50_000,
    data: Data = Path("../shared/datasets/lfw"),
    cache: Cache = Path(".cache/bench"),
    profile: Profile = "fast",
    embedder: Embedder = None,
    detector: Detector = None,
    offline: Offline = False,
) -> None:
    """A MegaFace-style 1:N run: half of the LFW people with two images or more enroll
    their first image and search with their second, among SIZE synthetic distractors.

    Writes a real SQLite gallery, builds the index through the product's GalleryIndex,
    then in a fresh process opens the saved index and measures the first search, peak
    memory, per-search latency, recall against exact search over the same vectors, rank-1,
    and enrolling one template with its ledger entry. --index-only skips the gallery.
    """
    from faceledger.bench import index as bench_index
    from faceledger.bench.lfw import LfwEmbedder

    options = bench_index.Options(
        size=size,
        kind=kind,
        distractors=distractors,
        db=db,
        keep=keep,
        index_only=index_only,
        seed=seed,
        chunk=chunk,
        sweep=() if no_sweep else (tuple(sweep) if sweep else None),
        index={
            "hnsw_m": hnsw_m,
            "hnsw_ef_construction": ef_construction,
            "hnsw_ef_search": ef_search,
            "ivf_nlist": nlist,
            "ivf_nprobe": nprobe,
            "pq_bytes": pq_bytes,
            "pq_subquantizers": pq_subquantizers,
            "pq_rerank": pq_rerank,
        },
    )
    if size < 0:
        raise ConfigError(f"--size must be 0 or more, got {size}")
    engine = bench_engine(profile, offline, None, embedder, detector, None)
    card = engine.embedder_card
    bench_index.check_options(options, dim, card.embedding_dim, card.name)
    split = bench_index.plan(data, seed, people)

    def say(line: str) -> None:
        err.print(line, highlight=False, markup=False)

    with bars() as progress:
        keys = split.keys()
        vectors, _ = LfwEmbedder(engine, data, cache).run(
            keys, progress(f"{engine.config.profile}: embedding LFW", len(keys))
        )
    lfw = bench_index.Lfw.embed(split, vectors)
    threshold = engine.threshold
    with bars() as progress:
        result = bench_index.run(options, lfw, model_id=engine.model_id, threshold=threshold,
                                 say=say, progress=progress)  # fmt: skip
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(result, indent=2, default=str) + "\n")
        err.print(f"wrote {json_file}", highlight=False)
    out.print(result_table(result))
    if result.get("sweeps"):
        out.print(sweep_table(result))


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def result_table(result: dict[str, Any]) -> Table:
    title = (
        f"bench index: {result['templates']:,} templates ({result['size']:,} "
        f"{result['distractors']} distractors), {result['dim']}-d {result['model']}, "
        f"{result['index']} ({result['mode']}), {result['probes']:,} LFW probes, "
        f"{result['cores']} cores"
    )
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    params = ", ".join(f"{k}={v}" for k, v in (result.get("params") or {}).items()) or "-"
    rows = [
        ("index parameters", params),
        ("build s (read + build + save)", _f(result.get("build_s"), 1)),
        ("open + first search s", _f(result.get("open_s"), 2)),
        ("peak RSS MiB (fresh process)", _f(result.get("rss_mb"), 0)),
        ("index search ms p50 / p95", f"{_f(result.get('query_ms_p50'), 2)} / "
                                       f"{_f(result.get('query_ms_p95'), 2)}"),
        ("gallery search ms p50 / p95", f"{_f(result.get('search_ms_p50'), 2)} / "
                                         f"{_f(result.get('search_ms_p95'), 2)}"),
        ("recall@1 / recall@10 vs exact", f"{_f(result.get('recall_at_1'), 4)} / "
                                           f"{_f(result.get('recall_at_10'), 4)}"),
        ("rank-1 exact / index", f"{_f(result.get('rank1_exact'), 4)} / "
                                  f"{_f(result.get('rank1_index'), 4)}"),
        ("enroll one template + ledger ms", _f(result.get("enroll_ms"), 1)),
        ("next search (catch-up) ms", _f(result.get("catch_up_ms"), 1)),
        ("distractors vs real non-mates KS", _f(result.get("ks_statistic"), 4)),
        ("index file MiB", _f(result.get("index_mb"), 0)),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    if result.get("note"):
        table.caption = result["note"]
    return table


def sweep_table(result: dict[str, Any]) -> Table:
    name = {"hnsw": "efSearch", "pq": "pq_rerank"}.get(result["index"], "nprobe")
    table = Table(title=f"{result['index']}: search-time {name} on the saved index")
    for col in (name, "ms p50", "ms p95", "recall@1", "recall@10", "rank-1"):
        table.add_column(col, justify="right")
    for row in result["sweeps"]:
        table.add_row(
            str(row["value"]),
            _f(row["query_ms_p50"], 2),
            _f(row["query_ms_p95"], 2),
            _f(row["recall_at_1"], 4),
            _f(row["recall_at_10"], 4),
            _f(row["rank1_index"], 4),
        )
    return table
