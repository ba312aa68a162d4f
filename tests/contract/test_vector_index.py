"""The one contract every vector index kind honours, checked against ExactIndex.

Small synthetic cases pin the array contract (shapes, dtypes, best first, -inf / -1
padding, empty index, no queries, dimension and id errors, remove then add, files); the
recall test runs each kind over REAL face embeddings (LFW through YuNet -> MobileFaceNet,
computed once per session) mixed with 10,000 distractors, and skips, saying why, when the
shared models and datasets are absent.

Recall is the share of the exact top-k ids an index returns (recall@1: the top id itself).
``RECALL_CASES`` states, per kind and setting, the floors and what was measured: flat, and
hnsw and ivf at a stated accurate setting, reach 0.99 at 1 and at 10; IndexConfig's defaults
are guarded at lower floors (they measure hnsw 0.993 / 0.887, ivf 0.860 / 0.565 on this
data); ivfpq (16-byte codes) must reach 0.85 at 1 and 0.25 at 10 (measured 0.90 / 0.334).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceledger.config import IndexConfig
from faceledger.gallery.index import INDEX_KINDS, ExactIndex, VectorIndex, index_class, load_index

FAISS_KINDS = [k for k in INDEX_KINDS if k != "exact"]
EXACT_LIKE = {"exact", "flat"}
"""Kinds whose results are exact by construction (scores and ids equal the reference)."""

SMALL = {"hnsw_m": 16, "ivf_nlist": 4, "ivf_nprobe": 4, "pq_bytes": 8}
"""Parameters for the small cases: IVF probes every list, so ivf is exact there too."""

RAW_FLOATS = {"exact", "flat", "hnsw", "ivf"}
"""Kinds that store the vectors themselves (ivfpq keeps codes): a removed vector's bytes
must then be absent from the saved file."""


def make(kind: str, dim: int, params: dict[str, Any] | None = None) -> VectorIndex:
    if kind == "exact":
        return ExactIndex.empty(dim)
    index: VectorIndex = index_class(kind)(dim, dict(params or {}))
    return index


def normalised(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def filled(
    kind: str, n: int, d: int = 32, seed: int = 0
) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    """An index of ``n`` random unit vectors under scattered ids, and those vectors and ids."""
    rng = np.random.default_rng(seed)
    vectors = normalised(rng, n, d)
    ids = rng.permutation(10 * n + 10)[:n].astype(np.int64) + 7
    index = make(kind, d, SMALL)
    index.add(vectors, ids)
    return index, vectors, ids


def assert_well_formed(scores: np.ndarray, ids: np.ndarray, m: int, k: int) -> None:
    assert scores.shape == ids.shape == (m, k)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    pad = ids == -1
    assert np.array_equal(pad, np.isneginf(scores)), "padding is -1 with -inf, together"
    # padding only at the tail; real scores are finite and best first
    assert np.all(np.diff(pad.astype(np.int8), axis=1) >= 0)
    assert np.all(np.isfinite(scores[~pad]))
    floor = np.where(pad, np.finfo(np.float32).min, scores)  # no inf - inf
    assert np.all(np.diff(floor, axis=1) <= 1e-6)
    for row in ids:
        real = row[row >= 0]
        assert np.unique(real).size == real.size, "an id is returned once per row"


# ---- the array contract -----------------------------------------------------------------


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_empty_index_returns_padding(kind: str) -> None:
    index = make(kind, 16, SMALL)
    assert index.dim == 16 and index.size == 0 and index.ids().size == 0
    queries = normalised(np.random.default_rng(1), 3, 16)
    scores, ids = index.search(queries, 5)
    assert_well_formed(scores, ids, 3, 5)
    assert np.all(ids == -1) and np.all(np.isneginf(scores))
    assert index.remove(np.array([1, 2])) == 0
    json.dumps(index.params())


@pytest.mark.parametrize("kind", INDEX_KINDS)
@pytest.mark.parametrize("n", [0, 5, 300])
def test_no_queries_and_k_zero(kind: str, n: int) -> None:
    index, _, _ = filled(kind, n) if n else (make(kind, 32, SMALL), None, None)
    scores, ids = index.search(np.zeros((0, 32), np.float32), 4)
    assert_well_formed(scores, ids, 0, 4)
    scores, ids = index.search(normalised(np.random.default_rng(2), 2, 32), 0)
    assert scores.shape == ids.shape == (2, 0)


@pytest.mark.parametrize("kind", INDEX_KINDS)
@pytest.mark.parametrize(("n", "k"), [(7, 3), (7, 12), (300, 10), (300, 400)])
def test_best_first_and_padded_like_exact(kind: str, n: int, k: int) -> None:
    index, vectors, ids = filled(kind, n)
    reference = ExactIndex(vectors, ids)
    queries = np.concatenate([vectors[:5], normalised(np.random.default_rng(3), 15, 32)])
    scores, got = index.search(queries, k)
    want_scores, want = reference.search(queries, k)
    assert_well_formed(scores, got, len(queries), k)
    assert np.all(got[:, min(k, n) :] == -1), "k beyond the size pads the tail"
    assert np.all(got[:5, 0] == ids[:5]), "a stored vector finds itself first"
    if kind != "ivfpq":  # PQ scores are approximations; the others are inner products
        found = got >= 0
        order = np.argsort(ids)
        rows = order[np.minimum(np.searchsorted(ids[order], got), n - 1)]
        true = np.einsum("md,mkd->mk", queries, vectors[rows])
        np.testing.assert_allclose(scores[found], true[found], atol=1e-5)
        # on this data (ivf probes every list, hnsw's breadth covers it) all equal the reference
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    else:
        assert np.mean(got[:, :1] == want[:, :1]) >= 0.9


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_single_query_vector(kind: str) -> None:
    index, vectors, ids = filled(kind, 50)
    scores, got = index.search(vectors[3], 2)
    assert_well_formed(scores, got, 1, 2)
    assert got[0, 0] == ids[3]


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_dimension_mismatch_names_both(kind: str) -> None:
    index, _, _ = filled(kind, 20)
    for bad in (np.zeros((2, 16), np.float32), np.zeros(16, np.float32)):
        with pytest.raises(ValueError, match=r"(?s)(16.*32|32.*16)"):
            index.search(bad, 3)
    with pytest.raises(ValueError, match=r"(?s)(16.*32|32.*16)"):
        index.add(np.zeros((2, 16), np.float32), np.array([900_001, 900_002]))
    assert index.size == 20


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_duplicate_and_bad_ids_refused(kind: str) -> None:
    index, vectors, ids = filled(kind, 40)
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="already"):
        index.add(normalised(rng, 2, 32), np.array([ids[0], 10**9]))
    with pytest.raises(ValueError, match="unique"):
        index.add(normalised(rng, 2, 32), np.array([10**9, 10**9]))
    with pytest.raises(ValueError):
        index.add(normalised(rng, 1, 32), np.array([-3]))
    with pytest.raises(ValueError):
        index.add(normalised(rng, 2, 32), np.array([10**9]))
    assert index.size == 40
    assert sorted(index.ids().tolist()) == sorted(ids.tolist())
    assert index.search(vectors[0], 1)[1][0, 0] == ids[0]


@pytest.mark.parametrize("kind", INDEX_KINDS)
@pytest.mark.parametrize("n", [40, 400])
def test_remove_then_add(kind: str, n: int) -> None:
    index, vectors, ids = filled(kind, n)
    held = dict(zip(ids.tolist(), vectors, strict=True))
    # 10% first (hnsw keeps tombstones), then past 20% in all (hnsw rebuilds its graph)
    for share in (0.1, 0.15):
        live = np.array(sorted(held))
        gone = np.random.default_rng(5).choice(live, int(share * n), replace=False)
        assert index.remove(np.r_[gone, 10**12, 10**12 + 1]) == gone.size, "unknown ids ignored"
        assert index.remove(gone) == 0
        removed = {int(i): held.pop(int(i)) for i in gone}
        assert index.size == len(held)
        assert sorted(index.ids().tolist()) == sorted(held)
        own = np.stack(list(removed.values()))
        _, got = index.search(own, 10)
        assert not np.isin(got, gone).any(), "removed ids are never returned"
        assert np.isin(got[got >= 0], list(held)).all()
    # add after remove, the removed ids among them
    back = np.array(list(removed)[:5])
    fresh = normalised(np.random.default_rng(6), 5, 32)
    index.add(fresh, back)
    for i, j in zip(back, fresh, strict=True):
        held[int(i)] = j
    assert index.size == len(held)
    _, got = index.search(fresh, 3)
    assert np.array_equal(got[:, 0], back)
    # forget everything
    assert index.remove(np.array(list(held))) == len(held)
    assert index.size == 0 and index.ids().size == 0
    _, got = index.search(fresh, 4)
    assert np.all(got == -1)


@pytest.mark.parametrize("kind", INDEX_KINDS)
@pytest.mark.parametrize("n", [60, 400])
def test_save_and_load_round_trip(kind: str, n: int, tmp_path: Path) -> None:
    index, vectors, ids = filled(kind, n)
    gone = ids[: n // 10]
    index.remove(gone)
    path = tmp_path / f"{kind}.index"
    index.save(path)
    params = json.loads(json.dumps(index.params()))
    loaded = load_index(path, kind, 32, params)
    assert loaded.size == index.size and loaded.dim == 32
    assert sorted(loaded.ids().tolist()) == sorted(index.ids().tolist())
    assert loaded.params() == index.params()
    queries = np.concatenate([vectors, normalised(np.random.default_rng(7), 20, 32)])
    a_scores, a_ids = index.search(queries, 10)
    b_scores, b_ids = loaded.search(queries, 10)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_allclose(a_scores, b_scores, atol=1e-6 if kind in EXACT_LIKE else 1e-5)
    assert not np.isin(b_ids, gone).any()
    if kind in RAW_FLOATS:
        data = path.read_bytes()
        assert all(v.tobytes() not in data for v in vectors[: n // 10]), "erased means erased"
        assert vectors[-1].tobytes() in data
    # the loaded one keeps working: add, remove, save again
    loaded.add(vectors[: n // 10], gone)
    assert loaded.remove(ids[-3:]) == 3
    loaded.save(path)
    again = load_index(path, kind, 32, loaded.params())
    assert again.size == n - 3


def test_index_files_of_another_kind_or_dimension_are_refused(tmp_path: Path) -> None:
    from faceledger.errors import StorageError

    index, _, _ = filled("flat", 30)
    path = tmp_path / "flat.index"
    index.save(path)
    with pytest.raises(StorageError):
        load_index(path, "flat", 64, {})
    with pytest.raises(StorageError):
        load_index(path, "hnsw", 32, {})
    path.write_bytes(b"not an index")
    with pytest.raises(StorageError):
        load_index(path, "flat", 32, {})


def test_ivfpq_needs_pq_bytes_dividing_the_dimension() -> None:
    from faceledger.errors import ConfigError

    with pytest.raises(ConfigError, match=r"(?s)48.*128"):
        make("ivfpq", 128, {"pq_bytes": 48})


@pytest.mark.parametrize("kind", ["ivf", "ivfpq"])
def test_ivf_trains_once_enough_vectors_arrived(kind: str) -> None:
    rng = np.random.default_rng(8)
    vectors = normalised(rng, 600, 32)
    index = make(kind, 32, {"pq_bytes": 8})
    index.add(vectors[:100], np.arange(100))
    assert index.params()["trained"] is False
    assert index.search(vectors[5], 1)[1][0, 0] == 5  # exact while buffered
    index.add(vectors[100:], np.arange(100, 600))
    params = index.params()
    assert params["trained"] is True and params["ivf_nlist"] == round(4 * np.sqrt(600))
    assert index.size == 600
    assert index.search(vectors[5], 1)[1][0, 0] == 5


# ---- recall on real face embeddings -----------------------------------------------------


@pytest.fixture(scope="session")
def real_embeddings() -> tuple[np.ndarray, np.ndarray]:
    """(150, 128) enrolment and (150, 128) probe embeddings of 150 LFW people (first and
    second image each), YuNet -> MobileFaceNet (ONNX; no PyTorch needed)."""
    from tests.conftest import LFW, MODELS, need

    need(LFW / "images")
    need(MODELS / "mobilefacenet.onnx")
    from faceledger.bench.lfw import LfwEmbedder, people
    from faceledger.config import load_config
    from faceledger.engine import Engine

    multi = [name for name, count in people(LFW).items() if count >= 2]
    chosen = sorted(np.random.default_rng(0).choice(len(multi), 150, replace=False))
    keys = [(multi[i], j) for i in chosen for j in (1, 2)]
    config = load_config(
        profile="fast",
        detector="yunet",
        embedder="mobilefacenet",
        flip=False,
        model_mirror=MODELS,
        offline=True,
        threads=1,
    )
    vectors, _ = LfwEmbedder(Engine(config), LFW).run(keys)
    stacked = np.stack([vectors[key] for key in keys]).astype(np.float32)
    return stacked[0::2].copy(), stacked[1::2].copy()


def distractors(real: np.ndarray, seed: int = 11) -> np.ndarray:
    """5,000 random unit vectors and 5,000 noisy copies of the real embeddings' mean
    direction (noise scales spread so their cosine to it runs from about 0.2 to 0.7)."""
    rng = np.random.default_rng(seed)
    d = real.shape[1]
    mean = real.mean(axis=0)
    mean /= np.linalg.norm(mean)
    scale = rng.uniform(0.09, 0.45, size=(5000, 1)).astype(np.float32)
    near = mean + scale * rng.normal(size=(5000, d)).astype(np.float32)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    return np.concatenate([normalised(rng, 5000, d), near]).astype(np.float32)


def recall(got: np.ndarray, want: np.ndarray, k: int) -> float:
    hits = [np.isin(w[:k][w[:k] >= 0], g[:k]).sum() for g, w in zip(got, want, strict=True)]
    return float(np.sum(hits) / np.sum(want[:, :k] >= 0))


DEFAULTS = IndexConfig().model_dump(
    include={
        "hnsw_m",
        "hnsw_ef_construction",
        "hnsw_ef_search",
        "ivf_nlist",
        "ivf_nprobe",
        "pq_bytes",
        "pq_subquantizers",
        "pq_rerank",
    }
)
"""IndexConfig's defaults (nlist then is round(4 * sqrt(10,150)) = 403)."""

