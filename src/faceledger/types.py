"""Frozen value types handed from stage to stage.

Each holds parallel numpy columns, checks their shapes once on construction (errors name
both shapes) and is never mutated: stages return new values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from faceledger.faces.quality import Quality

FloatArray = npt.NDArray[np.floating[Any]]
"""Float columns; stored as float32 once inside a value type."""
ImageArray = npt.NDArray[np.uint8]
"""An RGB image, shape (H, W, 3), uint8, C-contiguous."""

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""Order of the five landmarks (as seen in the image: 'left' is the viewer's left)."""


def _frozen(a: npt.ArrayLike, dtype: type = np.float32) -> Any:
    arr: np.ndarray = np.ascontiguousarray(np.asarray(a, dtype=dtype))
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Faces:
    """Faces found in one image: boxes (n,4) x1,y1,x2,y2; scores (n,); landmarks (n,5,2)."""

    boxes: FloatArray
    scores: FloatArray
    landmarks: FloatArray

    def __post_init__(self) -> None:
        boxes = (
            _frozen(self.boxes).reshape(-1, 4) if np.size(self.boxes) == 0 else _frozen(self.boxes)
        )
        scores = _frozen(self.scores).reshape(-1)
        landmarks = _frozen(self.landmarks)
        if np.size(landmarks) == 0:
            landmarks = _frozen(np.zeros((0, 5, 2)))
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"Faces.boxes must have shape (n, 4), got {boxes.shape}")
        n = boxes.shape[0]
        if scores.shape != (n,):
            raise ValueError(
                f"Faces.scores shape {scores.shape} does not match boxes {boxes.shape}"
            )
        if landmarks.shape != (n, 5, 2):
            raise ValueError(
                f"Faces.landmarks shape {landmarks.shape} does not match boxes {boxes.shape}"
                " (expected (n, 5, 2))"
            )
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "landmarks", landmarks)

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2)))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, index: Any) -> Faces:
        """Select faces by boolean mask, integer array or slice (always returns Faces)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Faces(self.boxes[index], self.scores[index], self.landmarks[index])

    @property
    def widths(self) -> FloatArray:
        return self.boxes[:, 2] - self.boxes[:, 0]

    @property
    def heights(self) -> FloatArray:
        return self.boxes[:, 3] - self.boxes[:, 1]

    @property
    def areas(self) -> FloatArray:
        return np.clip(self.widths, 0, None) * np.clip(self.heights, 0, None)

    def scaled(self, factor: float) -> Faces:
        """Coordinates multiplied by ``factor`` (map boxes from a resized image back)."""
        return Faces(self.boxes * factor, self.scores, self.landmarks * factor)

    def clipped(self, width: int, height: int) -> Faces:
        """Boxes clipped to the image; landmarks are left as detected."""
        limits = np.array([width, height, width, height], dtype=np.float32)
        return Faces(np.clip(self.boxes, 0, limits), self.scores, self.landmarks)

    def largest(self) -> Faces:
        """The single face with the largest box area (empty stays empty)."""
        if len(self) == 0:
            return self
        return self[int(np.argmax(self.areas))]

    def sorted_by_area(self) -> Faces:
        return self[np.argsort(-self.areas, kind="stable")]

    @staticmethod
    def concat(parts: Sequence[Faces]) -> Faces:
        if not parts:
            return Faces.empty()
        return Faces(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.landmarks for p in parts]),
        )


@dataclass(frozen=True, eq=False)
class Embeddings:
    """L2-normalised vectors (n, d) float32, stamped with the id of the model that made them."""

    vectors: FloatArray
    model_id: str

    def __post_init__(self) -> None:
        vectors = np.asarray(self.vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"Embeddings.vectors must have shape (n, d), got {vectors.shape}")
        if not self.model_id:
            raise ValueError("Embeddings.model_id must name the model that made the vectors")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
        object.__setattr__(self, "vectors", _frozen(vectors))

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __getitem__(self, index: Any) -> Embeddings:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Embeddings(self.vectors[index], self.model_id)


@dataclass(frozen=True)
class Threshold:
    """A decision threshold and what it stands for."""

    value: float
    fmr: float
    """False-match rate of one comparison at this threshold (1:1)."""
    protocol: str
    """Where it was calibrated (benchmark, split, number of pairs)."""
    strictness: str = "balanced"
    fpir: float | None = None
    """For a search of a gallery (1:N): the false-positive identification rate it stands
    for, the share of searches for someone not enrolled that name someone. Each of the
    ``templates`` comparisons may false-match, so ``fmr`` is ``fpir / templates``."""
    templates: int | None = None
    """How many templates the gallery held when the threshold was set (1:N)."""
    extrapolated: bool = False
    """``fmr`` lies below the lowest calibrated rate: the threshold was extrapolated."""

    def describe(self) -> str:
        if self.fpir is None:
            return f"{self.value:.3f} (FMR {self.fmr:.0e}, {self.protocol})"
        return (
            f"{self.value:.3f} (FPIR {self.fpir:.0e} over {self.templates:,} templates: "
            f"FMR {self.fmr:.0e} per comparison, {self.protocol})"
        )


@dataclass(frozen=True)
class Candidate:
    subject: str
    score: float


Decision = Literal["match", "unknown", "insufficient_quality"]
"""The three answers for one face: a name, nobody enrolled, or a face too poor to decide."""


@dataclass(frozen=True)
class Match:
    """An open-set decision for one face: best subject, ``None`` (unknown), or no decision
    at all when the face is below the quality floor (``quality.reason`` says why; then no
    subject, no score (-1) and no candidates are given)."""

    subject: str | None
    score: float
    threshold: Threshold
    candidates: tuple[Candidate, ...] = ()
    quality: Quality | None = None

    @property
    def known(self) -> bool:
        return self.subject is not None

    @property
    def decision(self) -> Decision:
        if self.quality is not None and not self.quality.sufficient:
            return "insufficient_quality"
        return "match" if self.subject is not None else "unknown"

    @property
    def reason(self) -> str | None:
        """Why no decision was made (insufficient quality), else None."""
        return None if self.quality is None else self.quality.reason


@dataclass(frozen=True)
class FaceResult:
    """One face in one image, with its match when the image was identified."""

    box: tuple[float, float, float, float]
    det_score: float
    landmarks: tuple[tuple[float, float], ...]
    match: Match | None = None
    quality: Quality | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "box": [round(v, 1) for v in self.box],
            "det_score": round(self.det_score, 4),
        }
        if self.match is not None:
            out.update(
                decision=self.match.decision,
                subject=self.match.subject,
                score=round(self.match.score, 4),
                threshold=round(self.match.threshold.value, 4),
                threshold_fmr=self.match.threshold.fmr,
                threshold_fpir=self.match.threshold.fpir,
                candidates=[
                    {"subject": c.subject, "score": round(c.score, 4)}
                    for c in self.match.candidates
                ],
            )
        else:
            out["landmarks"] = [[round(x, 1), round(y, 1)] for x, y in self.landmarks]
        if self.quality is not None:
            out["quality"] = self.quality.to_dict()
        return out


@dataclass(frozen=True)
class ImageResult:
    """Everything found in one input; ``error`` is set when the input could not be used."""

    image: str
    faces: tuple[FaceResult, ...] = ()
    error: str | None = None
    size: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "faces": [f.to_dict() for f in self.faces],
            "error": self.error,
        }


@dataclass(frozen=True)
class Verification:
    """A 1:1 comparison of the main face of two images."""

    score: float
    threshold: Threshold
    same: bool
    faces: tuple[FaceResult, FaceResult]
    notes: tuple[str, ...] = field(default=())
    quality: tuple[Quality, Quality] | None = None
    """Both faces' quality; below the floor on either side, ``same`` is False and the
    answer is ``insufficient_quality``."""

    @property
    def decision(self) -> Literal["same", "different", "insufficient_quality"]:
        if self.quality is not None and not all(q.sufficient for q in self.quality):
            return "insufficient_quality"
        return "same" if self.same else "different"

    @property
    def reason(self) -> str | None:
        if self.quality is None:
            return None
        return next((q.reason for q in self.quality if q.reason is not None), None)


__all__ = [
    "LANDMARK_NAMES",
    "Candidate",
    "Decision",
    "Embeddings",
    "FaceResult",
    "Faces",
    "ImageResult",
    "Match",
    "Threshold",
    "Verification",
]
