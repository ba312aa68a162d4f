"""Annotated copies of images: boxes, scores and the five landmarks (``detect --draw``), or
boxes with who each face is, 'unknown' included, and its score (``identify --draw``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from faceledger.config import Config
from faceledger.engine import Analysis
from faceledger.images import load_image, save_image
from faceledger.types import ImageArray, ImageResult

_LANDMARK_COLOURS = ((255, 64, 64), (64, 64, 255), (64, 255, 64), (255, 160, 0), (255, 0, 255))
_FOUND = (0, 220, 0)
_KNOWN = (0, 200, 0)
_UNKNOWN = (255, 170, 0)


def annotate(found: Analysis, folder: Path) -> Path:
    """Draw ``found`` onto a copy of its image and save it as ``folder/<name>.png``."""
    pen = _Pen(found.image)
    for box, score, marks in zip(
        found.faces.boxes, found.faces.scores, found.faces.landmarks, strict=True
    ):
        pen.labelled_box(box, f"{score:.2f}", _FOUND)
        for (x, y), colour in zip(marks, _LANDMARK_COLOURS, strict=True):
            pen.dot(float(x), float(y), colour)
    return pen.save(found.source, folder)


def annotate_identified(result: ImageResult, folder: Path, config: Config) -> Path:
    """Draw each face of ``result`` (its box, the subject or 'unknown', the score) onto a
    copy of its image, read again as the engine read it (upright, within the configured
    limits); saved as ``folder/<name>.png``."""
    image = load_image(
        Path(result.image), config.max_pixels, config.max_bytes,
        max_decode_bytes=config.max_decode_bytes, decode_budget_total=config.decode_budget_total,
    )  # fmt: skip
    pen = _Pen(image)
    for face in result.faces:
        match = face.match
        if match is None:
            label, colour = f"{face.det_score:.2f}", _FOUND
        elif match.decision == "insufficient_quality":
            label, colour = "too poor to decide", _UNKNOWN
        elif match.subject is None:
            label, colour = f"unknown {match.score:.2f}", _UNKNOWN
        else:
            label, colour = f"{match.subject} {match.score:.2f}", _KNOWN
        pen.labelled_box(face.box, label, colour)
    return pen.save(result.image, folder)


class _Pen:
    """Draws on a copy of an RGB image, line width and text size scaled to the picture."""

    def __init__(self, image: ImageArray) -> None:
        self.canvas = Image.fromarray(np.ascontiguousarray(image))
        self.draw = ImageDraw.Draw(self.canvas)
        self.width = max(1, round(max(self.canvas.size) / 500))
        self.font = _font(max(11, 12 * self.width))

    def labelled_box(
        self, box: Sequence[float] | np.ndarray, label: str, colour: tuple[int, int, int]
    ) -> None:
        """The box and, on a filled strip above it (inside the picture), its label."""
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        self.draw.rectangle((x1, y1, x2, y2), outline=colour, width=self.width)
        left, top, right, bottom = self.draw.textbbox((0, 0), label, font=self.font)
        pad = self.width + 1
        strip_h = bottom - top + 2 * pad
        y = max(0, y1 - strip_h)
        self.draw.rectangle((x1, y, x1 + right - left + 2 * pad, y + strip_h), fill=colour)
        self.draw.text((x1 + pad - left, y + pad - top), label, fill=(0, 0, 0), font=self.font)

    def dot(self, x: float, y: float, colour: tuple[int, int, int]) -> None:
        r = 2 * self.width
        self.draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)

    def save(self, source: str, folder: Path) -> Path:
        target = folder / (Path(source).stem + ".png")
        save_image(np.asarray(self.canvas), target)
        return target


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own font at ``size`` px (any Latin name); its small bitmap font where Pillow
    has no FreeType or predates sizes (10.0)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()
