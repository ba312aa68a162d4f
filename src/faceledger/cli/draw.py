"""Annotated copies of images: boxes, scores and the five landmarks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from faceledger.engine import Analysis
from faceledger.images import save_image

_LANDMARK_COLOURS = ((255, 64, 64), (64, 64, 255), (64, 255, 64), (255, 160, 0), (255, 0, 255))


def annotate(found: Analysis, folder: Path) -> Path:
    """Draw ``found`` onto a copy of its image and save it as ``folder/<name>.png``."""
    canvas = np.ascontiguousarray(found.image.copy())
    thickness = max(1, round(max(canvas.shape[:2]) / 500))
    for box, score, marks in zip(
        found.faces.boxes, found.faces.scores, found.faces.landmarks, strict=True
    ):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 220, 0), thickness)
        cv2.putText(
            canvas,
            f"{score:.2f}",
            (x1, max(12, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            (0, 220, 0),
            thickness,
        )
        for (x, y), colour in zip(marks, _LANDMARK_COLOURS, strict=True):
            cv2.circle(canvas, (round(float(x)), round(float(y))), 2 * thickness, colour, -1)
    target = folder / (Path(found.source).stem + ".png")
    save_image(canvas, target)
    return target
