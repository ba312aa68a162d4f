"""``faceledger bench degraded``: LFW with degraded probes, and the quality floor calibrated on it.

A public, reproducible protocol for what a camera does to faces (issue 14). Per level of
:data:`faceledger.bench.degrade.LEVELS` and one profile:

- **View 1** (``pairsDevTrain.txt``, calibration data only): every image it names is
  degraded, detected (largest face, no fallback: a face the detector misses is *no face*),
  aligned, embedded and its quality factors measured
  (:func:`faceledger.faces.quality.measure`, on the degraded image). Each degraded image is
  compared with the *clean* image of every image of another person in View 1 (non-mated,
  about 5.9 million comparisons per level) and with its clean mate in View 1's 1,100 mated
  pairs. The quality floor is calibrated here (:func:`calibrate_floor`), never on View 2.
- **View 2** (``pairs.txt``, report): the b side of each of the 6,000 pairs degraded, the a
  side clean. Per level: FMR and FNMR at the embedder card's thresholds (FMR 1e-2, 1e-3,
  1e-4 on clean View 1), without and with the floor. FMR is given on the 3,000 non-mated
  pairs and, less coarsely, on every degraded b image against every clean a image of
  another person ("cross", ~20 million comparisons). Rates are over every attempt: a pair
  whose degraded face is not found (*no face*) or scores below the floor
  (*insufficient quality*) is neither accepted nor a false match, and its share is given.
- **1:N**: gallery = the clean first image of each of the 1,680 people with two images or
  more (and, as distractors, of the 4,069 people with one image); probe = each enrolled
  person's second image, degraded. Named (the best candidate at or above the threshold)
  correctly or wrongly, unknown, insufficient quality, no face; rank-1; FNIR at FPIR 0.01
  where a non-mated search is the same probe with its own mate left out of the gallery.
- **The peer** (face_recognition, its defaults; named = nearest enrolled within 0.6) on the
  same 1:N gallery (without distractors: the peer embeds ~7 images/s) and the same
  degraded probes, optionally a sample.

Everything is cached per (level and its parameters, detector, model id) in ``.npz`` files
beside ``bench lfw``'s caches (whose clean embeddings are reused), so that a re-run or
another floor takes seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.bench import degrade, metrics
from faceledger.bench.degrade import Level
from faceledger.bench.lfw import (
    Detection,
    ImageKey,
    LfwEmbedder,
    NpzCache,
    Pair,
    detect_one,
    image_path,
    key_name,
    people,
    read_pairs,
)
from faceledger.engine import Engine
from faceledger.errors import ConfigError, InputError
from faceledger.faces import quality
from faceledger.types import Faces, FloatArray

FMRS = (1e-2, 1e-3, 1e-4)
FPIR = 0.01
REFERENCE_DETECTOR = "yunet"
"""The detector whose clean landmarks set every image's downscale (the same pixels for
every profile and the peer)."""
PEER_TOLERANCE = 0.6
"""face_recognition's default ``compare_faces`` tolerance (Euclidean distance)."""
FLOOR_GRID = tuple(round(0.025 * i, 3) for i in range(41))
BIN_WIDTH = 0.1
MIN_TOP_BIN = 200
MIN_MATED = 30
"""Mated pairs a quality bin needs before its FNMR is judged."""
FLOOR_TOLERANCE = 0.1
"""Default: a bin passes at up to FMR x 1.1. The threshold itself moves that much between
View 1 (where it sits at exactly the FMR) and View 2 on clean images (accurate: 1.0e-3 ->
1.1e-3), so stricter than that judges sampling scatter, not quality."""
MAX_FNMR = 0.1
"""Default: at most 10% of a bin's mated pairs missed at the threshold."""
NOT_MEASURED = (
    "real sensor noise (it is signal-dependent, spatially correlated, and demosaiced; here it "
    "is white, additive and Gaussian)",
    "real compression pipelines (video codecs, re-encoding, chroma subsampling as cameras "
    "set it, streaming artefacts; here one OpenCV JPEG encode)",
    "motion blur from real cameras and moving people (here isotropic Gaussian blur only)",
    "real low light (here a tone curve and optional white noise, no sensor response)",
    "occlusion (masks, glasses, hands), pose and expression beyond LFW's own",
    "demographics: LFW is skewed (mostly adult, male, lighter-skinned public figures), so "
    "error rates per group are not measured and the pooled rates do not transfer to them",
    "mated comparisons where both sides are degraded (here one side is always clean, as an "
    "enrollment photo is)",
)
CHOSEN_ON = (
    "Everything chosen was chosen on LFW View 1 only: the levels' parameters were set from "
    "the clean IED distribution (not from their effect on any error rate), the quality "
    "factors' ramps are declarations in faceledger.faces.quality, and the floors are "
    "calibrated on View 1's degraded probes; View 2 is only reported."
)

ProgressFactory = Callable[[str, int], Callable[[int], None]]


