"""Hiding pixels: boxes enlarged and clipped, then blurred, pixelated or filled.

Pure image operations on uint8 arrays, whole pictures (H,W,C) or single planes (H,W);
nothing here decides *which* boxes are hidden (see :mod:`.keep`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from faceledger.types import FloatArray
from faceledger.video.redaction.settings import BLUR_SIGMA, PIXEL_BLOCKS, check_method


def expand_boxes(
    boxes: npt.ArrayLike, margin: float, width: int, height: int, *, keep_empty: bool = False
) -> FloatArray:
    """Boxes (n,4) pushed out by ``margin`` x their width/height on each side, clipped to the
    image; boxes left empty by clipping are dropped (kept, as empty boxes, with
    ``keep_empty``)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    wh = np.concatenate([b[:, 2:] - b[:, :2]] * 2, axis=1) * margin
    out = b + wh * np.array([-1, -1, 1, 1], np.float32)
    out = np.clip(out, 0, np.array([width, height, width, height], np.float32))
    if keep_empty:
        out[:, 2:] = np.maximum(out[:, 2:], out[:, :2])
        return np.ascontiguousarray(out)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return np.ascontiguousarray(out[keep])


def even_boxes(boxes: FloatArray, width: int, height: int) -> FloatArray:
    """Boxes rounded outwards to even pixels, so that half-size (chroma) planes cover the
    same area."""
    if len(boxes) == 0:
        return boxes
    lo = np.floor(boxes[:, :2] / 2) * 2
    hi = np.ceil(boxes[:, 2:] / 2) * 2
    out = np.concatenate([lo, hi], axis=1)
    return np.clip(out, 0, np.array([width, height, width, height])).astype(np.float32)


def _pixel_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    x1 = max(math.floor(float(box[0])), 0)
    y1 = max(math.floor(float(box[1])), 0)
    x2 = min(math.ceil(float(box[2])), width)
    y2 = min(math.ceil(float(box[3])), height)
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def _gaussian(roi: np.ndarray) -> np.ndarray:
    h, w = roi.shape[:2]
    sigma = max(BLUR_SIGMA * max(h, w), 1.0)
    # A wide blur is done on a downscaled copy (same look, a fraction of the cost).
    factor = max(sigma / 3.0, 1.0)
    if factor > 1.5:
        small_size = (max(round(w / factor), 1), max(round(h / factor), 1))
        small = cv2.resize(roi, small_size, interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / factor, borderType=cv2.BORDER_REPLICATE)
        return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))
    return np.asarray(cv2.GaussianBlur(roi, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE))


def _pixelate(roi: np.ndarray) -> np.ndarray:
    h, w = roi.shape[:2]
    side = max(h, w)
    nx = max(round(PIXEL_BLOCKS * w / side), 1)
    ny = max(round(PIXEL_BLOCKS * h / side), 1)
    small = cv2.resize(roi, (nx, ny), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST))


def blur_regions(
    image: np.ndarray, boxes: npt.ArrayLike, method: str = "blur", *, fill: int = 0
) -> np.ndarray:
    """A copy of ``image`` (H,W) or (H,W,C) uint8 with every box (n,4 x1,y1,x2,y2, pixels,
    rounded outwards, clipped) hidden by ``method``: 'blur' (Gaussian, sigma scaled to the
    box), 'pixelate' (~``PIXEL_BLOCKS`` blocks across) or 'box' (filled with ``fill``).
    The input is never modified; boxes are used as given (see :func:`expand_boxes`)."""
    check_method(method)
    out = np.array(image, copy=True)
    h, w = out.shape[:2]
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        px = _pixel_box(box, w, h)
        if px is None:
            continue
        x1, y1, x2, y2 = px
        roi = out[y1:y2, x1:x2]
        if method == "box":
            roi[...] = fill
        elif method == "pixelate":
            roi[...] = _pixelate(np.ascontiguousarray(roi)).reshape(roi.shape)
        else:
            roi[...] = _gaussian(np.ascontiguousarray(roi)).reshape(roi.shape)
    return out
