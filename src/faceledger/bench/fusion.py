"""Score-level fusion of several embedders, and multi-photo template aggregation (an experiment).

Fusion is the weighted mean of the member models' cosine scores. With every member vector
L2-normalised, that mean is exactly the dot product of concatenated vectors::

    f(x) = [sqrt(w1 / W) e1(x), sqrt(w2 / W) e2(x), ...]      (W = w1 + w2 + ...)
    f(x) . f(y) = sum_i (w_i / W) e_i(x) . e_i(y)

and ``f(x)`` already has unit norm, so a fused model is one more embedding that a cosine
gallery and index hold unchanged. Global z-score normalisation of each model's scores
(``(s_i - mu_i) / sigma_i``, with the statistics of View 1's non-mated scores) is the same
thing under another name: ``sum_i w_i (s_i - mu_i) / sigma_i`` is an increasing affine map of
the concatenation with weights ``w_i / sigma_i``, so rankings and decisions are identical and
the thresholds map through it (see ``znorm_weights``). Only a per-comparison normalisation
(a template's or a probe's own impostor statistics) would not fit one concatenated vector.

Weights and the fused thresholds are chosen on LFW View 1 (``pairsDevTrain.txt``, the
procedure of ``faceledger bench calibrate``); View 2 is only used to report, with the
protocols of ``faceledger bench lfw``. Nothing here is wired into the product's profiles.

Reproduce (after ``faceledger bench lfw -p accurate [--embedder X] [--flip|--no-flip]``
has cached each member's vectors)::

    python -m faceledger.bench.fusion --members edgeface_xs+flip,edgeface_xxs+flip
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.bench import metrics, protocols
from faceledger.bench.lfw import Detection, ImageKey, NpzCache, Pair, image_path
from faceledger.bench.protocols import FARS, FPIRS
from faceledger.bench.run import LfwData
from faceledger.errors import ConfigError
from faceledger.types import FloatArray

Vectors = Mapping[ImageKey, np.ndarray]
SEARCH_FMRS = (1e-3, 1e-4)
"""The View 1 false-match rates whose FNMR the weight search minimises (with rank-1 errors)."""


# ---- cached vectors ---------------------------------------------------------------------


def cache_file(cache: Path, detector: str, model_id: str) -> Path:
    """Where ``LfwEmbedder`` keeps one model's LFW vectors (same naming)."""
    return cache / f"lfw-emb-{detector}-{model_id.replace('+', '-')}.npz"


def parse_key(name: str) -> ImageKey:
    person, _, number = name.rpartition("/")
    return person, int(number)


def load_vectors(cache: Path, detector: str, model_id: str) -> dict[ImageKey, np.ndarray]:
    """One model's cached LFW vectors by image key, each L2-normalised."""
    path = cache_file(cache, detector, model_id)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no cached vectors; run faceledger bench lfw for {model_id} with {detector}"
        )
    with np.load(path) as data:
        return {parse_key(k): _unit(data[k].astype(np.float32)) for k in data.files}


def load_members(
    cache: Path, detector: str, model_ids: Sequence[str]
) -> dict[str, dict[ImageKey, np.ndarray]]:
    return {m: load_vectors(cache, detector, m) for m in model_ids}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


# ---- fusion -----------------------------------------------------------------------------


def normalised(weights: Sequence[float]) -> tuple[float, ...]:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or len(w) == 0 or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be non-negative and not all zero, got {list(weights)}")
    return tuple(float(x) for x in w / w.sum())


