"""``faceledger bench index``: 1:N search in galleries of up to millions (MegaFace-style).

The protocol
    LFW people with at least two images are split (seeded) in two halves: the *probe*
    people, whose first image is enrolled (the mate) and whose second image searches, and
    *source* people, who are never enrolled nor searched: with half of the people of one
    image, they are what the face-like distractors are made from
    (:mod:`faceledger.bench.distractors`). The other half of the one-image people is
    *held out*: the real non-mates the distractors are checked against. The gallery is the
    mates plus ``size`` synthetic distractors (``random`` or ``face``).

What is measured
    A real SQLite gallery is written (subjects and templates, in chunks with SQLAlchemy
    Core; the crop is an empty placeholder; the template log is filled by its triggers),
    then the product's :class:`~faceledger.gallery.indexed.GalleryIndex` builds and saves
    its index (``build_s``: reading every template, building, saving). A fresh process then
    opens the gallery and the saved index and runs the first search (``open_s``), searches
    with every probe one at a time (``query_ms``: the index's search for the top 10;
    ``search_ms``: the whole gallery search, catch-up check, search and naming included),
    enrolls templates with their ledger entries in one transaction (``enroll_ms``) and
    times the next search, which catches the index up (``catch_up_ms``); ``rss_mb`` is that
    process's peak resident memory. The exact top 10 of every probe is computed while the
    distractors are written (:class:`~faceledger.gallery.index.ExactIndex` over each chunk,
    merged), so ``recall_at_1`` (the index's first answer is the exact one) and
    ``recall_at_10`` (share of the exact top 10 found) compare with exact search over the
    very same vectors; ``rank1_exact`` / ``rank1_index``: the share of probes whose first
    answer is their mate with a score at the threshold or above. Search-time parameters
    (``efSearch``, ``nprobe``, ``pq_rerank``) are swept over the saved index file
    (``sweeps``). Peak memory is Linux's ``VmHWM`` (``ru_maxrss`` would carry the forking
    parent's over); the machine's load average is kept beside the timings.

``index_only``
    For sizes a SQLite gallery cannot hold (ten million 512-d templates are 20 GB): the
    distractors are generated in seeded chunks and go straight into the product's index
    class (trained on the first chunks, added chunk by chunk), the exact top 10 is kept
    while streaming the same chunks, the index is saved, and a fresh process loads it and
    searches. No gallery, no enrollment.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceledger.bench import distractors as dm
from faceledger.errors import ConfigError
from faceledger.gallery.index import INDEX_KINDS, ExactIndex, top_k

if TYPE_CHECKING:
    from faceledger.bench.lfw import ImageKey

Say = Callable[[str], None]
ProgressFactory = Callable[[str, int], Callable[[int], None]]

K = 10
"""Answers per search compared with exact search."""
CHUNK = 50_000
"""Distractors per generated chunk (and per write transaction)."""
MAX_IMAGES = 10
"""Images per source person at most (a person with hundreds must not dominate)."""
TRAIN_ROWS = 200_000
"""index_only: vectors the IVF kinds are given in their first add (they train on it)."""
SWEEPS = {
    "hnsw": (32, 64, 128, 256, 512, 1024),
    "ivf": (16, 32, 64, 128, 256, 512),
    "ivfpq": (16, 32, 64, 128, 256, 512),
    "pq": (64, 128, 256, 512, 1024, 2048),
}
"""Search-time values tried on the saved index, by kind (efSearch, nprobe, pq_rerank)."""
SWEPT = {"hnsw": "hnsw_ef_search", "ivf": "ivf_nprobe", "ivfpq": "ivf_nprobe", "pq": "pq_rerank"}
"""The parameter each kind's sweep changes."""
BASIS = "synthetic benchmark gallery (faceledger bench index)"


# ---- LFW: who probes, who is enrolled, who the distractors are made from ----------------


