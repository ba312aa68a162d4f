"""Score-level fusion (faceledger.bench.fusion): the concatenation identity and the weight
search, on small synthetic vectors (no LFW needed); one cheap check on cached LFW vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceledger.bench import fusion
from faceledger.bench.lfw import Pair


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_fused_dot_product_is_the_weighted_mean_of_cosines() -> None:
    rng = np.random.default_rng(0)
    a = [rng.normal(size=(7, d)) for d in (16, 8, 32)]  # not normalised: fuse normalises
    b = [rng.normal(size=(5, d)) for d in (16, 8, 32)]
    weights = (0.5, 0.2, 0.3)
    fa, fb = fusion.fuse_matrix(a, weights), fusion.fuse_matrix(b, weights)
    np.testing.assert_allclose(np.linalg.norm(fa, axis=1), 1.0, rtol=1e-5)
    cosines = [_unit(x) @ _unit(y).T for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(fa @ fb.T, fusion.fused_score(cosines, weights), atol=1e-5)
    # Unnormalised weights mean the same; a zero weight drops the member.
    np.testing.assert_allclose(fusion.fuse_matrix(a, (5, 2, 3)), fa, atol=1e-6)
    only_first = fusion.fuse_matrix(a, (1, 0, 0))
    np.testing.assert_allclose(
        only_first @ fusion.fuse_matrix(b, (1, 0, 0)).T, cosines[0], atol=1e-5
    )


def test_fuse_by_key_and_znorm_weights() -> None:
    rng = np.random.default_rng(1)
    keys = [("p", i) for i in range(1, 5)]
    m1 = {k: rng.normal(size=4) for k in keys}
    m2 = {k: rng.normal(size=3) for k in keys[:3]}  # one key missing: dropped
    fused = fusion.fuse([m1, m2], (1, 1))
    assert sorted(fused) == keys[:3]
    assert fused[keys[0]].shape == (7,)
    # z-score fusion is concatenation with weights w / sigma (up to an affine map of scores).
    assert fusion.znorm_weights((0.5, 0.5), (0.1, 0.3)) == pytest.approx((0.75, 0.25))


def test_simplex_grid() -> None:
    grid = fusion.simplex_grid(3, 0.05)
    assert len(grid) == 231  # C(22, 2)
    assert all(abs(sum(w) - 1) < 1e-9 for w in grid)
    assert (1.0, 0.0, 0.0) in grid and (0.0, 0.0, 1.0) in grid
    with pytest.raises(ValueError):
        fusion.simplex_grid(2, 0.3)


def _synthetic(seed: int = 2) -> tuple[list[dict[tuple[str, int], np.ndarray]], list[Pair]]:
    """Two 'models' of 60 people x 3 photos: one informative, one nearly noise."""
    rng = np.random.default_rng(seed)
    people, photos, dim = 60, 3, 24
    identity = rng.normal(size=(people, dim))
    good, noise = {}, {}
    for p in range(people):
        for i in range(1, photos + 1):
            key = (f"person{p:02d}", i)
            good[key] = identity[p] + 0.6 * rng.normal(size=dim)
            noise[key] = 0.1 * identity[p] + rng.normal(size=dim)
    pairs = [Pair((f"person{p:02d}", 1), (f"person{p:02d}", 2), True) for p in range(people)]
    pairs += [
        Pair((f"person{p:02d}", 3), (f"person{(p + 1) % people:02d}", 3), False)
        for p in range(people)
    ]
    unit = [{k: v / np.linalg.norm(v) for k, v in m.items()} for m in (good, noise)]
    return unit, pairs


def test_weight_search_prefers_the_informative_member() -> None:
    members, pairs = _synthetic()
    view1 = fusion.View1(members, pairs, fmrs=(1e-2,))
    assert len(view1.keys) == 60 * 3
    search = fusion.search_weights(view1, step=0.1)
    assert len(search.grid) == 11
    assert search.best.weights[0] >= 0.7
    noise_only = next(s for s in search.grid if s.weights == (0.0, 1.0))
    assert search.best.loss < noise_only.loss
    # The View 1 score matches a direct computation on fused vectors.
    fused = fusion.fuse(members, search.best.weights)
    cal = fusion.calibrate(fused, pairs)
    assert 1 - cal.tar[1e-2] == pytest.approx(search.best.fnmr[1e-2])
    # z-score search converts each grid point to concatenation weights.
    z = fusion.search_weights(view1, step=0.5, sigmas=view1.sigmas())
    assert len(z.grid) == 3 and z.grid[1].weights != (0.5, 0.5)


def test_aggregation_strategies() -> None:
    members, _ = _synthetic(3)
    vectors = members[0]
    counts = {f"person{p:02d}": 3 for p in range(60)} | {"solo": 1}
    vectors = {**vectors, ("solo", 1): vectors[("person00", 1)] * -1}
    quality = {k: 1.0 for k in vectors}
    results = {s: fusion.multi_template(vectors, counts, s, quality) for s in fusion.STRATEGIES}
    for r in results.values():
        assert r["closed_searches"] == 120  # 60 people, 2 held-out choices
        assert 0.0 <= r["rank1"] <= r["rank5"] <= 1.0
    # Equal qualities: the weighted mean is the mean.
    assert results["qmean"] == results["mean"]
    assert results["mean"]["rank1"] >= results["single"]["rank1"]
    one = fusion.aggregate(np.eye(3)[:2], np.array([3.0, 1.0]))
    np.testing.assert_allclose(one, np.array([3, 1, 0]) / np.sqrt(10), atol=1e-6)


def test_cached_lfw_vectors_load_when_present() -> None:
    """Nothing heavy: only when a bench run has cached a model's vectors here."""
    cache = Path(".cache/bench")
    path = fusion.cache_file(cache, "scrfd_2.5g", "edgeface_xs+flip")
    if not path.is_file():
        pytest.skip(f"{path} absent (made by faceledger bench lfw -p accurate)")
    vectors = fusion.load_vectors(cache, "scrfd_2.5g", "edgeface_xs+flip")
    key = next(iter(vectors))
    assert isinstance(key[0], str) and isinstance(key[1], int)
    assert np.linalg.norm(vectors[key]) == pytest.approx(1.0, abs=1e-5)