def fmr_key(value: float) -> str:
    """1e-3 -> '1e-3'."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


# ---- data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DegradedData:
    """The LFW protocol files and people this protocol uses, optionally cut to a slice."""

    root: Path
    view1: list[Pair]
    view2: list[Pair]
    enrolled: list[str]
    """People with two images or more: gallery = image 1, probe = image 2."""
    distractors: list[str]
    """People with one image: their image joins the 1:N gallery."""

    @classmethod
    def open(cls, root: Path, limit: int | None = None) -> DegradedData:
        """``limit`` keeps N mated + N non-mated View 1 pairs, N + N per View 2 fold, and
        only the people those View 2 pairs name (a quick run for tests)."""
        if not (root / "images").is_dir():
            raise ConfigError(f"{root}: no images/ folder here; --data must be the LFW folder")
        view1 = read_pairs(root / "pairsDevTrain.txt")
        view2 = read_pairs(root / "pairs.txt")
        counts = people(root)
        if limit is not None:
            view1 = _first(view1, limit)
            view2 = [p for f in sorted({p.fold for p in view2}) for p in _first(view2, limit, f)]
            named = {k[0] for p in view2 for k in (p.a, p.b)}
            counts = {n: c for n, c in counts.items() if n in named}
        enrolled = [n for n, c in counts.items() if c >= 2]
        return cls(root, view1, view2, enrolled, [n for n, c in counts.items() if c == 1])

    def view1_keys(self) -> list[ImageKey]:
        return sorted({k for p in self.view1 for k in (p.a, p.b)})

    def gallery_keys(self, distractors: bool = True) -> list[ImageKey]:
        names = self.enrolled + (self.distractors if distractors else [])
        return [(n, 1) for n in names]

    def probe_keys(self) -> list[ImageKey]:
        return [(n, 2) for n in self.enrolled]

    def degraded_keys(self) -> list[ImageKey]:
        """Every image degraded at each level (View 1, View 2's b sides, 1:N probes)."""
        keys = self.view1_keys() + [p.b for p in self.view2] + self.probe_keys()
        return sorted(set(keys))

    def clean_keys(self, distractors: bool = True) -> list[ImageKey]:
        """Every image needed clean (View 1, View 2's a sides, the gallery)."""
        keys = self.view1_keys() + [p.a for p in self.view2] + self.gallery_keys(distractors)
        return sorted(set(keys))


def _first(pairs: list[Pair], n: int, fold: int | None = None) -> list[Pair]:
    chosen = [p for p in pairs if fold is None or p.fold == fold]
    return [p for p in chosen if p.same][:n] + [p for p in chosen if not p.same][:n]


# ---- embedding ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Probes:
    """Degraded images at one level: vector (zeros when no face), found, quality factors."""

    keys: list[ImageKey]
    vectors: FloatArray
    found: np.ndarray
    factors: quality.QualityFactors
    index: dict[ImageKey, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {k: i for i, k in enumerate(self.keys)})

    def rows(self, keys: Sequence[ImageKey]) -> np.ndarray:
        return np.array([self.index[k] for k in keys], dtype=np.int64)

    def scores(self) -> FloatArray:
        """Quality score per image (NaN where no face was found)."""
        return np.where(self.found, self.factors.scores(), np.nan).astype(np.float32)


def reference_ieds(
    engine: Engine, data: DegradedData, keys: Sequence[ImageKey], cache: Path | None
) -> dict[ImageKey, float]:
    """Clean inter-eye distance of each image by the reference detector (cached in
    ``bench lfw``'s ``lfw-det-yunet.npz``; fallbacks measure the template's)."""
    rows = NpzCache(cache / f"lfw-det-{REFERENCE_DETECTOR}.npz" if cache else None)
    missing = [k for k in keys if k not in rows]
    if missing:
        reference = engine
        if engine.detector_card.name != REFERENCE_DETECTOR:
            reference = Engine(engine.config.model_copy(update={"detector": REFERENCE_DETECTOR}))
        with rows.saving():
            for key in missing:
                image = _read(reference, data.root, key)
                rows.put(key, detect_one(reference, image).pack())
    return {k: degrade.inter_eye(Detection.unpack(rows[k]).landmarks) for k in keys}


def _read(engine: Engine, root: Path, key: ImageKey) -> np.ndarray:
    try:
        return engine.read(image_path(root, key))
    except InputError as exc:
        raise ConfigError(f"LFW image {key_name(key)}: {exc}") from exc


@dataclass
class DegradedEmbedder:
    """Degrades, detects (largest face), aligns, embeds and measures quality, cached."""

    engine: Engine
    root: Path
    cache: Path | None = None
    batch: int = 32
    remeasure: bool = False
    """Measure the quality factors of cached faces again (after a change to how
    faceledger.faces.quality measures them): the cached face geometry is reused, nothing
    is detected or embedded again."""

    def cache_file(self, level: Level) -> Path | None:
        if self.cache is None:
            return None
        det = self.engine.detector_card.name
        model = self.engine.model_id.replace("+", "-")
        name = f"degraded-{level.name}-{level.signature()}-{det}-{model}-q{HEAD}.npz"
        return self.cache / name

    def run(
        self,
        level: Level,
        keys: Sequence[ImageKey],
        ieds: Mapping[ImageKey, float],
        progress: Callable[[int], None] | None = None,
    ) -> Probes:
        rows = NpzCache(self.cache_file(level))
        todo = [k for k in keys if k not in rows]
        if progress and len(todo) < len(keys):
            progress(len(keys) - len(todo))
        with rows.saving():
            for start in range(0, len(todo), self.batch):
                chunk = todo[start : start + self.batch]
                for key, row in zip(chunk, self._rows(level, chunk, ieds), strict=True):
                    rows.put(key, row)
                if progress:
                    progress(len(chunk))
            if self.remeasure:
                self._remeasure(level, [k for k in keys if k not in set(todo)], ieds, rows)
        return unpack_rows(keys, [rows[k] for k in keys])

    def _remeasure(
        self,
        level: Level,
        keys: Sequence[ImageKey],
        ieds: Mapping[ImageKey, float],
        rows: NpzCache,
    ) -> None:
        for key in keys:
            row = rows[key].copy()
            if row[0] <= 0:
                continue
            geometry = row[1 : 1 + GEOMETRY]
            face = Faces(geometry[1:5][None], geometry[:1], geometry[5:].reshape(1, 5, 2))
            clean = _read(self.engine, self.root, key)
            image = degrade.apply(clean, level, key_name(key), ieds[key])
            row[1 + GEOMETRY : HEAD] = quality.measure(image, face).pack()[0]
            rows.put(key, row)

    def _rows(
        self, level: Level, keys: Sequence[ImageKey], ieds: Mapping[ImageKey, float]
    ) -> list[np.ndarray]:
        dim = self.engine.embedder_card.embedding_dim
        crops, heads, embedded = [], [], []
        for i, key in enumerate(keys):
            clean = _read(self.engine, self.root, key)
            image = degrade.apply(clean, level, key_name(key), ieds[key])
            faces = self.engine.detect(image)
            if len(faces) == 0:
                heads.append(np.zeros(HEAD, np.float32))
                continue
            face = faces.largest()
            crops.append(self.engine.aligner.align(image, face))
            packed = quality.measure(image, face).pack()[0]
            geometry = np.r_[face.scores, face.boxes[0], face.landmarks[0].ravel()]
            heads.append(np.r_[1.0, geometry, packed].astype(np.float32))
            embedded.append(i)
        vectors = np.zeros((len(keys), dim), np.float32)
        if crops:
            vectors[embedded] = self.engine.embed_crops(np.concatenate(crops)).vectors
        return [np.r_[h, v].astype(np.float32) for h, v in zip(heads, vectors, strict=True)]


GEOMETRY = 15
"""Cached per degraded face: detector score, box (4) and landmarks (10), so that quality
factors can be measured again without detecting or embedding again."""
HEAD = 1 + GEOMETRY + len(quality.FACTOR_NAMES)
"""A cache row: found, geometry, factors, then the vector."""


def unpack_rows(keys: Sequence[ImageKey], rows: Sequence[np.ndarray]) -> Probes:
    """Cache rows ``[found, geometry..., factors..., vector...]`` back into :class:`Probes`."""
    stacked = np.stack(rows).astype(np.float32) if rows else np.zeros((0, HEAD), np.float32)
    return Probes(
        list(keys),
        np.ascontiguousarray(stacked[:, HEAD:]),
        stacked[:, 0] > 0,
        quality.QualityFactors.unpack(stacked[:, 1 + GEOMETRY : HEAD]),
    )


def clean_vectors(
    engine: Engine,
    data: DegradedData,
    keys: Sequence[ImageKey],
    cache: Path | None,
    progress: Callable[[int], None] | None = None,
) -> dict[ImageKey, np.ndarray]:
    """Clean embeddings in ``bench lfw``'s format and cache (centre face, centred fallback)."""
    vectors, _ = LfwEmbedder(engine, data.root, cache).run(keys, progress)
    return {k: _unit(v) for k, v in vectors.items()}


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _stack(vectors: Mapping[ImageKey, np.ndarray], keys: Sequence[ImageKey]) -> FloatArray:
    return np.stack([vectors[k] for k in keys]).astype(np.float32)


# ---- View 1: what calibration sees --------------------------------------------------------


@dataclass(frozen=True)
class View1Level:
    """Per degraded View 1 image: quality, non-mated comparisons made and false matches
    at each threshold; and the mated pairs' outcomes."""

    quality: FloatArray
    comparisons: np.ndarray
    false_matches: dict[float, np.ndarray]
    mated_scores: FloatArray
    mated_found: np.ndarray
    mated_quality: FloatArray
    """Quality of each mated pair's degraded b face (NaN: no face)."""

    def summary(self, thresholds: Mapping[float, float]) -> dict[str, Any]:
        found = ~np.isnan(self.quality)
        total = max(int(self.comparisons.sum()), 1)
        out: dict[str, Any] = {
            "images": len(self.quality),
            "no_face_rate": float(np.mean(~found)) if len(found) else 0.0,
            "non_mated_comparisons": int(self.comparisons.sum()),
            "mated_pairs": len(self.mated_scores),
            "quality_median": _median(self.quality[found]),
        }
        for f, t in thresholds.items():
            tar = np.mean(self.mated_found & (self.mated_scores >= t))
            out[f"fmr_at_{fmr_key(f)}"] = float(self.false_matches[f].sum() / total)
            out[f"tar_at_{fmr_key(f)}"] = float(tar) if len(self.mated_scores) else None
        return out


def view1_level(
    data: DegradedData,
    probes: Probes,
    clean: Mapping[ImageKey, np.ndarray],
    thresholds: Mapping[float, float],
) -> View1Level:
    keys = data.view1_keys()
    rows = probes.rows(keys)
    found = probes.found[rows]
    sims = probes.vectors[rows] @ _stack(clean, keys).T
    person = np.array([k[0] for k in keys])
    other = person[:, None] != person[None, :]
    comparisons = np.where(found, other.sum(axis=1), 0)
    false = {
        f: np.where(found, ((sims >= t) & other).sum(axis=1), 0) for f, t in thresholds.items()
    }
    mated = [p for p in data.view1 if p.same]
    b_rows = probes.rows([p.b for p in mated])
    a = _stack(clean, [p.a for p in mated]) if mated else np.zeros((0, sims.shape[1]))
    scores = np.einsum("ij,ij->i", probes.vectors[b_rows], a) if mated else np.zeros(0)
    return View1Level(
        probes.scores()[rows], comparisons, false, scores, probes.found[b_rows],
        probes.scores()[b_rows],
    )  # fmt: skip


# ---- the floor -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FloorCalibration:
    """The floor for one FMR, and what every candidate floor gave per quality bin."""

    fmr: float
    floor: float | None
    """The smallest acceptable candidate (None: none on the grid is)."""
    candidates: list[dict[str, Any]]
    tolerance: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "fmr": self.fmr,
            "floor": self.floor,
            "tolerance": self.tolerance,
            "candidates": self.candidates,
        }