RECALL_CASES = [
    # kind, setting, params, floor for recall@1, floor for recall@10   (measured here)
    ("flat", "default", DEFAULTS, 0.99, 0.99),  # 1.000 / 1.000
    ("pq", "default", DEFAULTS, 0.99, 0.99),
    ("hnsw", "default", DEFAULTS, 0.98, 0.85),  # 0.993 / 0.887
    ("hnsw", "accurate", {**DEFAULTS, "hnsw_ef_construction": 200, "hnsw_ef_search": 512},
     0.99, 0.99),  # 1.000 / 1.000
    ("ivf", "default", DEFAULTS, 0.80, 0.50),  # 0.860 / 0.565
    ("ivf", "accurate", {**DEFAULTS, "ivf_nlist": 50, "ivf_nprobe": 48}, 0.99, 0.99),  # 1 / 1
    ("ivfpq", "accurate", {**DEFAULTS, "ivf_nlist": 50, "ivf_nprobe": 48, "pq_bytes": 16},
     0.85, 0.25),  # 0.92 / 0.34
]  # fmt: skip
"""Each approximate kind at IndexConfig's defaults (a regression guard, floors under what
they measure) and at a stated setting that reaches the contract's 0.99 (hnsw and ivf; IVF
needs nearly every list probed on these nearly isotropic vectors). ivfpq runs only with
16-byte codes: PQ training of the default 64 bytes takes 10 to 60 s on two cores, over this
suite's budget; its recall@10 is low because ranks 2..10 are near ties (cosine about 0.3)
that PQ's score error reorders, while the mate (rank 1) is kept."""