@dataclass(frozen=True)
class Plan:
    """The LFW split (see the module notes) as image keys."""

    probe_people: list[str]
    source_people: list[dict[str, Any]]
    held_out: list[str]
    pairs_non_mated: list[tuple[ImageKey, ImageKey]]

    def keys(self) -> list[ImageKey]:
        keys: list[ImageKey] = []
        for name in self.probe_people:
            keys += [(name, 1), (name, 2)]
        for person in self.source_people:
            keys += [(person["name"], i) for i in range(1, person["images"] + 1)]
        keys += [(name, 1) for name in self.held_out]
        keys += [k for pair in self.pairs_non_mated for k in pair]
        return list(dict.fromkeys(keys))


def plan(root: Path, seed: int = 0, limit: int | None = None) -> Plan:
    """Split LFW's people (or a seeded ``limit`` of them) into probes, sources, held out."""
    from faceledger.bench.lfw import people, read_pairs  # (the measuring process needs neither)

    counts = people(root)
    names = sorted(counts)
    rng = np.random.default_rng([seed, 7])
    if limit is not None and limit < len(names):
        names = sorted(rng.choice(names, limit, replace=False).tolist())
    several = [n for n in names if counts[n] >= 2]
    single = [n for n in names if counts[n] == 1]
    if len(several) < 4 or len(single) < 4:
        raise ConfigError(
            f"{root}: too few LFW people for the protocol ({len(several)} with two images, "
            f"{len(single)} with one; at least 4 of each): give more --people"
        )
    order = rng.permutation(len(several))
    probes = sorted(several[i] for i in order[: len(several) // 2])
    sources_multi = [several[i] for i in order[len(several) // 2 :]]
    order = rng.permutation(len(single))
    sources_single = [single[i] for i in order[: len(single) // 2]]
    held_out = sorted(single[i] for i in order[len(single) // 2 :])
    sources = [
        {"name": n, "images": min(counts[n], MAX_IMAGES)}
        for n in sorted(sources_multi + sources_single)
    ]
    kept = set(names)
    pairs = [
        (p.a, p.b)
        for p in read_pairs(root / "pairs.txt")
        if not p.same and p.a[0] in kept and p.b[0] in kept
    ]
    return Plan(probes, sources, held_out, pairs)


@dataclass(frozen=True)
class Lfw:
    """The split, embedded."""

    names: list[str]
    probes: np.ndarray
    mates: np.ndarray
    sources: list[np.ndarray]
    held_out: np.ndarray
    pairs: np.ndarray
    """Scores of LFW's non-mated pairs (pairs.txt) among the people used."""

    @classmethod
    def embed(cls, split: Plan, vectors: dict[ImageKey, np.ndarray]) -> Lfw:
        def unit(key: ImageKey) -> np.ndarray:
            v = np.asarray(vectors[key], np.float32).reshape(-1)
            return v / max(float(np.linalg.norm(v)), 1e-12)

        sources = [
            np.stack([unit((p["name"], i)) for i in range(1, p["images"] + 1)])
            for p in split.source_people
        ]
        pairs = np.array([float(unit(a) @ unit(b)) for a, b in split.pairs_non_mated])
        return cls(
            names=list(split.probe_people),
            probes=np.stack([unit((n, 2)) for n in split.probe_people]),
            mates=np.stack([unit((n, 1)) for n in split.probe_people]),
            sources=sources,
            held_out=np.stack([unit((n, 1)) for n in split.held_out]),
            pairs=pairs,
        )

    @property
    def dim(self) -> int:
        return int(self.probes.shape[1])


def distractor_source(
    kind: str, lfw: Lfw, seed: int, say: Say
) -> tuple[dm.DistractorSource, dict[str, Any]]:
    """The distractors of ``kind`` and what checking them against real non-mates found."""
    mated = np.sum(lfw.probes * lfw.mates, axis=1)
    if kind == "random":
        source: dm.DistractorSource = dm.RandomDistractors(lfw.dim, seed)
        check = dm.score_check(source.chunk(10_000_019, 20_000), lfw.probes, lfw.held_out,
                               lfw.pairs, mated)  # fmt: skip
        return source, {**source.describe(), "check": check}
    if kind != "face":
        raise ConfigError(
            f"unknown distractors {kind!r}; choose one of: {', '.join(dm.DISTRACTOR_KINDS)}"
        )
    say(f"fitting face-like distractors on {len(lfw.sources):,} LFW source people")
    fitted, rows = dm.calibrate(dm.FaceDistractors.fit(lfw.sources, seed=seed), lfw.probes,
                                lfw.held_out)  # fmt: skip
    check = dm.score_check(fitted.chunk(10_000_019, 20_000), lfw.probes, lfw.held_out,
                           lfw.pairs, mated)  # fmt: skip
    pairs_ks = check.get("ks_vs_lfw_pairs", float("nan"))
    say(
        f"gaussian share {fitted.gamma:g}; KS vs held-out non-mates "
        f"{check['ks_vs_held_out']:.4f}, vs LFW non-mated pairs {pairs_ks:.4f}"
    )
    return fitted, {**fitted.describe(), "calibration": rows, "check": check}


# ---- the exact reference ------------------------------------------------------------------


class RunningTop:
    """The exact top ``k`` of each probe over vectors seen chunk by chunk."""

    def __init__(self, probes: np.ndarray, k: int = K) -> None:
        self.probes = probes
        self.k = k
        self.scores = np.full((probes.shape[0], k), -np.inf, np.float32)
        self.ids = np.full((probes.shape[0], k), -1, np.int64)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        scores, found = ExactIndex(vectors, ids).search(self.probes, self.k)
        both_scores = np.concatenate([self.scores, scores], axis=1)
        both_ids = np.concatenate([self.ids, found], axis=1)
        best, positions = top_k(both_scores, self.k)
        self.scores = best
        self.ids = np.take_along_axis(both_ids, np.maximum(positions, 0), axis=1)


def recall(found: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    """(recall@1, recall@10): first answer equal; share of the exact top 10 found."""
    at1 = float(np.mean(found[:, 0] == exact[:, 0]))
    at10 = float(
        np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)])
    )
    return at1, at10


def rank1(ids: np.ndarray, scores: np.ndarray, mate_ids: np.ndarray, threshold: float) -> float:
    return float(np.mean((ids[:, 0] == mate_ids) & (scores[:, 0] >= threshold)))


# ---- the gallery ----------------------------------------------------------------------------


def build_gallery(
    path: Path,
    lfw: Lfw,
    source: dm.DistractorSource,
    *,
    size: int,
    model_id: str,
    exact: RunningTop,
    progress: ProgressFactory | None = None,
    chunk: int = CHUNK,
) -> dict[str, Any]:
    """Write the mates (template ids 1..m) and ``size`` distractors as real rows."""
    import sqlalchemy as sa

    from faceledger.db import Database, write_txn
    from faceledger.db.schema import meta_table, subjects, templates

    started = time.perf_counter()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    db = Database(path)
    dim = lfw.dim

    def rows(first_id: int, first_subject: int, vectors: np.ndarray, subject_of: np.ndarray,
             names: Sequence[str]) -> list[dict[str, Any]]:  # fmt: skip
        blob = np.asarray(vectors, "<f4")
        return [
            {
                "id": first_id + i,
                "subject_id": first_subject + int(subject_of[i]),
                "model_id": model_id,
                "embedding": blob[i].tobytes(),
                "dim": dim,
                "legal_basis": BASIS,
                "source_name": names[i],
                "source_sha256": hashlib.sha256(names[i].encode()).hexdigest(),
                "quality": 1.0,
                "det_score": 1.0,
                "crop_png": b"",
                "crop_geometry": "{}",
                "created_at": stamp,
            }
            for i in range(blob.shape[0])
        ]

    def people_rows(first: int, names: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {"id": first + i, "name": name, "legal_basis": BASIS, "created_at": stamp}
            for i, name in enumerate(names)
        ]

    try:
        m = len(lfw.names)
        mate_ids = np.arange(1, m + 1, dtype=np.int64)
        with write_txn(db.engine) as conn:
            conn.execute(subjects.insert(), people_rows(1, lfw.names))
            names = [f"lfw/{n}/1" for n in lfw.names]
            conn.execute(templates.insert(), rows(1, 1, lfw.mates, np.arange(m), names))
        exact.add(lfw.mates, mate_ids)
        next_id, next_subject = m + 1, m + 1
        advance = progress("writing distractors", size) if progress and size else None
        for start, batch in dm.chunks(source, size, chunk):
            ids = np.arange(next_id, next_id + batch.vectors.shape[0], dtype=np.int64)
            people_names = [
                f"distractor {source.kind} {next_subject + i:09d}" for i in range(batch.identities)
            ]
            names = [f"{source.kind}/{start + i}" for i in range(batch.vectors.shape[0])]
            with write_txn(db.engine) as conn:
                conn.execute(subjects.insert(), people_rows(next_subject, people_names))
                conn.execute(
                    templates.insert(),
                    rows(next_id, next_subject, batch.vectors, batch.identity, names),
                )
            exact.add(batch.vectors, ids)
            next_id += batch.vectors.shape[0]
            next_subject += batch.identities
            if advance:
                advance(batch.vectors.shape[0])
        with write_txn(db.engine) as conn:
            key = meta_table.c.key == "templates_revision"
            if conn.execute(sa.select(meta_table.c.value).where(key)).scalar() is None:
                conn.execute(meta_table.insert().values(key="templates_revision", value="1"))
            else:
                conn.execute(meta_table.update().where(key).values(value="1"))
    finally:
        db.close()
    return {
        "write_s": time.perf_counter() - started,
        "templates": int(next_id - 1),
        "subjects": int(next_subject - 1),
        "mate_ids": mate_ids,
    }


def build_index(db_path: Path, model_id: str, dim: int, settings: dict[str, Any]) -> dict[str, Any]:
    """The product's GalleryIndex over the gallery: build from the database and save."""
    from faceledger.config import IndexConfig
    from faceledger.gallery.indexed import GalleryIndex
    from faceledger.gallery.store import Gallery

    started = time.perf_counter()
    with Gallery(db_path) as gallery:
        index = GalleryIndex(gallery, model_id, dim, IndexConfig(**settings))
        stats = index.stats  # built from the database and saved (GalleryIndex._build)
        params = dict(stats.params)
        index.close()
    return {
        "build_s": time.perf_counter() - started,
        "source": stats.source,
        "params": params,
        "folder": stats.folder,
    }


def settings_for(kind: str, folder: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "dir": folder, **{k: v for k, v in overrides.items() if v is not None}}


def load_params(kind: str, value: int | None, base: dict[str, Any]) -> dict[str, Any]:
    """Parameters to read a saved index with, its search-time one (:data:`SWEPT`) set to
    ``value``."""
    params = dict(base)
    if value is not None and kind in SWEPT:
        params[SWEPT[kind]] = value
    return params


# ---- the fresh process ---------------------------------------------------------------------


def rss_mb() -> float:
    """Peak resident memory of this process (MiB): Linux's VmHWM, else ``ru_maxrss``
    (which Linux carries over from the forking parent, across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def percentiles(values_ms: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values_ms, np.float64)
    return float(np.percentile(array, 50)), float(np.percentile(array, 95))


def _search_all(index: Any, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    ids = np.empty((probes.shape[0], K), np.int64)
    scores = np.empty((probes.shape[0], K), np.float32)
    times: list[float] = []
    for i in range(probes.shape[0]):
        started = time.perf_counter()
        s, found = index.search(probes[i : i + 1], K)
        times.append((time.perf_counter() - started) * 1000)
        ids[i], scores[i] = found[0], s[0]
    return ids, scores, times


def _sweep(spec: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> list[dict[str, Any]]:
    from faceledger.gallery.index import load_index

    out = []
    for value in spec["sweep"]:
        params = load_params(spec["kind"], value, spec["load_params"])
        started = time.perf_counter()
        index = load_index(path, spec["kind"], spec["dim"], params)
        load_s = time.perf_counter() - started
        ids, scores, times = _search_all(index, arrays["probes"])
        at1, at10 = recall(ids, arrays["exact_ids"])
        p50, p95 = percentiles(times)
        out.append({
            "value": value, "params": index.params(), "load_s": load_s,
            "query_ms_p50": p50, "query_ms_p95": p95, "recall_at_1": at1, "recall_at_10": at10,
            "rank1_index": rank1(ids, scores, arrays["mate_ids"], spec["threshold"]),
        })  # fmt: skip
        del index
    return out


def _enroll(
    gallery: Any, index: Any, vectors: np.ndarray, model_id: str, threshold: Any
) -> dict[str, Any]:
    """Enroll each vector as a new subject with its ledger entry in the same transaction,
    then search with it (the search catches the index up)."""
    from faceledger.gallery.store import NewTemplate
    from faceledger.ledger.chain import Ledger, LedgerRecord
    from faceledger.types import Embeddings

    ledger = Ledger(gallery)
    enroll_ms, catch_up_ms, caught = [], [], 0
    for n, vector in enumerate(vectors):
        name = f"bench enrolled {n}"
        digest = hashlib.sha256(name.encode()).hexdigest()
        new = NewTemplate(vector, model_id, name, digest, 1.0, 1.0, b"", {})

        def within(conn: Any, created: bool, name: str = name, digest: str = digest) -> None:
            result = {"subject": name, "created": created, "templates": 1, "legal_basis": BASIS}
            record = LedgerRecord("faceledger bench index", "admin", "enroll", inputs=(digest,),
                                  result=result, model=model_id)  # fmt: skip
            ledger.append_in(conn, record)

        t = time.perf_counter()
        gallery.enroll(name, BASIS, [new], within)
        enroll_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        match = index.matcher(threshold).match(Embeddings(vector[None], model_id))[0]
        catch_up_ms.append((time.perf_counter() - t) * 1000)
        caught += match.subject == name
    return dict(
        enroll_ms=float(np.median(enroll_ms)), enroll_ms_first=enroll_ms[0],
        catch_up_ms=float(np.median(catch_up_ms)), catch_up_ms_first=catch_up_ms[0],
        enrolled=len(enroll_ms), enrolled_found=caught, rss_mb=rss_mb(),
    )  # fmt: skip


def measure_gallery(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: open the gallery and its saved index, search, enroll."""
    started = time.perf_counter()
    from faceledger.config import IndexConfig
    from faceledger.gallery.indexed import GalleryIndex
    from faceledger.gallery.store import Gallery
    from faceledger.types import Embeddings, Threshold

    import_s = time.perf_counter() - started
    arrays = dict(np.load(spec["arrays"]))
    probes, model_id = arrays["probes"], spec["model_id"]
    threshold = Threshold(spec["threshold"], spec["fmr"], "bench index")
    first = Embeddings(probes[:1], model_id)

    started = time.perf_counter()
    gallery = Gallery(spec["db"])
    index = GalleryIndex(gallery, model_id, spec["dim"], IndexConfig(**spec["settings"]))
    index.matcher(threshold).match(first)
    open_s = time.perf_counter() - started
    stats = index.stats
    out: dict[str, Any] = {"import_s": import_s, "open_s": open_s, "opened_from": stats.source,
                           "params": stats.params, "rss_open_mb": rss_mb()}  # fmt: skip

    live = index.sync().index
    ids, scores, times = _search_all(live, probes)
    out["query_ms_p50"], out["query_ms_p95"] = percentiles(times)
    out["recall_at_1"], out["recall_at_10"] = recall(ids, arrays["exact_ids"])
    mate_ids = arrays["mate_ids"]
    searches, hits = [], 0
    for i, name in enumerate(spec["names"]):
        t = time.perf_counter()
        match = index.matcher(threshold).match(Embeddings(probes[i : i + 1], model_id))[0]
        searches.append((time.perf_counter() - t) * 1000)
        hits += match.subject == name
    out["search_ms_p50"], out["search_ms_p95"] = percentiles(searches)
    out["rank1_index"] = hits / len(spec["names"])
    out["rank1_index_top1"] = rank1(ids, scores, mate_ids, spec["threshold"])
    out["rss_search_mb"] = rss_mb()

    out.update(_enroll(gallery, index, arrays["enroll"], model_id, threshold))
    index.close()
    gallery.close()
    out["sweeps"] = _sweep(spec, arrays, Path(spec["index_file"])) if spec["sweep"] else []
    return out


def measure_index_file(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: load a saved index file and search (index-only mode)."""
    started = time.perf_counter()
    from faceledger.gallery.index import load_index

    import_s = time.perf_counter() - started
    arrays = dict(np.load(spec["arrays"]))
    probes = arrays["probes"]
    started = time.perf_counter()
    index = load_index(Path(spec["index_file"]), spec["kind"], spec["dim"], spec["load_params"])
    index.search(probes[:1], K)
    out: dict[str, Any] = {"import_s": import_s, "open_s": time.perf_counter() - started,
                           "opened_from": "index file", "params": index.params()}  # fmt: skip
    ids, scores, times = _search_all(index, probes)
    out["query_ms_p50"], out["query_ms_p95"] = percentiles(times)
    out["recall_at_1"], out["recall_at_10"] = recall(ids, arrays["exact_ids"])
    out["rank1_index"] = rank1(ids, scores, arrays["mate_ids"], spec["threshold"])
    out["rss_mb"] = rss_mb()
    del index
    out["sweeps"] = _sweep(spec, arrays, Path(spec["index_file"])) if spec["sweep"] else []
    return out


def _child_main(argv: Sequence[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    startup_s = time.time() - spec["launched"]  # the interpreter and this module's imports
    measure = measure_index_file if spec["mode"] == "index-only" else measure_gallery
    load_before = os.getloadavg()[0]  # a shared machine: how busy it was meanwhile
    result = {"startup_s": startup_s, **measure(spec)}
    result["load_average"] = [load_before, os.getloadavg()[0]]
    Path(spec["result"]).write_text(json.dumps(result, default=_plain))
    return 0


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def in_fresh_process(
    spec: dict[str, Any], work: Path, arrays: dict[str, np.ndarray]
) -> dict[str, Any]:
    np.savez(work / "arrays.npz", **arrays)  # type: ignore[arg-type]
    spec = {**spec, "arrays": str(work / "arrays.npz"), "result": str(work / "result.json")}
    spec["launched"] = time.time()
    (work / "spec.json").write_text(json.dumps(spec, default=_plain))
    done = subprocess.run(
        [sys.executable, "-m", "faceledger.bench.index", str(work / "spec.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise ConfigError("the measuring process failed:\n" + "\n".join(tail))
    result: dict[str, Any] = json.loads((work / "result.json").read_text())
    return result


# ---- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    size: int
    kind: str
    distractors: str = "face"
    db: Path | None = None
    keep: bool = False
    index_only: bool = False
    seed: int = 0
    chunk: int = CHUNK
    sweep: tuple[int, ...] | None = None
    """Search-time values to try (None: the kind's defaults, see SWEEPS; (): none)."""
    index: dict[str, Any] = field(default_factory=dict)
    """IndexConfig fields (hnsw_m, hnsw_ef_search, ivf_nlist, ivf_nprobe, pq_bytes ...)."""
    enrolls: int = 5


def check_options(options: Options, dim: int, model_dim: int, model: str) -> None:
    """ConfigError (exit 2) for what cannot run."""
    if options.size < 0:
        raise ConfigError(f"--size must be 0 or more, got {options.size}")
    if dim != model_dim:
        raise ConfigError(
            f"--dim {dim} does not match the embedder: {model} gives {model_dim}-d embeddings "
            f"(give --dim {model_dim}, or choose another --profile / --embedder)"
        )
    if options.kind not in INDEX_KINDS:
        raise ConfigError(
            f"unknown index kind {options.kind!r}; choose one of: {', '.join(INDEX_KINDS)}"
        )
    if options.distractors not in dm.DISTRACTOR_KINDS:
        raise ConfigError(
            f"unknown distractors {options.distractors!r}; choose one of: "
            f"{', '.join(dm.DISTRACTOR_KINDS)}"
        )
    if options.chunk < 1:
        raise ConfigError(f"--chunk must be 1 or more, got {options.chunk}")
    if options.db is not None and options.index_only:
        raise ConfigError("--db names a gallery; --index-only builds none: give one or the other")
    if options.db is not None and options.db.exists():
        raise ConfigError(f"{options.db}: exists already; bench index writes a new gallery")
    if options.kind == "ivfpq":
        pq = options.index.get("pq_bytes") or 64
        if dim % pq:
            raise ConfigError(f"--pq-bytes {pq} does not divide the dimension {dim}")


def run(
    options: Options,
    lfw: Lfw,
    *,
    model_id: str,
    threshold: Any,
    say: Say,
    progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    """The whole benchmark (see the module notes); the JSON-ready result."""
    source, check = distractor_source(options.distractors, lfw, options.seed, say)
    work = Path(tempfile.mkdtemp(prefix="faceledger-bench-index-"))
    try:
        context = _Context(options, lfw, source, model_id, threshold, work, say, progress)
        result = _run_index_only(context) if options.index_only else _run_gallery(context)
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
    ks = check["check"]["ks_vs_held_out"]
    return {
        "size": options.size,
        "dim": lfw.dim,
        "index": options.kind,
        "mode": "index-only" if options.index_only else "gallery",
        "distractors": options.distractors,
        "model": model_id,
        "probes": len(lfw.names),
        "threshold": threshold.value,
        "ks_statistic": ks,
        "ks_vs_lfw_pairs": check["check"].get("ks_vs_lfw_pairs"),
        **result,
        "cores": os.cpu_count(),
        "distractor_model": check,
        **({"kept": str(work)} if options.keep else {}),
    }


def _arrays(
    lfw: Lfw, exact: RunningTop, mate_ids: np.ndarray, enroll: np.ndarray
) -> dict[str, np.ndarray]:
    return {"probes": lfw.probes, "exact_ids": exact.ids, "exact_scores": exact.scores,
            "mate_ids": mate_ids, "enroll": enroll}  # fmt: skip


def _common(exact: RunningTop, mate_ids: np.ndarray, threshold: Any) -> dict[str, Any]:
    return {
        "rank1_exact": rank1(exact.ids, exact.scores, mate_ids, threshold.value),
        "exact_top1_is_mate": float(np.mean(exact.ids[:, 0] == mate_ids)),
    }


@dataclass(frozen=True)
class _Context:
    options: Options
    lfw: Lfw
    source: dm.DistractorSource
    model_id: str
    threshold: Any
    work: Path
    say: Say
    progress: ProgressFactory | None


def _run_gallery(context: _Context) -> dict[str, Any]:
    options, lfw, source, model_id = context.options, context.lfw, context.source, context.model_id
    threshold, work, say, progress = context.threshold, context.work, context.say, context.progress
    db_path = options.db or work / "gallery.db"
    folder = db_path.with_name(db_path.name + ".index")
    exact = RunningTop(lfw.probes)
    say(f"writing a gallery of {len(lfw.names):,} mates + {options.size:,} distractors: {db_path}")
    written = build_gallery(db_path, lfw, source, size=options.size, model_id=model_id,
                            exact=exact, progress=progress, chunk=options.chunk)  # fmt: skip
    say(f"wrote {written['templates']:,} templates in {written['write_s']:.1f} s; "
        f"building the {options.kind} index")  # fmt: skip
    settings = settings_for(options.kind, folder, options.index)
    built = build_index(db_path, model_id, lfw.dim, settings)
    manifests = sorted(folder.glob("*.json"))
    if not manifests:
        raise ConfigError(f"{folder}: the index was not saved (see the log above)")
    manifest = json.loads(manifests[0].read_text())
    index_file = folder / manifest["index_file"]
    say(f"built in {built['build_s']:.1f} s; measuring in a fresh process")
    enroll = dm.RandomDistractors(lfw.dim, options.seed + 1).chunk(0, options.enrolls).vectors
    spec = {
        "mode": "gallery", "db": str(db_path), "model_id": model_id, "dim": lfw.dim,
        "kind": options.kind, "settings": {**settings, "dir": str(folder)},
        "threshold": threshold.value, "fmr": threshold.fmr, "names": lfw.names,
        "index_file": str(index_file), "load_params": manifest["params"],
        "sweep": list(_sweep_values(options)),
    }  # fmt: skip
    measured = in_fresh_process(spec, work, _arrays(lfw, exact, written["mate_ids"], enroll))
    return {
        "params": measured.pop("params"),
        "requested": {k: v for k, v in options.index.items() if v is not None},
        "build_s": built["build_s"],
        "write_s": written["write_s"],
        "templates": written["templates"],
        "subjects": written["subjects"],
        "db_mb": _mb(db_path) + _mb(db_path.with_name(db_path.name + "-wal")),
        "index_mb": _mb(index_file),
        **_common(exact, written["mate_ids"], threshold),
        **measured,
        **({"db": str(db_path)} if options.db or options.keep else {}),
    }


def _run_index_only(context: _Context) -> dict[str, Any]:
    from faceledger.gallery.index import make_index

    options, lfw, source = context.options, context.lfw, context.source
    threshold, work, say, progress = context.threshold, context.work, context.say, context.progress
    total = len(lfw.names) + options.size
    params = _index_only_params(options, total)
    index = make_index(options.kind, lfw.dim, params)
    exact = RunningTop(lfw.probes)
    mate_ids = np.arange(len(lfw.names), dtype=np.int64)
    exact.add(lfw.mates, mate_ids)
    started = time.perf_counter()
    pending_v, pending_i = [lfw.mates], [mate_ids]
    pending = len(lfw.names)
    train_rows = min(TRAIN_ROWS, total)
    trained = False
    add_s = 0.0
    advance = progress("generating and adding", options.size) if progress and options.size else None
    say(f"index only: {total:,} vectors into {options.kind} {params}, chunks of {options.chunk:,}")
    for start, batch in dm.chunks(source, options.size, options.chunk):
        ids = np.arange(len(lfw.names) + start, len(lfw.names) + start + batch.vectors.shape[0])
        exact.add(batch.vectors, ids)
        pending_v.append(batch.vectors)
        pending_i.append(ids)
        pending += batch.vectors.shape[0]
        if trained or pending >= train_rows:
            t = time.perf_counter()
            index.add(np.concatenate(pending_v), np.concatenate(pending_i))
            add_s += time.perf_counter() - t
            trained = True
            pending_v, pending_i, pending = [], [], 0
        if advance:
            advance(batch.vectors.shape[0])
    if pending:
        t = time.perf_counter()
        index.add(np.concatenate(pending_v), np.concatenate(pending_i))
        add_s += time.perf_counter() - t
    build_s = time.perf_counter() - started
    build_rss = rss_mb()
    path = work / f"index.{options.kind}"
    t = time.perf_counter()
    index.save(path)
    save_s = time.perf_counter() - t
    built_params = index.params()
    del index
    say(f"built in {build_s:.1f} s (adding {add_s:.1f} s); measuring in a fresh process")
    spec = {
        "mode": "index-only", "kind": options.kind, "dim": lfw.dim, "index_file": str(path),
        "load_params": built_params, "threshold": threshold.value,
        "sweep": list(_sweep_values(options)),
    }  # fmt: skip
    measured = in_fresh_process(spec, work, _arrays(lfw, exact, mate_ids, np.zeros((0, lfw.dim))))
    return {
        "params": measured.pop("params"),
        "requested": params,
        "build_s": build_s,
        "add_s": add_s,
        "save_s": save_s,
        "build_rss_mb": build_rss,
        "templates": total,
        "index_mb": _mb(path),
        "enroll_ms": None,
        "catch_up_ms": None,
        "note": "index only: no SQLite gallery; distractors generated in seeded chunks, the "
        f"index trained on its first {train_rows:,} vectors and added in chunks; exact "
        "reference by streaming the same chunks (running top 10 per probe); open_s is "
        "reading the index file and the first search",
        **_common(exact, mate_ids, threshold),
        **measured,
    }


def _index_only_params(options: Options, total: int) -> dict[str, Any]:
    """The FAISS classes' parameter names, from the IndexConfig-style options."""
    given = {k: v for k, v in options.index.items() if v is not None}
    params = dict(given)
    if options.kind in ("ivf", "ivfpq") and "ivf_nlist" not in params:
        # enough training rows per list (FAISS asks for 39): the first add trains on at
        # most 100,000 sampled rows
        params["ivf_nlist"] = max(1, min(round(4 * math.sqrt(max(total, 1))), 100_000 // 39))
    return params


def _sweep_values(options: Options) -> tuple[int, ...]:
    if options.sweep is not None:
        return options.sweep
    return SWEEPS.get(options.kind, ())


def _mb(path: Path) -> float:
    try:
        return path.stat().st_size / 2**20
    except OSError:
        return 0.0


if __name__ == "__main__":  # the fresh measuring process
    sys.exit(_child_main(sys.argv[1:]))
