"""Metric functions against tables worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from faceledger.bench import metrics, protocols
from faceledger.bench.lfw import Pair

TEN = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])


@pytest.mark.parametrize(
    ("fmr", "passing"),
    [(0.1, [1.0]), (0.2, [0.9, 1.0]), (0.05, []), (0.0, []), (1.0, list(TEN))],
)
def test_threshold_at_fmr_lets_through_at_most_that_fraction(
    fmr: float, passing: list[float]
) -> None:
    scores = TEN.copy()
    t = metrics.threshold_at_fmr(scores, fmr)
    assert sorted(scores[scores >= t].tolist()) == passing


def test_threshold_at_fmr_needs_scores() -> None:
    with pytest.raises(ValueError, match="no non-mated"):
        metrics.threshold_at_fmr(np.array([]), 0.1)


def test_tar_at_far() -> None:
    # FAR 0.1 on TEN -> only scores above 0.9 match; 2 of the 4 mated scores do.
    assert metrics.tar_at_far(np.array([0.85, 0.95, 1.0, 0.5]), TEN, 0.1) == 0.5


@pytest.mark.parametrize(
    ("mated", "non_mated", "expected"),
    [
        ([0.9, 0.8], [0.1, 0.85], 0.75),  # 3 of the 4 (mated, non-mated) pairs ordered right
        ([0.9, 0.8], [0.1, 0.2], 1.0),
        ([0.1], [0.9], 0.0),
        ([0.5], [0.5], 0.5),  # a tie counts half
        ([0.5, 0.7], [0.5, 0.1, 0.6], 4.5 / 6),
    ],
)
def test_auc(mated: list[float], non_mated: list[float], expected: float) -> None:
    assert metrics.auc(np.array(mated), np.array(non_mated)) == pytest.approx(expected)


def test_roc_points() -> None:
    curve = metrics.roc(np.array([0.9, 0.6]), np.array([0.7, 0.1]))
    assert curve.far.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert curve.tar.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert curve.thresholds[1:].tolist() == [0.9, 0.7, 0.6, 0.1]


def test_best_accuracy_threshold_separates_when_it_can() -> None:
    scores = np.array([0.1, 0.2, 0.6, 0.7])
    same = np.array([False, False, True, True])
    t = metrics.best_accuracy_threshold(scores, same)
    assert 0.2 < t <= 0.6


def test_kfold_accuracy_picks_each_threshold_on_the_other_folds() -> None:
    # Fold 0 separates at 0.45, fold 1 at 0.85; each threshold fails the other fold's half.
    scores = np.array([0.2, 0.3, 0.6, 0.7, 0.6, 0.8, 0.9, 0.95])
    same = np.array([False, False, True, True, False, False, True, True])
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    per_fold = metrics.kfold_accuracy(scores, same, folds)
    assert per_fold.tolist() == [0.5, 0.5]


def test_rank_k() -> None:
    sims = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.7], [0.5, 0.6, 0.4]])
    mates = np.array([0, 0, 2])
    assert metrics.rank_k(sims, mates, 1) == pytest.approx(1 / 3)
    assert metrics.rank_k(sims, mates, 2) == pytest.approx(1 / 3)
    assert metrics.rank_k(sims, mates, 3) == 1.0


def test_open_set_rates() -> None:
    mated = np.array([[0.9, 0.1], [0.3, 0.6]])  # the second search finds the wrong subject
    non_mated = np.array([[0.5, 0.2], [0.1, 0.95], [0.3, 0.4]])
    outcome = metrics.open_set(mated, np.array([0, 0]), non_mated)
    assert outcome.mated_scores.tolist() == [0.9, -np.inf]
    assert outcome.non_mated_scores.tolist() == [0.5, 0.95, 0.4]
    assert outcome.fpir(0.45) == pytest.approx(2 / 3)
    assert outcome.fnir(0.45) == 0.5
    assert outcome.fnir(0.95) == 1.0
    t = outcome.threshold_at_fpir(1 / 3)  # one non-mated search of three may pass
    assert 0.5 < t <= 0.9
    assert outcome.fnir_at_fpir(1 / 3) == 0.5


def test_lfw_protocols_on_a_tiny_dataset() -> None:
    rng = np.random.default_rng(0)
    centres = {name: rng.normal(size=16) for name in ("ann", "bob", "cy", "dee", "eve")}
    counts = {"ann": 3, "bob": 2, "cy": 1, "dee": 2, "eve": 1}
    vectors = {}
    for name, n in counts.items():
        for i in range(1, n + 1):
            v = centres[name] + 0.05 * rng.normal(size=16)
            vectors[(name, i)] = v / np.linalg.norm(v)

    gallery, probes = protocols.identification_keys(counts)
    assert len(gallery) == 5 and len(probes) == 4
    ident = protocols.identification(vectors, counts)
    assert (ident.rank1, ident.rank5, ident.gallery, ident.probes) == (1.0, 1.0, 5, 4)

    enrolled, mated, non_mated = protocols.open_set_split(counts)
    assert enrolled == [("ann", 1), ("dee", 1)]  # every other person with 2+ images
    assert mated == [("ann", 2), ("ann", 3), ("dee", 2)]
    assert sorted(non_mated) == [("bob", 1), ("bob", 2), ("cy", 1), ("eve", 1)]
    assert protocols.open_set(vectors, counts).fnir_at_fpir[0.01] == 0.0

    pairs = [
        Pair(("ann", 1), ("ann", 2), True, 0),
        Pair(("ann", 1), ("bob", 1), False, 0),
        Pair(("dee", 1), ("dee", 2), True, 1),
        Pair(("cy", 1), ("eve", 1), False, 1),
    ]
    ver = protocols.verification(vectors, pairs)
    assert (ver.accuracy, ver.auc) == (1.0, 1.0)
    cal = protocols.calibration(vectors, pairs)
    # Images named: ann1, ann2, bob1, dee1, dee2, cy1, eve1 -> 21 pairs, 2 of them mated.
    assert (cal.mated_pairs, cal.non_mated_pairs) == (2, 19)
    assert cal.tar[1e-2] == 1.0


def test_euclidean_metric_ranks_like_its_distance() -> None:
    a = np.array([[0.0, 0.0], [3.0, 4.0]])
    sims = protocols.similarity(a, a, "euclidean")
    np.testing.assert_allclose(sims, [[0.0, -5.0], [-5.0, 0.0]])