@pytest.mark.parametrize("case", RECALL_CASES, ids=[f"{c[0]}-{c[1]}" for c in RECALL_CASES])
def test_recall_on_real_embeddings_with_distractors(
    case: tuple[str, str, dict[str, Any], float, float],
    real_embeddings: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    kind, setting, params, floor1, floor10 = case
    enrolled, probes = real_embeddings
    noise = distractors(enrolled)
    vectors = np.concatenate([enrolled, noise])
    ids = np.arange(vectors.shape[0], dtype=np.int64) * 2 + 1
    people = ids[: len(enrolled)]
    exact = ExactIndex(vectors, ids)
    index = make(kind, vectors.shape[1], params)
    index.add(vectors, ids)  # one add of everything: the IVF kinds train on it
    assert index.size == vectors.shape[0]
    json.dumps(index.params())

    _, want = exact.search(probes, 10)
    scores, got = index.search(probes, 10)
    assert_well_formed(scores, got, len(probes), 10)
    r1, r10 = recall(got, want, 1), recall(got, want, 10)
    rank1 = float(np.mean(got[:, 0] == people))
    print(
        f"\n{kind} ({setting}): recall@1 {r1:.4f} recall@10 {r10:.4f} (exact rank-1 "
        f"{np.mean(want[:, 0] == people):.4f}, {kind} rank-1 {rank1:.4f}) {index.params()}"
    )
    assert r1 >= floor1 and r10 >= floor10, (kind, setting, r1, r10)

    # the file gives back the same answers
    path = tmp_path / f"{kind}.index"
    index.save(path)
    loaded = load_index(path, kind, vectors.shape[1], index.params())
    np.testing.assert_array_equal(loaded.search(probes, 10)[1], got)

    # forgetting 30 people: never returned again, not even for their own vectors
    gone = people[:30]
    assert loaded.remove(gone) == 30
    for queries in (enrolled[:30], probes[:30]):
        _, after = loaded.search(queries, 10)
        assert not np.isin(after, gone).any()
    _, after = loaded.search(probes[30:], 1)
    assert np.mean(after[:, 0] == people[30:]) >= rank1 - 0.05
