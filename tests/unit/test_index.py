"""ExactIndex against a naive numpy reference (full argsort of every similarity)."""

from __future__ import annotations

import numpy as np
import pytest

from faceledger.gallery import ExactIndex


def normalised(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def reference(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    m, n = queries.shape[0], vectors.shape[0]
    scores = np.full((m, k), -np.inf, dtype=np.float32)
    ids = np.full((m, k), -1, dtype=np.int64)
    if n:
        sims = queries.astype(np.float32) @ vectors.astype(np.float32).T
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        kk = order.shape[1]
        ids[:, :kk] = order
        scores[:, :kk] = np.take_along_axis(sims, order, axis=1)
    return scores, ids


@pytest.mark.parametrize(
    ("n", "k"),
    [(0, 1), (0, 5), (1, 1), (1, 4), (7, 3), (7, 7), (7, 20), (100, 1), (100, 10), (500, 64)],
)
def test_exact_index_matches_naive_reference(n: int, k: int) -> None:
    rng = np.random.default_rng(1000 * n + k)
    d = 32
    vectors = normalised(rng, n, d)
    queries = normalised(rng, 9, d)
    index = ExactIndex(vectors if n else np.zeros((0, d), np.float32))
    assert index.size == n

    scores, ids = index.search(queries, k)
    want_scores, want_ids = reference(vectors, queries, k)
    assert scores.shape == ids.shape == (9, k)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-6)
    # padding beyond the index size
    assert np.all(ids[:, n:] == -1)
    assert np.all(np.isneginf(scores[:, n:]))
    # rows are best first
    filled = scores[:, : min(k, n)]
    assert np.all(np.diff(filled, axis=1) <= 0)


def test_single_query_vector_is_accepted() -> None:
    rng = np.random.default_rng(3)
    vectors = normalised(rng, 10, 8)
    scores, ids = ExactIndex(vectors).search(vectors[4], 2)
    assert ids.shape == (1, 2)
    assert ids[0, 0] == 4
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_empty_index_from_empty_gallery_shape() -> None:
    index = ExactIndex(np.zeros((0, 0), np.float32))  # what an empty Gallery.vectors returns
    scores, ids = index.search(np.ones((2, 128), np.float32), 3)
    assert index.size == 0
    assert np.all(ids == -1) and np.all(np.isneginf(scores))


def test_no_queries_gives_empty_result() -> None:
    index = ExactIndex(np.eye(4, dtype=np.float32))
    scores, ids = index.search(np.zeros((0, 4), np.float32), 3)
    assert scores.shape == ids.shape == (0, 3)


def test_dimension_mismatch_raises() -> None:
    index = ExactIndex(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="dimension"):
        index.search(np.ones((1, 5), np.float32), 2)


def test_vectors_must_be_a_matrix() -> None:
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        ExactIndex(np.ones(4, np.float32))
