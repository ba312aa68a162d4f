"""The three LFW protocols, over vectors already computed (see ``lfw.LfwEmbedder``).

- Verification: View 2 ``pairs.txt``, 10 folds, threshold chosen on 9 folds.
- Identification (closed set): gallery = first image of every person, probes = the rest.
- Open set: half of the people with 2+ images enrolled (first image), probes = their other
  images (mated) and every image of everyone else (non-mated).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from faceledger.bench import metrics
from faceledger.bench.lfw import ImageKey, Pair
from faceledger.types import FloatArray

Vectors = Mapping[ImageKey, np.ndarray]
Metric = Literal["cosine", "euclidean"]
FARS = (1e-2, 1e-3, 1e-4)
CALIBRATION_FMRS = (*FARS, 1e-5)
"""Where thresholds are calibrated: the 1:1 strictness levels, and 1e-5 for searches of a
gallery (``ModelCard.threshold_at`` extrapolates below it). Not 1e-6: at that rate the 6
highest of View 1's 5.9M "non-mated" scores are LFW labelling errors, one person under two
names (Joseph_Blatter / Sepp_Blatter, Nan_Wang / Wang_Nan, measured with EdgeFace-XS:
cosine 0.57-0.71), so the threshold would measure LFW's errata, not the model."""
FPIRS = (0.01, 0.003)


def similarity(a: FloatArray, b: FloatArray, metric: Metric = "cosine") -> FloatArray:
    """Similarity matrix (rows of ``a`` x rows of ``b``); euclidean: minus the distance."""
    dots = a @ b.T
    if metric == "cosine":
        return dots
    sq = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2 * dots
    return -np.sqrt(np.maximum(sq, 0.0))


@dataclass(frozen=True)
class Verification:
    accuracy: float
    accuracy_std: float
    auc: float
    tar_at_far: dict[float, float]
    mated: FloatArray
    non_mated: FloatArray


def pair_scores(vectors: Vectors, pairs: Sequence[Pair], metric: Metric = "cosine") -> FloatArray:
    a = np.stack([vectors[p.a] for p in pairs])
    b = np.stack([vectors[p.b] for p in pairs])
    if metric == "cosine":
        return np.einsum("ij,ij->i", a, b)
    return -np.linalg.norm(a - b, axis=1)


def verification(
    vectors: Vectors, pairs: Sequence[Pair], metric: Metric = "cosine"
) -> Verification:
    scores = pair_scores(vectors, pairs, metric)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    per_fold = metrics.kfold_accuracy(scores, same, folds)
    mated, non_mated = scores[same], scores[~same]
    return Verification(
        accuracy=float(per_fold.mean()),
        accuracy_std=float(per_fold.std()),
        auc=metrics.auc(mated, non_mated),
        tar_at_far={far: metrics.tar_at_far(mated, non_mated, far) for far in FARS},
        mated=mated,
        non_mated=non_mated,
    )


@dataclass(frozen=True)
class Identification:
    rank1: float
    rank5: float
    gallery: int
    probes: int


def identification_keys(counts: Mapping[str, int]) -> tuple[list[ImageKey], list[ImageKey]]:
    """(gallery, probes): the first image of every person, and all the others."""
    gallery = [(name, 1) for name in counts]
    probes = [(name, i) for name, n in counts.items() for i in range(2, n + 1)]
    return gallery, probes


def identification(
    vectors: Vectors, counts: Mapping[str, int], metric: Metric = "cosine"
) -> Identification:
    gallery, probes = identification_keys(counts)
    column = {name: i for i, (name, _) in enumerate(gallery)}
    g = np.stack([vectors[k] for k in gallery])
    p = np.stack([vectors[k] for k in probes])
    mates = np.array([column[name] for name, _ in probes])
    sims = similarity(p, g, metric)
    return Identification(
        metrics.rank_k(sims, mates, 1), metrics.rank_k(sims, mates, 5), len(gallery), len(probes)
    )


@dataclass(frozen=True)
class SearchDecisions:
    """The product's 1:N answers on the closed-set gallery at one threshold: enrolled
    people's other photos named rightly or wrongly, and each of them searched as a stranger
    (against the gallery without their own photo): the share named is the measured FPIR."""

    threshold: float
    correct: float
    wrong: float
    strangers_named: float
    gallery: int
    probes: int


