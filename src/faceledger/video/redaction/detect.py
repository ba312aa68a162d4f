"""Finding faces to hide: every detection however small, photos searched more thoroughly.

Video frames get one pass on a copy downscaled to the engine's ``detect_max_side``. Photos
are also searched with mirrored borders (faces cut by the edge) and, when large, tile by
tile (small faces in group photos); duplicates are merged by non-maximum suppression.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceledger.engine import Engine
from faceledger.faces.track import iou_matrix
from faceledger.types import Faces, ImageArray
from faceledger.video.redaction.hide import expand_boxes
from faceledger.video.redaction.settings import EDGE_PAD, MIN_INSIDE, PHOTO_TILE, REDACT_MIN_FACE


def nms(faces: Faces, iou: float = 0.4) -> Faces:
    """Greedy non-maximum suppression: of overlapping faces keep the higher-scoring one."""
    if len(faces) <= 1:
        return faces
    order = np.argsort(-faces.scores, kind="stable")
    overlaps = iou_matrix(faces.boxes, faces.boxes)
    kept: list[int] = []
    for i in order:
        if all(overlaps[i, j] < iou for j in kept):
            kept.append(int(i))
    return faces[np.array(sorted(kept), dtype=np.int64)]


def _detect_scaled(engine: Engine, image: ImageArray) -> Faces:
    """Every detection (no size gate) on a copy downscaled to ``detect_max_side``."""
    h, w = image.shape[:2]
    scale = min(engine.config.detect_max_side / max(h, w), 1.0)
    if scale >= 1.0:
        return engine.detect(image, min_face=REDACT_MIN_FACE)
    size = (max(round(w * scale), 1), max(round(h * scale), 1))
    small: ImageArray = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    return engine.detect(small, min_face=REDACT_MIN_FACE).scaled(1.0 / scale)


def _shifted(faces: Faces, dx: float, dy: float) -> Faces:
    shift = np.array([dx, dy], np.float32)
    return Faces(faces.boxes + np.tile(shift, 2), faces.scores, faces.landmarks + shift)


def detect_all(engine: Engine, image: ImageArray, *, photo: bool = False) -> Faces:
    """Every face the detector finds, however small (video frames: one pass on a copy
    downscaled to the engine's ``detect_max_side``).

    With ``photo`` the search is more thorough: also on a copy with mirrored borders (faces
    cut by the picture's edge) and, for a large picture, tile by tile (small faces in group
    photos); duplicates are merged and boxes mostly outside the picture (mirror images of
    faces near the edge) dropped.
    """
    found = _detect_scaled(engine, image)
    if not photo:
        return found
    h, w = image.shape[:2]
    pad = round(EDGE_PAD * max(h, w))
    padded: ImageArray = np.ascontiguousarray(
        cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT), dtype=np.uint8
    )
    parts = [found, _shifted(_detect_scaled(engine, padded), -pad, -pad)]
    if max(h, w) > PHOTO_TILE * 1.25:
        step = int(PHOTO_TILE * 0.75)
        for y0 in range(0, max(h - PHOTO_TILE, 0) + step, step):
            for x0 in range(0, max(w - PHOTO_TILE, 0) + step, step):
                y0c, x0c = min(y0, max(h - PHOTO_TILE, 0)), min(x0, max(w - PHOTO_TILE, 0))
                tile = image[y0c : y0c + PHOTO_TILE, x0c : x0c + PHOTO_TILE]
                got = engine.detect(np.ascontiguousarray(tile), min_face=REDACT_MIN_FACE)
                parts.append(_shifted(got, x0c, y0c))
    merged = Faces.concat(parts)
    if len(merged):
        inside = expand_boxes(merged.boxes, 0.0, w, h, keep_empty=True)
        area = np.prod(np.clip(merged.boxes[:, 2:] - merged.boxes[:, :2], 1e-6, None), axis=1)
        inside_area = np.prod(inside[:, 2:] - inside[:, :2], axis=1)
        merged = merged[inside_area >= MIN_INSIDE * area]
    return nms(merged).clipped(w, h)


def identifiable(engine: Engine, faces: Faces) -> np.ndarray:
    """Which faces are large enough to identify (the engine's ``min_face``, as the scanner
    gates the crops it identifies)."""
    side = np.minimum(faces.widths, faces.heights)
    return np.asarray(side >= engine.config.min_face)