def quality_bins(
    scores: FloatArray, floor: float, width: float = BIN_WIDTH, min_top: int = MIN_TOP_BIN
) -> list[tuple[float, float, np.ndarray]]:
    """(low, high, member mask) bins [floor, floor+width), ... over the scores >= floor;
    the last bin is closed at 1.0, and a top bin of fewer than ``min_top`` scores is merged
    into the one below (repeatedly)."""
    scores = np.asarray(scores, dtype=np.float64)
    kept = ~np.isnan(scores) & (scores >= floor - 1e-9)
    count = max(1, int(np.ceil((1.0 - floor) / width - 1e-9)))
    index = np.clip(np.floor((np.nan_to_num(scores) - floor) / width + 1e-9), 0, count - 1)
    edges = [floor + width * i for i in range(count)] + [1.0]
    bins = [(edges[i], edges[i + 1], kept & (index == i)) for i in range(count)]
    while len(bins) > 1 and int(bins[-1][2].sum()) < min_top:
        low, _, below = bins[-2]
        bins[-2:] = [(low, 1.0, below | bins[-1][2])]
    return bins


def calibrate_floor(
    scores: FloatArray,
    comparisons: np.ndarray,
    false_matches: np.ndarray,
    fmr: float,
    *,
    grid: Sequence[float] = FLOOR_GRID,
    width: float = BIN_WIDTH,
    min_top: int = MIN_TOP_BIN,
    tolerance: float = 0.0,
    mated: tuple[FloatArray, np.ndarray] | None = None,
    max_fnmr: float | None = None,
) -> FloorCalibration:
    """The smallest floor F on ``grid`` such that, among probes of quality >= F, every
    quality bin's non-mated FMR (false matches / comparisons, pooled over its probes) is at
    most ``fmr`` (times ``1 + tolerance``) and, with ``mated`` = (quality of each mated
    pair's degraded face, whether the pair was accepted) and ``max_fnmr``, at most that
    share of the bin's mated pairs is missed (bins with fewer than :data:`MIN_MATED` pairs
    are not judged on it): below such a floor "unknown" would often be an enrolled person
    the model could not see.

    ``scores``: each degraded probe's quality (NaN: no face; such probes are left out);
    ``comparisons``: the non-mated comparisons each probe made; ``false_matches``: how many
    of those scored at or above the threshold for ``fmr``. A floor that leaves no probe
    (nothing measured) is not acceptable: refusing everyone is not a floor.

    ``tolerance``: a bin passes at up to ``fmr * (1 + tolerance)``. With 0 (the rule as
    stated) clean faces alone can fail it: the threshold sits at exactly ``fmr`` over all
    clean View 1 images, so the clean bins scatter a few percent either side of it."""
    comparisons = np.asarray(comparisons, dtype=np.int64)
    false_matches = np.asarray(false_matches, dtype=np.int64)
    candidates, chosen = [], None
    for floor in grid:
        bins = []
        for low, high, member in quality_bins(scores, floor, width, min_top):
            n = int(comparisons[member].sum())
            c = int(false_matches[member].sum())
            bins.append(
                {
                    "low": round(low, 3),
                    "high": round(high, 3),
                    "probes": int(member.sum()),
                    "comparisons": n,
                    "false_matches": c,
                    "fmr": c / n if n else None,
                    **_mated_bin(mated, low, high),
                }
            )
        measured = [b["fmr"] for b in bins if b["fmr"] is not None]
        acceptable = bool(measured) and all(v <= fmr * (1 + tolerance) for v in measured)
        if max_fnmr is not None:
            acceptable = acceptable and all(
                b["fnmr"] <= max_fnmr for b in bins if b.get("mated", 0) >= MIN_MATED
            )
        candidates.append({"floor": floor, "acceptable": acceptable, "bins": bins})
        if acceptable and chosen is None:
            chosen = floor
    return FloorCalibration(fmr, chosen, candidates, tolerance)