def search_decisions(
    vectors: Vectors, counts: Mapping[str, int], threshold: float, metric: Metric = "cosine"
) -> SearchDecisions:
    gallery, probes = identification_keys(counts)
    g = np.stack([vectors[k] for k in gallery])
    p = np.stack([vectors[k] for k in probes])
    sims = similarity(p, g, metric)
    names = np.array([name for name, _ in gallery])
    own = names[None, :] == np.array([name for name, _ in probes])[:, None]
    top = sims.argmax(axis=1)
    named = sims.max(axis=1) >= threshold
    right = names[top] == np.array([name for name, _ in probes])
    stranger = np.where(own, -np.inf, sims).max(axis=1) >= threshold
    return SearchDecisions(
        threshold, float(np.mean(named & right)), float(np.mean(named & ~right)),
        float(np.mean(stranger)), len(gallery), len(probes),
    )  # fmt: skip


@dataclass(frozen=True)
class OpenSetResult:
    fnir_at_fpir: dict[float, float]
    threshold_at_fpir: dict[float, float]
    enrolled: int
    mated_searches: int
    non_mated_searches: int
    outcome: metrics.OpenSet


def open_set_split(
    counts: Mapping[str, int],
) -> tuple[list[ImageKey], list[ImageKey], list[ImageKey]]:
    """(enrolled, mated probes, non-mated probes): every other person with 2+ images enrolled."""
    multi = [name for name, n in counts.items() if n >= 2]
    enrolled_names = set(multi[::2])
    enrolled = [(name, 1) for name in multi[::2]]
    mated = [(name, i) for name in multi[::2] for i in range(2, counts[name] + 1)]
    non_mated = [
        (name, i)
        for name, n in counts.items()
        if name not in enrolled_names
        for i in range(1, n + 1)
    ]
    return enrolled, mated, non_mated


def open_set(
    vectors: Vectors, counts: Mapping[str, int], metric: Metric = "cosine"
) -> OpenSetResult:
    enrolled, mated, non_mated = open_set_split(counts)
    column = {name: i for i, (name, _) in enumerate(enrolled)}
    g = np.stack([vectors[k] for k in enrolled])
    mated_sim = similarity(np.stack([vectors[k] for k in mated]), g, metric)
    non_mated_sim = similarity(np.stack([vectors[k] for k in non_mated]), g, metric)
    mates = np.array([column[name] for name, _ in mated])
    outcome = metrics.open_set(mated_sim, mates, non_mated_sim)
    return OpenSetResult(
        fnir_at_fpir={f: outcome.fnir_at_fpir(f) for f in FPIRS},
        threshold_at_fpir={f: outcome.threshold_at_fpir(f) for f in FPIRS},
        enrolled=len(enrolled),
        mated_searches=len(mated),
        non_mated_searches=len(non_mated),
        outcome=outcome,
    )


@dataclass(frozen=True)
class Calibration:
    thresholds: dict[float, float]
    tar: dict[float, float]
    mated_pairs: int
    non_mated_pairs: int


def calibration(vectors: Vectors, pairs: Sequence[Pair], metric: Metric = "cosine") -> Calibration:
    """Thresholds at each FMR from a View 1 pairs file.

    Mated scores: the file's same-person pairs. Non-mated: every pair of images of two
    different people among the images the file names (about 6 million pairs for
    pairsDevTrain, so FMR 1e-4 rests on hundreds of impostor scores above the threshold).
    """
    mated = pair_scores(vectors, [p for p in pairs if p.same], metric)
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    stacked = np.stack([vectors[k] for k in keys])
    sims = similarity(stacked, stacked, metric)
    person = np.array([k[0] for k in keys])
    upper = np.triu(np.ones(sims.shape, dtype=bool), k=1)
    non_mated = sims[upper & (person[:, None] != person[None, :])]
    thresholds = {f: metrics.threshold_at_fmr(non_mated, f) for f in CALIBRATION_FMRS}
    return Calibration(
        thresholds=thresholds,
        tar={f: float(np.mean(mated >= t)) for f, t in thresholds.items()},
        mated_pairs=len(mated),
        non_mated_pairs=len(non_mated),
    )
