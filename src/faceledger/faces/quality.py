"""Quality gate: which detected faces are good enough to embed, and a score for the rest."""

from __future__ import annotations

import cv2
import numpy as np

from faceledger.types import Faces


def size_gate(faces: Faces, min_size: int) -> Faces:
    """Faces whose shorter box side is at least ``min_size`` pixels."""
    return faces[np.minimum(faces.widths, faces.heights) >= min_size]


def sharpness(crops: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each crop's grey image (higher = sharper), shape (n,)."""
    out = np.zeros(len(crops), dtype=np.float32)
    for i, crop in enumerate(crops):
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        out[i] = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return out
