"""Biometric error rates from score arrays (higher score = more alike).

Conventions, as in ISO/IEC 19795-1 and NIST FRTE: a comparison is a *match* when its
score is at or above the threshold. FMR/FAR is the fraction of non-mated scores that
match, TAR = 1 - FNMR the fraction of mated scores that match. For 1:N searches, FPIR is the
fraction of non-mated searches whose best candidate clears the threshold, FNIR the
fraction of mated searches whose mate is not the rank-1 candidate at or above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceledger.types import FloatArray


def threshold_at_fmr(non_mated: FloatArray, fmr: float) -> float:
    """The smallest threshold whose false-match rate on ``non_mated`` is at most ``fmr``."""
    if len(non_mated) == 0:
        raise ValueError("no non-mated scores")
    ordered = np.sort(np.asarray(non_mated, dtype=np.float64))[::-1]
    allowed = int(np.floor(fmr * len(ordered) + 1e-9))
    if allowed >= len(ordered):
        return float(ordered[-1])
    # Thresholds strictly above the (allowed+1)-th highest score let at most `allowed` through.
    return float(np.nextafter(ordered[allowed], np.inf))


def tar_at_far(mated: FloatArray, non_mated: FloatArray, far: float) -> float:
    """True-accept rate at the threshold where the false-accept rate is at most ``far``."""
    return float(np.mean(np.asarray(mated) >= threshold_at_fmr(non_mated, far)))


@dataclass(frozen=True)
class Roc:
    far: FloatArray
    tar: FloatArray
    thresholds: FloatArray


def roc(mated: FloatArray, non_mated: FloatArray) -> Roc:
    """The ROC at every distinct score, from (0, 0) to (1, 1)."""
    scores = np.concatenate([mated, non_mated]).astype(np.float64)
    labels = np.concatenate([np.ones(len(mated)), np.zeros(len(non_mated))])
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.diff(scores) != 0, True]
    tp = np.cumsum(labels)[last_of_tie]
    fp = np.cumsum(1 - labels)[last_of_tie]
    return Roc(
        far=np.r_[0.0, fp / max(len(non_mated), 1)],
        tar=np.r_[0.0, tp / max(len(mated), 1)],
        thresholds=np.r_[np.inf, scores[last_of_tie]],
    )


def auc(mated: FloatArray, non_mated: FloatArray) -> float:
    """Area under the ROC (ties count half, as in the Mann-Whitney statistic)."""
    curve = roc(mated, non_mated)
    return float(np.sum(np.diff(curve.far) * (curve.tar[1:] + curve.tar[:-1]) / 2))


def best_accuracy_threshold(scores: FloatArray, same: np.ndarray) -> float:
    """The threshold that maximises accuracy on (scores, same); midpoint between scores."""
    ordered = np.sort(np.unique(scores))
    candidates = np.r_[ordered[0] - 1e-6, (ordered[:-1] + ordered[1:]) / 2, ordered[-1] + 1e-6]
    hits = (scores[None, :] >= candidates[:, None]) == same[None, :]
    return float(candidates[int(np.argmax(hits.mean(axis=1)))])


def kfold_accuracy(scores: FloatArray, same: np.ndarray, folds: np.ndarray) -> FloatArray:
    """Per-fold accuracy, each fold's threshold chosen on all the other folds (LFW View 2)."""
    accuracies = []
    for fold in np.unique(folds):
        test = folds == fold
        t = best_accuracy_threshold(scores[~test], same[~test])
        accuracies.append(np.mean((scores[test] >= t) == same[test]))
    return np.asarray(accuracies)


def rank_k(similarity: FloatArray, mate_column: np.ndarray, k: int) -> float:
    """Closed-set rank-k rate: the mate's score is among the k best of its row."""
    mate_scores = similarity[np.arange(len(similarity)), mate_column]
    better = (similarity > mate_scores[:, None]).sum(axis=1)
    return float(np.mean(better < k))


@dataclass(frozen=True)
class OpenSet:
    """Rank-1 open-set outcome of every search."""

    mated_scores: FloatArray
    """Score of the mated searches' rank-1 candidate when it is the mate, else -inf."""
    non_mated_scores: FloatArray
    """Score of the non-mated searches' rank-1 candidate."""

    def fpir(self, threshold: float) -> float:
        return float(np.mean(self.non_mated_scores >= threshold))

    def fnir(self, threshold: float) -> float:
        return float(np.mean(self.mated_scores < threshold))

    def threshold_at_fpir(self, fpir: float) -> float:
        return threshold_at_fmr(self.non_mated_scores, fpir)

    def fnir_at_fpir(self, fpir: float) -> float:
        return self.fnir(self.threshold_at_fpir(fpir))


def open_set(mated_sim: FloatArray, mate_column: np.ndarray, non_mated_sim: FloatArray) -> OpenSet:
    """Open-set outcome from mated and non-mated similarity matrices (probes x subjects)."""
    top = mated_sim.argmax(axis=1)
    best = mated_sim[np.arange(len(mated_sim)), top]
    mated = np.where(top == mate_column, best, -np.inf)
    return OpenSet(mated, non_mated_sim.max(axis=1))