def _mated_bin(
    mated: tuple[FloatArray, np.ndarray] | None, low: float, high: float
) -> dict[str, Any]:
    if mated is None:
        return {}
    q, accepted = mated
    inside = ~np.isnan(q) & (q >= low - 1e-9) & ((q < high) | (high >= 1.0))
    n = int(inside.sum())
    return {"mated": n, "fnmr": float(np.mean(~accepted[inside])) if n else None}


# ---- View 2 and 1:N --------------------------------------------------------------------


def _rate(mask: np.ndarray) -> float:
    return float(np.mean(mask)) if len(mask) else 0.0


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if len(values) else None


def verification(
    data: DegradedData,
    probes: Probes,
    clean: Mapping[ImageKey, np.ndarray],
    thresholds: Mapping[float, float],
    floors: Mapping[float, float],
) -> dict[str, Any]:
    """View 2 with b degraded: per FMR, FMR (pairs and cross) and FNMR, without and with the
    floor; shares of no face and of insufficient quality."""
    pairs = data.view2
    rows = probes.rows([p.b for p in pairs])
    found, q = probes.found[rows], np.nan_to_num(probes.scores()[rows], nan=-1.0)
    scores = np.einsum("ij,ij->i", probes.vectors[rows], _stack(clean, [p.a for p in pairs]))
    same = np.array([p.same for p in pairs])
    b_keys = sorted({p.b for p in pairs})
    a_keys = sorted({p.a for p in pairs})
    b_rows = probes.rows(b_keys)
    cross = probes.vectors[b_rows] @ _stack(clean, a_keys).T
    other = np.array([k[0] for k in b_keys])[:, None] != np.array([k[0] for k in a_keys])[None, :]
    b_q = np.nan_to_num(probes.scores()[b_rows], nan=-1.0)
    b_found = probes.found[b_rows]
    out: dict[str, Any] = {
        "pairs": len(pairs),
        "mated_pairs": int(same.sum()),
        "non_mated_pairs": int((~same).sum()),
        "cross_comparisons": int(other.sum()),
        "no_face_rate": _rate(~found),
        "at": {},
    }
    for f, t in thresholds.items():
        entry: dict[str, Any] = {"threshold": t}
        for suffix, floor in (("", None), ("_floor", floors.get(f))):
            ok = found if floor is None else found & (q >= floor)
            accepted = ok & (scores >= t)
            b_ok = b_found if floor is None else b_found & (b_q >= floor)
            entry[f"fmr_pairs{suffix}"] = _rate(accepted[~same])
            entry[f"fmr_cross{suffix}"] = float(((cross >= t) & other & b_ok[:, None]).sum()) / max(
                int(other.sum()), 1
            )
            entry[f"fnmr{suffix}"] = 1.0 - _rate(accepted[same])
            if floor is not None:
                entry["floor"] = floor
                entry["insufficient_rate"] = _rate(found & (q < floor))
        out["at"][fmr_key(f)] = entry
    return out


@dataclass(frozen=True)
class Search:
    """Rank-1 outcome of each 1:N probe."""

    found: np.ndarray
    quality: FloatArray
    top: np.ndarray
    best: FloatArray
    mate: np.ndarray
    non_mated_best: FloatArray
    """Best score with the probe's own mate left out of the gallery (a non-mated search)."""


