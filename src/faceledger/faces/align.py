"""Alignment: faces -> crops an embedder was trained on.

``ArcFaceAligner`` warps the five landmarks onto the ArcFace 112x112 template with a
least-squares similarity transform (Umeyama). ``DlibAligner`` makes dlib's own 150x150
chip from its 5-point shape predictor run inside each box. ``canonical_crops`` makes the
larger, aligned crop the gallery keeps so that a subject can be re-embedded later by any
model without the original photo.
"""

from __future__ import annotations

from typing import Any, Protocol

import cv2
import numpy as np

from faceledger.errors import ConfigError
from faceledger.models.catalog import ModelCard
from faceledger.models.store import ModelStore
from faceledger.types import Faces, ImageArray

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)

CANONICAL_SIZE = 320
"""Side of the stored crop: the ArcFace template scaled 2x, centred, with a wide margin."""
CANONICAL_TEMPLATE = (ARCFACE_TEMPLATE - 56.0) * 2.0 + CANONICAL_SIZE / 2


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity mapping points ``src`` onto ``dst``."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rot = u @ np.diag(d) @ vt
    var = src_c.var(axis=0).sum()
    scale = (s * d).sum() / var if var > 0 else 1.0
    shift = dst_mean - scale * rot @ src_mean
    return np.hstack([scale * rot, shift[:, None]]).astype(np.float32)


def warp(image: ImageArray, matrix: np.ndarray, size: int) -> np.ndarray:
    out: np.ndarray = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return out


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def canonical_crops(image: ImageArray, faces: Faces) -> tuple[list[ImageArray], Faces]:
    """Aligned 320x320 crops plus each face's box and landmarks in crop coordinates."""
    crops, boxes, marks = [], [], []
    for box, landmarks in zip(faces.boxes, faces.landmarks, strict=True):
        m = similarity_transform(landmarks, CANONICAL_TEMPLATE)
        crops.append(warp(image, m, CANONICAL_SIZE))
        corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]])
        moved = transform_points(m, corners)
        boxes.append([*moved.min(axis=0), *moved.max(axis=0)])
        marks.append(transform_points(m, landmarks))
    if not crops:
        return [], Faces.empty()
    return crops, Faces(np.array(boxes), faces.scores, np.array(marks))


class Aligner(Protocol):
    def load(self) -> None: ...

    def align(self, image: ImageArray, faces: Faces) -> np.ndarray:
        """(n, H, W, 3) uint8 crops, one per face, in the order of ``faces``."""
        ...


class ArcFaceAligner:
    def __init__(self, size: int = 112) -> None:
        self.size = size
        self._template = ARCFACE_TEMPLATE * (size / 112.0)

    def load(self) -> None:
        return None

    def align(self, image: ImageArray, faces: Faces) -> np.ndarray:
        crops = [
            warp(image, similarity_transform(lm, self._template), self.size)
            for lm in faces.landmarks
        ]
        return np.stack(crops) if crops else np.zeros((0, self.size, self.size, 3), np.uint8)


class DlibAligner:
    """dlib's chip: shape predictor inside each box, then ``dlib.get_face_chip``."""

    size = 150

    def __init__(self, card: ModelCard, store: ModelStore) -> None:
        self.card = card
        self.store = store
        self._predictor: Any = None

    def load(self) -> None:
        if self._predictor is None:
            import dlib

            path = self.store.resolve(self.card).path("shape_predictor_5_face_landmarks.dat")
            self._predictor = dlib.shape_predictor(str(path))

    def align(self, image: ImageArray, faces: Faces) -> np.ndarray:
        import dlib

        self.load()
        chips = []
        for box in faces.boxes:
            rect = dlib.rectangle(*(round(float(v)) for v in box))
            shape = self._predictor(image, rect)
            chips.append(dlib.get_face_chip(image, shape, size=self.size, padding=0.25))
        return np.stack(chips) if chips else np.zeros((0, self.size, self.size, 3), np.uint8)


def create_aligner(card: ModelCard, store: ModelStore) -> Aligner:
    if card.aligner == "arcface112":
        return ArcFaceAligner(112)
    if card.aligner == "dlib150":
        return DlibAligner(card, store)
    raise ConfigError(f"model {card.name} declares no known aligner ({card.aligner!r})")