def fuse_matrix(members: Sequence[FloatArray], weights: Sequence[float]) -> FloatArray:
    """Rows of each member (n, d_i), L2-normalised, concatenated with weights sqrt(w_i / W)."""
    w = normalised(weights)
    parts = []
    for member, wi in zip(members, w, strict=True):
        x = np.asarray(member, dtype=np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        parts.append(np.float32(np.sqrt(wi)) * x)
    return np.concatenate(parts, axis=1)


def fuse(
    members: Sequence[Vectors], weights: Sequence[float], keys: Sequence[ImageKey] | None = None
) -> dict[ImageKey, np.ndarray]:
    """The fused vector of every key (by default the keys all members have)."""
    if keys is None:
        keys = sorted(set.intersection(*(set(m) for m in members)))
    fused = fuse_matrix([np.stack([m[k] for k in keys]) for m in members], weights)
    return dict(zip(keys, fused, strict=True))


def fused_score(scores: Sequence[FloatArray], weights: Sequence[float]) -> FloatArray:
    """Weighted mean of the members' scores (what the fused vectors' dot product equals)."""
    w = normalised(weights)
    return np.asarray(sum(wi * np.asarray(s, np.float64) for wi, s in zip(w, scores, strict=True)))


def znorm_weights(weights: Sequence[float], sigmas: Sequence[float]) -> tuple[float, ...]:
    """The concatenation weights equivalent to z-score fusion with ``weights``: w_i / sigma_i."""
    return normalised([w / s for w, s in zip(weights, sigmas, strict=True)])


def simplex_grid(members: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector on the simplex with entries that are multiples of ``step``."""
    n = round(1 / step)
    if members < 1 or abs(n * step - 1) > 1e-9:
        raise ValueError(f"step must divide 1 (got {step}) and members must be >= 1")
    return [
        tuple(c / n for c in combo)
        for combo in itertools.product(range(n + 1), repeat=members)
        if sum(combo) == n
    ]


# ---- View 1: weight search and calibration ----------------------------------------------


@dataclass(frozen=True)
class View1Score:
    weights: tuple[float, ...]
    fnmr: dict[float, float]
    """FNMR of View 1's mated pairs at the threshold set on its non-mated pairs."""
    rank1: float
    """Closed set among View 1's images: first image of each person enrolled, others probe."""
    auc: float

    @property
    def loss(self) -> float:
        return sum(self.fnmr.values()) + (1 - self.rank1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "weights": [round(w, 4) for w in self.weights],
            "fnmr": {f"{f:g}": round(v, 5) for f, v in self.fnmr.items()},
            "rank1": round(self.rank1, 5),
            "auc": round(self.auc, 6),
            "loss": round(self.loss, 5),
        }


class View1:
    """Each member's View 1 scores, computed once, so that a weight vector costs one sum.

    Scores of pairs: mated = the file's same-person pairs; non-mated = every pair of images
    of two different people among the file's images (as ``protocols.calibration``). The
    closed set: the first of each person's View 1 images enrolled, the others searched.
    """

    def __init__(
        self, members: Sequence[Vectors], pairs: Sequence[Pair], fmrs: Sequence[float] = SEARCH_FMRS
    ) -> None:
        self.fmrs = tuple(fmrs)
        keys = sorted({k for p in pairs for k in (p.a, p.b)})
        index = {k: i for i, k in enumerate(keys)}
        person = np.array([k[0] for k in keys])
        upper = np.triu(np.ones((len(keys), len(keys)), dtype=bool), k=1)
        impostor = upper & (person[:, None] != person[None, :])
        mated_pairs = [p for p in pairs if p.same]
        ia = np.array([index[p.a] for p in mated_pairs])
        ib = np.array([index[p.b] for p in mated_pairs])
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k[0], i)
        gallery = np.array(sorted(first.values()))
        column = {keys[g][0]: c for c, g in enumerate(gallery)}
        probes = np.array([i for i, k in enumerate(keys) if first[k[0]] != i])
        self.mates = np.array([column[keys[i][0]] for i in probes])
        self.mated: list[FloatArray] = []
        self.non_mated: list[FloatArray] = []
        self.ident: list[FloatArray] = []
        for m in members:
            x = np.stack([m[k] for k in keys]).astype(np.float32)
            sims = x @ x.T
            self.non_mated.append(sims[impostor])
            self.mated.append(np.einsum("ij,ij->i", x[ia], x[ib]))
            self.ident.append(sims[np.ix_(probes, gallery)])
        self.keys = keys
        most = max(int(np.floor(f * len(self.non_mated[0]) + 1e-9)) for f in self.fmrs) + 1
        self._top = min(most, len(self.non_mated[0]))

    def sigmas(self) -> list[float]:
        return [float(s.std()) for s in self.non_mated]

    def means(self) -> list[float]:
        return [float(s.mean()) for s in self.non_mated]

    def score(self, weights: Sequence[float]) -> View1Score:
        w = normalised(weights)
        non = _weighted(self.non_mated, w)
        mated = _weighted(self.mated, w)
        n = len(non)
        top = np.sort(np.partition(non, n - self._top)[n - self._top :])[::-1]
        fnmr = {}
        for f in self.fmrs:
            allowed = int(np.floor(f * n + 1e-9))
            threshold = np.nextafter(top[allowed], np.inf) if allowed < len(top) else top[-1]
            fnmr[f] = float(np.mean(mated < threshold))
        ident = _weighted(self.ident, w)
        rank1 = metrics.rank_k(ident, self.mates, 1)
        # AUC from a subsample of non-mated scores (a tie-break only).
        auc = metrics.auc(mated, non[:: max(1, n // 200_000)])
        return View1Score(w, fnmr, rank1, auc)


def _weighted(arrays: Sequence[FloatArray], weights: Sequence[float]) -> FloatArray:
    out = np.zeros_like(arrays[0], dtype=np.float32)
    for a, w in zip(arrays, weights, strict=True):
        if w:
            out += np.float32(w) * a
    return out


@dataclass(frozen=True)
class Search:
    best: View1Score
    grid: list[View1Score] = field(repr=False)

    def top(self, n: int = 10) -> list[View1Score]:
        return sorted(self.grid, key=_rank)[:n]


def _rank(s: View1Score) -> tuple[float, float]:
    return (round(s.loss, 9), -s.auc)


def search_weights(
    view1: View1, step: float = 0.05, sigmas: Sequence[float] | None = None
) -> Search:
    """The simplex-grid weights with the least View 1 loss (sum of FNMR at ``view1.fmrs`` and
    the rank-1 error; ties broken by AUC). With ``sigmas`` the grid is over z-score weights
    (each converted to its concatenation weights, ``znorm_weights``)."""
    members = len(view1.mated)
    grid = []
    for point in simplex_grid(members, step):
        grid.append(view1.score(point if sigmas is None else znorm_weights(point, sigmas)))
    return Search(min(grid, key=_rank), grid)


def calibrate(fused: Vectors, pairs: Sequence[Pair]) -> protocols.Calibration:
    """Fused thresholds at FMR 1e-2/1e-3/1e-4 on View 1, exactly as ``bench calibrate``."""
    return protocols.calibration(fused, pairs)


# ---- View 2: the report -----------------------------------------------------------------


def evaluate_view2(vectors: Vectors, data: LfwData) -> dict[str, float]:
    """The numbers of ``faceledger bench lfw`` (verification, closed set, open set)."""
    ver = protocols.verification(vectors, data.pairs)
    ident = protocols.identification(vectors, data.counts)
    ope = protocols.open_set(vectors, data.counts)
    return {
        "lfw_acc": ver.accuracy,
        "lfw_acc_std": ver.accuracy_std,
        "auc": ver.auc,
        **{f"tar_at_far_{f:.0e}".replace("e-0", "e-"): ver.tar_at_far[f] for f in FARS},
        "rank1": ident.rank1,
        "rank5": ident.rank5,
        **{f"fnir_at_fpir_{f:g}": ope.fnir_at_fpir[f] for f in FPIRS},
    }


def sweep_view2(
    members: Sequence[Vectors], data: LfwData, grid: Sequence[Sequence[float]]
) -> list[dict[str, Any]]:
    """View 2's numbers at every weight vector of ``grid`` (each member's scores computed
    once). A diagnostic of how much any weighting could give (an oracle bound): choosing
    weights by it would tune on the test set, so weights come from View 1 only."""
    same = np.array([p.same for p in data.pairs])
    folds = np.array([p.fold for p in data.pairs])
    gallery, probes = protocols.identification_keys(data.counts)
    column = {name: i for i, (name, _) in enumerate(gallery)}
    mates = np.array([column[name] for name, _ in probes])
    enrolled, mated, non_mated = protocols.open_set_split(data.counts)
    open_column = {name: i for i, (name, _) in enumerate(enrolled)}
    open_mates = np.array([open_column[name] for name, _ in mated])
    pairs_s, ident_s, mated_s, non_s = [], [], [], []
    for m in members:

        def stack(keys: Sequence[ImageKey], m: Vectors = m) -> FloatArray:
            return np.stack([m[k] for k in keys]).astype(np.float32)

        pairs_s.append(protocols.pair_scores(m, data.pairs).astype(np.float32))
        ident_s.append(stack(probes) @ stack(gallery).T)
        g = stack(enrolled)
        mated_s.append(stack(mated) @ g.T)
        non_s.append(stack(non_mated) @ g.T)
    rows = []
    for weights in grid:
        w = normalised(weights)
        scores = _weighted(pairs_s, w)
        outcome = metrics.open_set(_weighted(mated_s, w), open_mates, _weighted(non_s, w))
        ident = _weighted(ident_s, w)
        rows.append(
            {
                "weights": [round(x, 4) for x in w],
                "lfw_acc": float(metrics.kfold_accuracy(scores, same, folds).mean()),
                **{
                    f"tar_at_far_{f:.0e}".replace("e-0", "e-"): metrics.tar_at_far(
                        scores[same], scores[~same], f
                    )
                    for f in FARS
                },
                "rank1": metrics.rank_k(ident, mates, 1),
                **{f"fnir_at_fpir_{f:g}": outcome.fnir_at_fpir(f) for f in FPIRS},
            }
        )
    return rows


# ---- multi-photo templates --------------------------------------------------------------

STRATEGIES = ("single", "max", "mean", "qmean")
"""single: one photo enrolled (today's protocols); max: one template per photo, a subject's
score its best template's (``gallery.matcher``); mean: the renormalised mean of the photos'
vectors as one template; qmean: the same mean weighted by each photo's quality."""


def aggregate(vectors: FloatArray, quality: FloatArray | None = None) -> FloatArray:
    """One unit template from a subject's photo vectors, optionally quality-weighted."""
    w = np.ones(len(vectors)) if quality is None else np.asarray(quality, np.float64)
    if w.sum() <= 0:
        w = np.ones(len(vectors))
    return _unit((w[:, None] * vectors).sum(axis=0).astype(np.float32))


@dataclass(frozen=True)
class MultiSplit:
    """Photos enrolled per subject and the photos searched, for one held-out choice."""

    enrolled: dict[str, list[ImageKey]]
    mated: list[ImageKey]
    non_mated: list[ImageKey]


def multi_splits(counts: Mapping[str, int], open_set: bool) -> list[MultiSplit]:
    """Two splits: each person with 2+ photos searches with their last (then first) photo
    and is enrolled with all the others. Closed set: everyone enrolled (people with one
    photo as distractors). Open set: every other person with 2+ photos enrolled (as
    ``protocols.open_set_split``), non-mated searches = every photo of everyone else."""
    multi = [name for name, n in counts.items() if n >= 2]
    targets = multi[::2] if open_set else multi
    splits = []
    for held in ("last", "first"):
        enrolled: dict[str, list[ImageKey]] = {}
        mated = []
        for name in targets:
            n = counts[name]
            out = n if held == "last" else 1
            enrolled[name] = [(name, i) for i in range(1, n + 1) if i != out]
            mated.append((name, out))
        if open_set:
            chosen = set(targets)
            non_mated = [
                (name, i) for name, n in counts.items() if name not in chosen
                for i in range(1, n + 1)
            ]  # fmt: skip
        else:
            non_mated = []
            for name, n in counts.items():
                if n == 1:
                    enrolled[name] = [(name, 1)]
        splits.append(MultiSplit(dict(sorted(enrolled.items())), mated, non_mated))
    return splits


def _subject_scores(
    vectors: Vectors,
    probes: Sequence[ImageKey],
    enrolled: Mapping[str, list[ImageKey]],
    strategy: str,
    quality: Mapping[ImageKey, float] | None,
) -> FloatArray:
    """(probes x subjects) scores, subjects in ``enrolled`` order."""
    p = np.stack([vectors[k] for k in probes])
    if strategy == "max":
        photos = [k for ks in enrolled.values() for k in ks]
        starts = np.cumsum([0] + [len(ks) for ks in enrolled.values()])[:-1]
        sims = p @ np.stack([vectors[k] for k in photos]).T
        return np.maximum.reduceat(sims, starts, axis=1)
    if strategy == "single":
        g = np.stack([vectors[ks[0]] for ks in enrolled.values()])
    elif strategy in ("mean", "qmean"):
        if strategy == "qmean" and quality is None:
            raise ValueError("qmean needs a quality per photo")
        g = np.stack(
            [
                aggregate(
                    np.stack([vectors[k] for k in ks]),
                    None if strategy == "mean" or quality is None else
                    np.array([quality[k] for k in ks]),
                )
                for ks in enrolled.values()
            ]
        )  # fmt: skip
    else:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
    return p @ g.T


def multi_template(
    vectors: Vectors,
    counts: Mapping[str, int],
    strategy: str,
    quality: Mapping[ImageKey, float] | None = None,
    min_photos: int = 2,
) -> dict[str, float]:
    """Closed-set rank-1/rank-5 and open-set FNIR@FPIR with several photos per subject.

    ``min_photos``: only count mated searches of people with at least this many photos
    (3: the people for whom aggregation can differ from one photo); the galleries and the
    non-mated searches are the same whatever it is."""
    ranks1, ranks5, opened_mated, opened_non = [], [], [], []
    for split in multi_splits(counts, open_set=False):
        column = {name: i for i, name in enumerate(split.enrolled)}
        probes = [k for k in split.mated if counts[k[0]] >= min_photos]
        sims = _subject_scores(vectors, probes, split.enrolled, strategy, quality)
        mates = np.array([column[k[0]] for k in probes])
        ranks1.append(metrics.rank_k(sims, mates, 1) * len(probes))
        ranks5.append(metrics.rank_k(sims, mates, 5) * len(probes))
        n_closed = len(probes)
    for split in multi_splits(counts, open_set=True):
        column = {name: i for i, name in enumerate(split.enrolled)}
        probes = [k for k in split.mated if counts[k[0]] >= min_photos]
        mated_sim = _subject_scores(vectors, probes, split.enrolled, strategy, quality)
        non_sim = _subject_scores(vectors, split.non_mated, split.enrolled, strategy, quality)
        outcome = metrics.open_set(mated_sim, np.array([column[k[0]] for k in probes]), non_sim)
        opened_mated.append(outcome.mated_scores)
        opened_non.append(outcome.non_mated_scores)
    pooled = metrics.OpenSet(np.concatenate(opened_mated), np.concatenate(opened_non))
    searches = 2 * n_closed
    return {
        "rank1": float(sum(ranks1) / searches),
        "rank5": float(sum(ranks5) / searches),
        **{f"fnir_at_fpir_{f:g}": pooled.fnir_at_fpir(f) for f in FPIRS},
        "closed_searches": searches,
        "open_mated_searches": len(pooled.mated_scores),
        "open_non_mated_searches": len(pooled.non_mated_scores),
    }


QUALITY_COLUMNS = ("detector", "laplacian", "quality")
"""The columns of ``photo_quality``: detector score, variance of the Laplacian of the 112 px
aligned crop (``faces.quality.sharpness``), and ``faces.quality.measure(...).scores()``
when that module has it (NaN otherwise)."""


def photo_quality(
    engine: Any, root: Path, keys: Sequence[ImageKey], cache: Path | None
) -> dict[ImageKey, np.ndarray]:
    """:data:`QUALITY_COLUMNS` of the face ``bench lfw`` uses in each photo, cached as
    ``lfw-quality-<detector>.npz``. The face is the one of the detection cache (which does
    not keep the detector's score: the fresh detection nearest its box gives it)."""
    from faceledger.bench.lfw import detect_one
    from faceledger.faces import quality as q
    from faceledger.types import Faces

    measure = getattr(q, "measure", None)
    det = engine.detector_card.name
    detections = NpzCache(cache / f"lfw-det-{det}.npz" if cache else None)
    rows = NpzCache(cache / f"lfw-quality-{det}.npz" if cache else None)
    with rows.saving():
        for key in keys:
            if key in rows:
                continue
            image = engine.read(image_path(root, key))
            faces = engine.detect(image)
            chosen = (
                Detection.unpack(detections[key])
                if key in detections
                else detect_one(engine, image)
            )
            score = 0.0
            if len(faces) and not chosen.fallback:
                dist = np.abs(faces.boxes - chosen.box[None]).sum(axis=1)
                score = float(faces.scores[int(np.argmin(dist))])
            crop = engine.aligner.align(image, chosen.faces())
            face = Faces(chosen.box[None], np.array([score]), chosen.landmarks[None])
            overall = float(measure(image, face).scores()[0]) if measure else float("nan")
            rows.put(key, np.array([score, float(q.sharpness(crop)[0]), overall], np.float32))
    return {k: rows[k] for k in keys}


# ---- the experiment ---------------------------------------------------------------------


def experiment(
    data_root: Path,
    cache: Path,
    detector: str,
    model_ids: Sequence[str],
    *,
    step: float = 0.05,
    znorm: bool = False,
    weights: Sequence[float] | None = None,
    loaded: Mapping[str, Vectors] | None = None,
) -> dict[str, Any]:
    """Weights searched (or given) and thresholds set on View 1, then the View 2 report.

    ``loaded``: member vectors already in memory, by model id (else read from ``cache``)."""
    members = (
        {m: loaded[m] for m in model_ids} if loaded else load_members(cache, detector, model_ids)
    )
    vectors = list(members.values())
    view1_pairs = read_view1(data_root)
    view1 = View1(vectors, view1_pairs)
    sigmas = view1.sigmas()
    search = None
    if weights is None:
        search = search_weights(view1, step, sigmas if znorm else None)
        chosen = search.best
    else:
        chosen = view1.score(znorm_weights(weights, sigmas) if znorm else weights)
    fused = fuse(vectors, chosen.weights)
    cal = calibrate(fused, view1_pairs)
    data = LfwData.open(data_root)
    return {
        "members": list(model_ids),
        "detector": detector,
        "znorm": znorm,
        "weights": [round(w, 4) for w in chosen.weights],
        "view1_sigmas": [round(s, 5) for s in sigmas],
        "view1_means": [round(m, 5) for m in view1.means()],
        "view1": chosen.as_dict(),
        "view1_top": [s.as_dict() for s in search.top(8)] if search else None,
        "thresholds": {f"{f:g}": round(t, 4) for f, t in cal.thresholds.items()},
        "calibration_tar": {f"{f:g}": round(v, 4) for f, v in cal.tar.items()},
        "dim": int(next(iter(fused.values())).shape[0]),
        "view2": evaluate_view2(fused, data),
    }


def read_view1(root: Path) -> list[Pair]:
    from faceledger.bench.lfw import read_pairs

    return read_pairs(root / "pairsDevTrain.txt")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faceledger.bench.fusion", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/lfw"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench"))
    parser.add_argument("--detector", default="scrfd_2.5g")
    parser.add_argument("--members", required=True, help="model ids, comma-separated")
    parser.add_argument("--step", type=float, default=0.05, help="simplex grid step")
    parser.add_argument("--weights", help="fixed weights, comma-separated (no search)")
    parser.add_argument("--znorm", action="store_true", help="z-score each model's scores")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = experiment(
        args.data,
        args.cache,
        args.detector,
        args.members.split(","),
        step=args.step,
        znorm=args.znorm,
        weights=[float(w) for w in args.weights.split(",")] if args.weights else None,
    )
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


__all__ = [
    "QUALITY_COLUMNS",
    "STRATEGIES",
    "View1",
    "View1Score",
    "aggregate",
    "cache_file",
    "calibrate",
    "evaluate_view2",
    "experiment",
    "fuse",
    "fuse_matrix",
    "fused_score",
    "load_members",
    "load_vectors",
    "multi_template",
    "photo_quality",
    "search_weights",
    "simplex_grid",
    "sweep_view2",
    "znorm_weights",
]

if __name__ == "__main__":
    raise SystemExit(main())