def search(
    probe_vectors: FloatArray, found: np.ndarray, q: FloatArray, gallery: FloatArray
) -> Search:
    """Probe i's mate is gallery row i (higher score = more alike)."""
    sims = probe_vectors @ gallery.T
    n = len(sims)
    mate = np.arange(n)
    top = sims.argmax(axis=1) if n else np.zeros(0, np.int64)
    best = sims[mate, top] if n else np.zeros(0)
    masked = sims.copy()
    masked[mate, mate] = -np.inf
    return Search(found, q, top, best, mate, masked.max(axis=1) if n else np.zeros(0))


def decisions(s: Search, threshold: float, floor: float | None) -> dict[str, float]:
    """Shares of probes named correctly, wrongly, unknown, insufficient quality, no face."""
    ok = s.found if floor is None else s.found & (np.nan_to_num(s.quality, nan=-1.0) >= floor)
    named = ok & (s.best >= threshold)
    return {
        "correct": _rate(named & (s.top == s.mate)),
        "wrong": _rate(named & (s.top != s.mate)),
        "unknown": _rate(ok & (s.best < threshold)),
        "insufficient": _rate(s.found & ~ok),
        "no_face": _rate(~s.found),
    }


def ranks(s: Search) -> dict[str, float | None]:
    """rank-1 (no face counts as a miss) and FNIR at FPIR 0.01 (no floor)."""
    if not len(s.found):
        return {"rank1": None, f"fnir_at_fpir_{FPIR:g}": None}
    mated = np.where(s.found & (s.top == s.mate), s.best, -np.inf)
    non_mated = np.where(s.found, s.non_mated_best, -np.inf)
    t = metrics.threshold_at_fmr(non_mated, FPIR)
    return {"rank1": _rate(s.found & (s.top == s.mate)), f"fnir_at_fpir_{FPIR:g}": _rate(mated < t)}


def _rank1(s: Search, floor: float | None) -> float:
    """rank-1 counting probes below the floor (and without a face) as misses."""
    ok = s.found if floor is None else s.found & (np.nan_to_num(s.quality, nan=-1.0) >= floor)
    return _rate(ok & (s.top == s.mate))


def identification(
    data: DegradedData,
    probes: Probes,
    clean: Mapping[ImageKey, np.ndarray],
    thresholds: Mapping[float, float],
    floors: Mapping[float, float],
    *,
    with_distractors: bool,
    sample: Sequence[int] | None = None,
    search_threshold: Callable[[int], float] | None = None,
) -> dict[str, Any]:
    """1:N decisions at each 1:1 threshold with its floor, and with ``search_threshold``
    (gallery size -> the threshold ``identify`` uses) at the product's own search threshold
    and floor (the highest of the per-FMR floors), under ``"search"``."""
    keys = data.probe_keys()
    gallery = _stack(clean, data.gallery_keys(with_distractors)) if keys else np.zeros((0, 1))
    rows = probes.rows(keys)
    s = search(probes.vectors[rows], probes.found[rows], probes.scores()[rows], gallery)
    if sample is not None:
        s = _subset(s, np.asarray(sample, dtype=np.int64))
    out: dict[str, Any] = {"probes": len(s.found), "gallery": len(gallery), **ranks(s), "at": {}}
    for f, t in thresholds.items():
        out["at"][fmr_key(f)] = {
            "threshold": t,
            "floor": floors.get(f),
            **decisions(s, t, None),
            **{f"{k}_floor": v for k, v in decisions(s, t, floors.get(f)).items()},
            "rank1_floor": _rank1(s, floors.get(f)),
        }
    if search_threshold is not None:
        t, floor = search_threshold(len(gallery)), max(floors.values())
        out["search"] = {
            "threshold": t,
            "floor": floor,
            **decisions(s, t, None),
            **{f"{k}_floor": v for k, v in decisions(s, t, floor).items()},
            "rank1_floor": _rank1(s, floor),
        }
    return out


def _subset(s: Search, rows: np.ndarray) -> Search:
    return Search(
        s.found[rows],
        s.quality[rows],
        s.top[rows],
        s.best[rows],
        s.mate[rows],
        s.non_mated_best[rows],
    )


def quality_summary(probes: Probes, keys: Sequence[ImageKey]) -> dict[str, Any]:
    """Median of each factor and how often each is the weakest, over the found probes."""
    rows = probes.rows(keys)
    found = rows[probes.found[rows]]
    factors = quality.QualityFactors.unpack(probes.factors.pack()[found])
    weakest: dict[str, int] = {}
    for i in range(len(found)):
        name = factors.weakest(i).name
        weakest[name] = weakest.get(name, 0) + 1
    return {
        "score_median": _median(factors.scores()),
        "factor_medians": {n: _median(factors.values[n]) for n in quality.FACTOR_NAMES},
        "weakest": dict(sorted(weakest.items(), key=lambda kv: -kv[1])),
    }


# ---- the peer --------------------------------------------------------------------------------


@dataclass
class PeerDegraded:
    """face_recognition on the clean gallery and the degraded probes, cached per level."""

    root: Path
    cache: Path | None = None

    def __post_init__(self) -> None:
        from faceledger.bench.peer import FaceRecognitionPeer

        self.peer = FaceRecognitionPeer(self.root, self.cache)

    def gallery(
        self, keys: Sequence[ImageKey], progress: Callable[[int], None] | None = None
    ) -> FloatArray:
        vectors, _ = self.peer.run(keys, progress)
        return _stack(vectors, keys)

    def probes(
        self,
        level: Level,
        keys: Sequence[ImageKey],
        ieds: Mapping[ImageKey, float],
        progress: Callable[[int], None] | None = None,
    ) -> tuple[FloatArray, np.ndarray]:
        name = f"degraded-peer-face_recognition-{level.name}-{level.signature()}.npz"
        rows = NpzCache(self.cache / name if self.cache else None, every=100)
        todo = [k for k in keys if k not in rows]
        if progress and len(todo) < len(keys):
            progress(len(keys) - len(todo))
        with rows.saving():
            for key in todo:
                rows.put(key, self._encode(level, key, ieds[key]))
                if progress:
                    progress(1)
        stacked = np.stack([rows[k] for k in keys]) if keys else np.zeros((0, 129))
        return stacked[:, 1:].astype(np.float32), stacked[:, 0] > 0

    def _encode(self, level: Level, key: ImageKey, ied: float) -> np.ndarray:
        image = self.peer.load_image(image_path(self.root, key))
        image = degrade.apply(image, level, key_name(key), ied)
        fr = self.peer._fr
        boxes = fr.face_locations(image)
        if not boxes:
            return np.zeros(129, np.float32)
        box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
        encoding = np.asarray(fr.face_encodings(image, [box])[0], np.float32)
        return np.r_[1.0, encoding].astype(np.float32)


