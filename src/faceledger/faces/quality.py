"""Face quality: what is measurable about a face, one score from it, and the floor below
which faceledger does not name anyone.

A face's **factors** are measured from its landmarks, its detector score and a small crop
aligned on the ArcFace template (the same for every embedder, so the factors do not depend
on the model):

- ``eye_distance``: pixels between the eyes in the image (how much face there is),
- ``sharpness``: high-frequency energy of the aligned crop relative to its contrast (blur,
  and the blur that upscaling a small face brings),
- ``noise``: the standard deviation of sensor or compression noise (Immerkaer's estimator),
- ``pose``: how far the nose sits from the eyes' midline, in eye distances (turned heads),
- ``brightness`` and ``contrast`` of the crop (dark, washed-out or flat faces),
- ``detector``: the detector's own score.

Each factor maps onto 0..1 by a declared linear ramp (:data:`FACTORS`: 0 at ``bad``, 1 at
``good``), and a face's **quality score** is the lowest of them: a face is as good as its
weakest factor, and that factor is the reason given when it is too poor. The ramps are
declarations, not fits; the **floor** (the lowest score at which a name is given) is what
is calibrated, per embedder, on degraded LFW View 1 pairs so that at every quality level
above it the false-match rate is at most the stated one (``faceledger bench degraded``).
Below the floor the answer is ``insufficient_quality`` with the weakest factor named:
"face 10 px between the eyes; needs 14 px".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import cv2
import numpy as np

from faceledger.faces.align import ARCFACE_TEMPLATE, similarity_transform, warp
from faceledger.types import Faces, FloatArray, ImageArray

_ASSESS_SIZE = 64
"""Side of the aligned crop the factors are measured on (the ArcFace template scaled)."""
_TEMPLATE = ARCFACE_TEMPLATE * (_ASSESS_SIZE / 112.0)
_NOISE_SIDE = 160
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


@dataclass(frozen=True)
class Factor:
    """One measurable factor and its declared ramp onto 0..1."""

    name: str
    bad: float
    """Value scored 0 (or below)."""
    good: float
    """Value scored 1 (or beyond): ``good < bad`` for factors where less is better."""
    unit: str
    says: str
    """How the reason reads, with ``{value}`` and ``{needed}``: 'face {value} between ...'."""

    def score(self, values: FloatArray) -> FloatArray:
        out = (np.asarray(values, dtype=np.float32) - self.bad) / (self.good - self.bad)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def needed(self, floor: float) -> float:
        """The factor's value that scores ``floor``."""
        return self.bad + floor * (self.good - self.bad)

    def reason(self, value: float, floor: float) -> str:
        return self.says.format(
            value=_shown(value, self.unit), needed=_shown(self.needed(floor), self.unit)
        )


def _shown(value: float, unit: str) -> str:
    if unit == "px":
        return f"{value:.0f} px"
    return f"{value:.2f}"


FACTORS: tuple[Factor, ...] = (
    Factor("eye_distance", 8.0, 16.0, "px", "face {value} between the eyes; needs {needed}"),
    Factor("sharpness", 0.25, 1.0, "", "face too blurred (sharpness {value}; needs {needed})"),
    Factor("noise", 16.0, 4.0, "", "image too noisy (noise {value}; needs at most {needed})"),
    Factor("pose", 0.60, 0.25, "", "head turned too far (pose {value}; needs at most {needed})"),
    Factor("brightness", 5.0, 30.0, "", "face too dark (brightness {value}; needs {needed})"),
    Factor(
        "highlights", 5.0, 30.0, "", "face too bright (255 - brightness {value}; needs {needed})"
    ),
    Factor("contrast", 2.0, 12.0, "", "face too flat (contrast {value}; needs {needed})"),
    Factor("detector", 0.0, 0.5, "", "detector unsure of the face (score {value}; needs {needed})"),
)
"""The declared factors; their ramps were set by looking at LFW View 1 clean and degraded."""
FACTOR_NAMES = tuple(f.name for f in FACTORS)
UNCALIBRATED_FLOOR = 0.75
"""The floor of an embedder whose floor was not calibrated (dlib, MobileFaceNet, EdgeFace
set-ups other than fast's and accurate's): the highest floor calibrated for any."""
_BY_NAME: Mapping[str, Factor] = MappingProxyType({f.name: f for f in FACTORS})


@dataclass(frozen=True, eq=False)
class QualityFactors:
    """The measured factors of n faces: one float32 column (n,) per factor name."""

    values: Mapping[str, FloatArray]

    def __len__(self) -> int:
        return len(next(iter(self.values.values()))) if self.values else 0

    def scores(self) -> FloatArray:
        """Each face's quality score, the lowest of its factor scores, shape (n,)."""
        if len(self) == 0:
            return np.zeros(0, dtype=np.float32)
        ramps = np.stack([f.score(self.values[f.name]) for f in FACTORS])
        return ramps.min(axis=0)

    def weakest(self, i: int) -> Factor:
        """Face ``i``'s lowest-scoring factor."""
        return min(FACTORS, key=lambda f: float(f.score(self.values[f.name][i : i + 1])[0]))

    def row(self, i: int) -> dict[str, float]:
        return {name: round(float(self.values[name][i]), 4) for name in FACTOR_NAMES}

    def pack(self) -> FloatArray:
        """(n, factors) float32, columns in :data:`FACTOR_NAMES` order (for caches)."""
        return np.stack([self.values[n] for n in FACTOR_NAMES], axis=1).astype(np.float32)

    @classmethod
    def unpack(cls, packed: FloatArray) -> QualityFactors:
        packed = np.asarray(packed, dtype=np.float32).reshape(-1, len(FACTOR_NAMES))
        return cls({n: packed[:, i] for i, n in enumerate(FACTOR_NAMES)})