def peer_decisions(
    probe_vectors: FloatArray, found: np.ndarray, gallery: FloatArray, mate: np.ndarray
) -> dict[str, Any]:
    """Named = the nearest enrolled face within the peer's tolerance (its default 0.6)."""
    squared = (probe_vectors**2).sum(1)[:, None] + (gallery**2).sum(1)[None, :]
    dist = np.sqrt(np.maximum(squared - 2 * probe_vectors @ gallery.T, 0.0))
    top = dist.argmin(axis=1) if len(dist) else np.zeros(0, np.int64)
    best = dist[np.arange(len(dist)), top] if len(dist) else np.zeros(0)
    named = found & (best <= PEER_TOLERANCE)
    return {
        "probes": len(found),
        "gallery": len(gallery),
        "tolerance": PEER_TOLERANCE,
        "correct": _rate(named & (top == mate)),
        "wrong": _rate(named & (top != mate)),
        "unknown": _rate(found & ~named),
        "no_face": _rate(~found),
        "rank1": _rate(found & (top == mate)),
    }


def sample_rows(total: int, count: int | None) -> list[int]:
    """``count`` evenly spaced rows of ``total`` (all when None or more)."""
    if count is None or count >= total:
        return list(range(total))
    step = total / count
    return [int(i * step) for i in range(count)]


# ---- the run -------------------------------------------------------------------------------


@dataclass
class Options:
    levels: list[Level]
    floor: float | None = None
    """A fixed floor for every FMR; None: calibrated (``auto``)."""
    peer: str | None = None
    peer_levels: list[Level] = field(default_factory=list)
    peer_probes: int | None = None
    distractors: bool = True
    cache: Path | None = None
    batch: int = 32
    remeasure: bool = False
    floor_tolerance: float = FLOOR_TOLERANCE
    """A quality bin passes at up to FMR * (1 + this) (see :func:`calibrate_floor`)."""
    max_fnmr: float | None = MAX_FNMR
    """A quality bin passes with at most this share of its mated pairs missed (None: not
    judged on misses)."""


def run(
    engine: Engine,
    data: DegradedData,
    options: Options,
    progress: ProgressFactory | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Every figure of the protocol for one engine, as one JSON-ready dict."""
    started = time.perf_counter()
    bar = progress or (lambda label, total: lambda n: None)
    thresholds = {f: engine.embedder_card.threshold_for(f, engine.flip) for f in FMRS}

    def searched(templates: int) -> float:
        return engine.identification_threshold(templates).value

    clean_keys = data.clean_keys(options.distractors)
    clean = clean_vectors(
        engine, data, clean_keys, options.cache, bar("clean images", len(clean_keys))
    )
    keys = data.degraded_keys()
    ieds = reference_ieds(engine, data, sorted(set(keys)), options.cache)
    embedder = DegradedEmbedder(
        engine, data.root, options.cache, options.batch, remeasure=options.remeasure
    )
    probes: dict[str, Probes] = {}
    for level in options.levels:
        probes[level.name] = embedder.run(
            level, keys, ieds, bar(f"{level.name}: degrading", len(keys))
        )
    view1 = {name: view1_level(data, p, clean, thresholds) for name, p in probes.items()}
    calibration = {
        f: _calibrate(view1, f, thresholds[f], options.floor_tolerance, options.max_fnmr)
        for f in FMRS
    }
    floors = {f: _floor_in_force(calibration[f], options.floor) for f in FMRS}
    doc: dict[str, Any] = {
        "protocol": "LFW degraded probes (bench degraded)",
        "profile": profile or engine.config.profile,
        "models": [engine.detector_card.name, engine.embedder_card.name]
        + (["flip"] if engine.flip else []),
        "model_id": engine.model_id,
        "metric": "cosine",
        "levels": {lv.name: level_doc(lv) for lv in options.levels},
        "thresholds": {fmr_key(f): t for f, t in thresholds.items()},
        "floor": _floor_doc(calibration, floors, options),
        "view1": {n: v.summary(thresholds) for n, v in view1.items()},
        "verification": {},
        "identification": {},
        "quality": {},
        "quality_ramps": {f.name: {"bad": f.bad, "good": f.good} for f in quality.FACTORS},
        "data": _data_doc(data, keys, ieds, options.distractors),
        "peer": None,
        "not_measured": list(NOT_MEASURED),
        "chosen_on": CHOSEN_ON,
    }
    for name, p in probes.items():
        doc["verification"][name] = verification(data, p, clean, thresholds, floors)
        doc["identification"][name] = identification(
            data, p, clean, thresholds, floors, with_distractors=options.distractors,
            search_threshold=searched,
        )  # fmt: skip
        doc["quality"][name] = quality_summary(p, sorted({q.b for q in data.view2}))
    if options.peer:
        doc["peer"] = _peer(
            data,
            options,
            probes,
            clean=clean,
            thresholds=thresholds,
            floors=floors,
            ieds=ieds,
            bar=bar,
            search_threshold=searched,
        )
    doc["runtime_s"] = round(time.perf_counter() - started, 1)
    return doc


def level_doc(level: Level) -> dict[str, Any]:
    return {
        "params": level.params(),
        "steps": level.describe(),
        "says": level.says,
        "signature": level.signature(),
    }


def _calibrate(
    view1: Mapping[str, View1Level],
    fmr: float,
    threshold: float,
    tolerance: float = FLOOR_TOLERANCE,
    max_fnmr: float | None = MAX_FNMR,
) -> FloorCalibration:
    pooled = list(view1.values())
    accepted = np.concatenate([v.mated_found & (v.mated_scores >= threshold) for v in pooled])
    return calibrate_floor(
        np.concatenate([v.quality for v in pooled]),
        np.concatenate([v.comparisons for v in pooled]),
        np.concatenate([v.false_matches[fmr] for v in pooled]),
        fmr,
        tolerance=tolerance,
        mated=(np.concatenate([v.mated_quality for v in pooled]), accepted),
        max_fnmr=max_fnmr,
    )


def _floor_in_force(cal: FloorCalibration, fixed: float | None) -> float:
    """The fixed floor, else the calibrated one (the grid's top when none was acceptable)."""
    if fixed is not None:
        return fixed
    return cal.floor if cal.floor is not None else FLOOR_GRID[-1]


def _floor_doc(
    calibration: Mapping[float, FloorCalibration], floors: Mapping[float, float], options: Options
) -> dict[str, Any]:
    return {
        "mode": "auto" if options.floor is None else "fixed",
        "tolerance": options.floor_tolerance,
        "max_fnmr": options.max_fnmr,
        "product": max(floors.values()),
        "in_force": {fmr_key(f): v for f, v in floors.items()},
        "calibrated": {fmr_key(f): c.floor for f, c in calibration.items()},
        "met": {fmr_key(f): c.floor is not None for f, c in calibration.items()},
        "pooled_levels": [lv.name for lv in options.levels],
        "grid": [FLOOR_GRID[0], FLOOR_GRID[-1], 0.025],
        "bin_width": BIN_WIDTH,
        "min_top_bin": MIN_TOP_BIN,
        "calibration": {fmr_key(f): c.as_dict() for f, c in calibration.items()},
    }


def _data_doc(
    data: DegradedData, keys: Sequence[ImageKey], ieds: Mapping[ImageKey, float], distractors: bool
) -> dict[str, Any]:
    values = np.array([ieds[k] for k in keys]) if keys else np.zeros(1)
    return {
        "view1_pairs": len(data.view1),
        "view1_images": len(data.view1_keys()),
        "view2_pairs": len(data.view2),
        "enrolled": len(data.enrolled),
        "distractors": len(data.distractors) if distractors else 0,
        "degraded_images_per_level": len(keys),
        "clean_ied_px": {
            "reference_detector": REFERENCE_DETECTOR,
            **{f"p{p}": round(float(np.percentile(values, p)), 1) for p in (5, 25, 50, 75, 95)},
        },
    }


def _peer(
    data: DegradedData,
    options: Options,
    probes: Mapping[str, Probes],
    *,
    clean: Mapping[ImageKey, np.ndarray],
    thresholds: Mapping[float, float],
    floors: Mapping[float, float],
    ieds: Mapping[ImageKey, float],
    bar: ProgressFactory,
    search_threshold: Callable[[int], float] | None = None,
) -> dict[str, Any]:
    peer = PeerDegraded(data.root, options.cache)
    gallery_keys = data.gallery_keys(distractors=False)
    gallery = peer.gallery(gallery_keys, bar("peer: clean gallery", len(gallery_keys)))
    sample = sample_rows(len(data.enrolled), options.peer_probes)
    keys = [data.probe_keys()[i] for i in sample]
    out: dict[str, Any] = {
        "name": options.peer,
        "gallery": "enrolled only (no distractors)",
        "levels": {},
    }
    for level in options.peer_levels:
        vectors, found = peer.probes(level, keys, ieds, bar(f"peer {level.name}", len(keys)))
        entry: dict[str, Any] = {"peer": peer_decisions(vectors, found, gallery, np.array(sample))}
        if level.name in probes:
            entry["ours_same_probes"] = identification(
                data,
                probes[level.name],
                clean,
                thresholds,
                floors,
                with_distractors=False,
                sample=sample,
                search_threshold=search_threshold,
            )
        out["levels"][level.name] = entry
    return out


# ---- markdown --------------------------------------------------------------------------


def _pct(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"


def _fmr(value: float | None) -> str:
    return "" if value is None else f"{value:.1e}" if value else "0"


def markdown(doc: Mapping[str, Any]) -> str:
    """The report's tables (levels, floors, View 2 per FMR, 1:N, the peer) in Markdown."""
    parts = [f"## Degraded LFW: {doc['profile']} ({', '.join(doc['models'])})", ""]
    parts += _levels_table(doc)
    parts += _floor_table(doc)
    for f in FMRS:
        parts += _verification_table(doc, fmr_key(f))
    parts += _identification_table(doc, fmr_key(1e-3))
    if all("search" in v for v in doc["identification"].values()):
        parts += _identification_table(doc, "search")
    parts += _quality_table(doc)
    if doc.get("peer"):
        parts += _peer_table(doc)
    parts += ["Not measured: " + "; ".join(doc["not_measured"]) + ".", "", doc["chosen_on"], ""]
    return "\n".join(parts)


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows), ""]


def _levels_table(doc: Mapping[str, Any]) -> list[str]:
    rows = [[f"`{n}`", lv["steps"], lv["says"]] for n, lv in doc["levels"].items()]
    return ["### Levels", "", *_table(["level", "steps (in order)", "stands for"], rows)]


def _floor_table(doc: Mapping[str, Any]) -> list[str]:
    floor = doc["floor"]
    rows = []
    for key, cal in floor["calibration"].items():
        chosen = cal["floor"]
        at = next((c for c in cal["candidates"] if c["floor"] == chosen), cal["candidates"][-1])
        bins = ", ".join(
            f"[{b['low']:.2f},{b['high']:.2f}] {b['probes']}: {_fmr(b['fmr'])}"
            + (f" / FNMR {_pct(b['fnmr'], 1)}" if b.get("fnmr") is not None else "")
            for b in at["bins"]
        )
        rows.append(
            [
                key,
                doc["thresholds"][key],
                chosen if chosen is not None else "none met",
                floor["in_force"][key],
                bins,
            ]
        )
    below = [
        [
            n,
            *(_pct(v["at"][k].get("insufficient_rate"), 1) for k in floor["in_force"]),
            _pct(v["no_face_rate"], 1),
        ]
        for n, v in doc["verification"].items()
    ]
    return [
        f"### Quality floors (View 1, pooled over {', '.join(floor['pooled_levels'])}; "
        f"a bin passes at FMR x {1 + floor.get('tolerance', 0.0):g}"
        + (f" and FNMR <= {_pct(floor['max_fnmr'], 0)}" if floor.get("max_fnmr") else "")
        + f"); the product's floor, the highest: {floor.get('product')}",
        "",
        *_table(
            ["FMR", "threshold", "calibrated floor", "in force", "bins at that floor: probes: FMR"],
            rows,
        ),
        "Share of View 2 degraded probes below each floor (found faces; no face apart):",
        "",
        *_table(["level", *(f"below floor@{k}" for k in floor["in_force"]), "no face"], below),
    ]


def _verification_table(doc: Mapping[str, Any], key: str) -> list[str]:
    head = [
        "level", "no face", "FMR pairs", "FMR cross", "FNMR",
        "floor", "insufficient", "FMR pairs", "FMR cross", "FNMR", "View 1 FMR",
    ]  # fmt: skip
    rows = []
    for name, v in doc["verification"].items():
        e = v["at"][key]
        rows.append([
            name, _pct(v["no_face_rate"], 1), _fmr(e["fmr_pairs"]), _fmr(e["fmr_cross"]),
            _pct(e["fnmr"]), e.get("floor", ""), _pct(e.get("insufficient_rate"), 1),
            _fmr(e["fmr_pairs_floor"]), _fmr(e["fmr_cross_floor"]), _pct(e["fnmr_floor"]),
            _fmr(doc["view1"][name][f"fmr_at_{key}"]),
        ])  # fmt: skip
    title = f"### View 2, b side degraded, at the FMR {key} threshold ({doc['thresholds'][key]})"
    return [title, "", "without floor | with floor", "", *_table(head, rows)]


def _identification_table(doc: Mapping[str, Any], key: str) -> list[str]:
    head = [
        "level", "correct", "wrong", "unknown", "no face", "rank-1", "FNIR@FPIR 0.01",
        "correct", "wrong", "unknown", "insufficient", "rank-1",
    ]  # fmt: skip
    rows = []
    for name, v in doc["identification"].items():
        e = v["search"] if key == "search" else v["at"][key]
        rows.append([
            name, _pct(e["correct"]), _pct(e["wrong"]), _pct(e["unknown"]), _pct(e["no_face"]),
            _pct(v["rank1"]), _pct(v[f"fnir_at_fpir_{FPIR:g}"]), _pct(e["correct_floor"]),
            _pct(e["wrong_floor"]), _pct(e["unknown_floor"]), _pct(e["insufficient_floor"]),
            _pct(e["rank1_floor"]),
        ])  # fmt: skip
    some = next(iter(doc["identification"].values()), {"probes": 0, "gallery": 0})
    at = (
        f"the search threshold (FPIR 1e-3 for the gallery: {some['search']['threshold']:.4f}, "
        f"floor {some['search']['floor']})"
        if key == "search"
        else f"the FMR {key} threshold"
    )
    title = (
        f"### 1:N at {at}: {some['probes']} degraded probes, "
        f"gallery of {some['gallery']} clean images"
    )
    return [title, "", "without floor | with floor", "", *_table(head, rows)]


def _quality_table(doc: Mapping[str, Any]) -> list[str]:
    names = quality.FACTOR_NAMES
    rows = []
    for level, q in doc["quality"].items():
        med = q["factor_medians"]
        weakest = ", ".join(f"{k} {v}" for k, v in list(q["weakest"].items())[:3])
        score = q["score_median"]
        cells = ["" if med[n] is None else f"{med[n]:.3g}" for n in names]
        rows.append([level, "" if score is None else f"{score:.3f}", *cells, weakest])
    return [
        "### Quality of View 2's degraded b images (medians; most often weakest factor)",
        "",
        *_table(["level", "score", *names, "weakest"], rows),
    ]


def _peer_rows(doc: Mapping[str, Any], name: str, entry: Mapping[str, Any]) -> list[list[str]]:
    p = entry["peer"]
    cells = ("correct", "wrong", "unknown", "insufficient", "no_face", "rank1")
    rows = [[name, f"{doc['peer']['name']} (tolerance {p['tolerance']})"]]
    rows[0] += [_pct(p.get(c)) for c in cells]
    ours = entry.get("ours_same_probes")
    if ours:
        key = "search" if "search" in ours else fmr_key(1e-3)
        e = {**(ours["search"] if key == "search" else ours["at"][key]), "rank1": ours["rank1"]}
        rows.append([name, f"{doc['profile']} @ {key}", *(_pct(e[c]) for c in cells)])
        rows[-1][5] = ""
        floored = [_pct(e[f"{c}_floor"]) for c in cells]
        rows.append([name, f"{doc['profile']} @ {key} + floor {e['floor']}", *floored])
    return rows


def _peer_table(doc: Mapping[str, Any]) -> list[str]:
    peer = doc["peer"]
    head = ["level", "who", "correct", "wrong", "unknown", "insufficient", "no face", "rank-1"]
    rows = [row for name, entry in peer["levels"].items() for row in _peer_rows(doc, name, entry)]
    some = next(iter(peer["levels"].values()), {"peer": {"probes": 0, "gallery": 0}})["peer"]
    title = (
        f"### 1:N beside the peer: {some['probes']} degraded probes, gallery of "
        f"{some['gallery']} clean images (no distractors)"
    )
    return [title, "", *_table(head, rows)]