@dataclass(frozen=True)
class Quality:
    """One face's quality, as answers carry it."""

    score: float
    factors: Mapping[str, float]
    floor: float
    """The calibrated floor in force (with any stricter minimum applied)."""
    reason: str | None = None
    """Why the face is below the floor (None when it is not)."""

    @property
    def sufficient(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, object]:
        return {
            "score": round(self.score, 3),
            "floor": round(self.floor, 3),
            "sufficient": self.sufficient,
            "reason": self.reason,
            "factors": dict(self.factors),
        }


def measure(image: ImageArray, faces: Faces) -> QualityFactors:
    """The factors of each face of an RGB image (landmarks in image coordinates)."""
    n = len(faces)
    columns: dict[str, list[float]] = {name: [] for name in FACTOR_NAMES}
    for i in range(n):
        marks = np.asarray(faces.landmarks[i], dtype=np.float32)
        for name, value in _geometry(marks).items():
            columns[name].append(value)
        for name, value in _pixels(_aligned_grey(image, marks)).items():
            columns[name].append(value)
        columns["noise"].append(_noise(image, faces.boxes[i]))
        columns["detector"].append(float(faces.scores[i]))
    return QualityFactors({k: np.asarray(v, dtype=np.float32) for k, v in columns.items()})


def _geometry(marks: np.ndarray) -> dict[str, float]:
    left, right, nose = marks[0], marks[1], marks[2]
    axis = right - left
    eyes = float(np.hypot(*axis))
    if eyes < 1e-6:
        return {"eye_distance": 0.0, "pose": 1.0}
    unit = axis / eyes
    # the nose's offset from the eyes' midpoint along the eye line, in eye distances
    offset = float(abs(np.dot(nose - (left + right) / 2, unit))) / eyes
    return {"eye_distance": eyes, "pose": offset}


def _aligned_grey(image: ImageArray, marks: np.ndarray) -> np.ndarray:
    matrix = similarity_transform(marks, _TEMPLATE)
    crop = warp(image, matrix, _ASSESS_SIZE)
    grey: np.ndarray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return grey


def _pixels(grey: np.ndarray) -> dict[str, float]:
    inner = grey[8:-8, 8:-8]  # the face, not the background around it
    mean = float(inner.mean())
    std = float(inner.std())
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)[8:-8, 8:-8]
    sharp = float(lap.std()) / max(std, 1.0)
    return {
        "sharpness": sharp,
        "brightness": mean,
        "highlights": 255.0 - mean,
        "contrast": std,
    }


def _noise(image: ImageArray, box: np.ndarray) -> float:
    """Noise standard deviation (0-255) in the face's box at the image's own resolution
    (at most :data:`_NOISE_SIDE` px, larger faces are shrunk first): Immerkaer's Laplacian
    difference kernel, with the median of its response rather than the mean so that the
    face's edges count little."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 8 or y2 - y1 < 8:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(image[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
    side = max(grey.shape)
    if side > _NOISE_SIDE:
        size = (
            max(8, grey.shape[1] * _NOISE_SIDE // side),
            max(8, grey.shape[0] * _NOISE_SIDE // side),
        )
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    conv = cv2.filter2D(grey.astype(np.float32), cv2.CV_32F, _IMMERKAER)[1:-1, 1:-1]
    return float(np.median(np.abs(conv))) / (0.6745 * 6.0)


def assess(
    factors: QualityFactors, floor: float, minimums: Mapping[str, float] | None = None
) -> list[Quality]:
    """Each face's :class:`Quality` against ``floor`` and optional stricter per-factor
    ``minimums`` (factor name -> value; e.g. a camera's ``eye_distance: 32``)."""
    scores = factors.scores()
    out = []
    for i, score in enumerate(scores):
        reason = None
        if score < floor:
            weakest = factors.weakest(i)
            reason = weakest.reason(float(factors.values[weakest.name][i]), floor)
        elif minimums:
            reason = _below_minimum(factors, i, minimums)
        out.append(Quality(float(score), factors.row(i), floor, reason))
    return out


def _below_minimum(factors: QualityFactors, i: int, minimums: Mapping[str, float]) -> str | None:
    for name, needed in minimums.items():
        factor = _BY_NAME[name]
        value = float(factors.values[name][i])
        worse = value > needed if factor.good < factor.bad else value < needed
        if worse:
            return factor.says.format(
                value=_shown(value, factor.unit), needed=_shown(needed, factor.unit)
            )
    return None


def factor(name: str) -> Factor:
    """The declared factor called ``name`` (KeyError names the known ones)."""
    if name not in _BY_NAME:
        raise KeyError(f"no quality factor {name!r} (known: {', '.join(FACTOR_NAMES)})")
    return _BY_NAME[name]


def size_gate(faces: Faces, min_size: int) -> Faces:
    """Faces whose shorter box side is at least ``min_size`` pixels."""
    return faces[np.minimum(faces.widths, faces.heights) >= min_size]


def sharpness(crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Variance of the Laplacian of each crop's grey image (higher = sharper), shape (n,)."""
    out = np.zeros(len(crops), dtype=np.float32)
    for i, crop in enumerate(crops):
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        out[i] = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return out
