"""The most used open-source peer, run by its own code with its own defaults.

``face_recognition`` (Adam Geitgey, MIT): ``face_locations`` (dlib HOG, one upsample),
then ``face_encodings`` (5-point chip, ResNet-128, one jitter), compared by Euclidean
distance. Install it without its source-built ``dlib`` requirement (``dlib-bin`` already
provides the module): ``pip install --no-deps face_recognition==1.3.0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from faceledger.bench.lfw import ImageKey, NpzCache, Progress, centred_fallback, image_path
from faceledger.errors import ConfigError

PEERS = ("face_recognition",)


def load_face_recognition() -> ModuleType:
    from PIL import ImageFile

    tolerant = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        import face_recognition
    except ImportError as exc:
        raise ConfigError(
            "the face_recognition peer is not installed: "
            "pip install --no-deps face_recognition==1.3.0"
        ) from exc
    finally:
        # face_recognition switches Pillow to accepting truncated images, process-wide;
        # faceledger reports truncated files, so the setting is put back.
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
    return face_recognition


@dataclass
class FaceRecognitionPeer:
    """face_recognition's pipeline over LFW images, cached like ours."""

    root: Path
    cache: Path | None = None
    name: str = "face_recognition"
    metric: str = "euclidean"

    def __post_init__(self) -> None:
        self._fr: Any = load_face_recognition()

    def load_image(self, path: Path) -> np.ndarray:
        return np.asarray(self._fr.load_image_file(str(path)))

    def locate_and_encode(self, image: np.ndarray) -> tuple[list[np.ndarray], bool]:
        """All encodings of an RGB image, as the library's README does it."""
        boxes = self._fr.face_locations(image)
        return self._fr.face_encodings(image, boxes), len(boxes) == 0

    def _encode_centre(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        h, w = image.shape[:2]
        boxes = self._fr.face_locations(image)
        fallback = not boxes
        if fallback:  # the standard LFW fallback: a centred box
            x1, y1, x2, y2 = (round(float(v)) for v in centred_fallback(w, h).boxes[0])
            boxes = [(y1, x2, y2, x1)]
        box = min(boxes, key=lambda b: _distance_to_centre(b, w, h))
        return np.asarray(self._fr.face_encodings(image, [box])[0], np.float32), fallback

    def run(
        self, keys: Sequence[ImageKey], progress: Progress | None = None
    ) -> tuple[dict[ImageKey, np.ndarray], list[ImageKey]]:
        rows = NpzCache(self.cache / "lfw-peer-face_recognition.npz" if self.cache else None)
        todo = [k for k in dict.fromkeys(keys) if k not in rows]
        if progress and len(todo) < len(set(keys)):
            progress(len(set(keys)) - len(todo))
        with rows.saving():
            for key in todo:
                image = self.load_image(image_path(self.root, key))
                vector, fallback = self._encode_centre(image)
                rows.put(key, np.r_[vector, float(fallback)].astype(np.float32))
                if progress:
                    progress(1)
        vectors = {k: rows[k][:-1] for k in keys}
        return vectors, [k for k in keys if rows[k][-1] > 0]


def _distance_to_centre(box: tuple[int, int, int, int], width: int, height: int) -> float:
    top, right, bottom, left = box
    return float(np.hypot((left + right) / 2 - width / 2, (top + bottom) / 2 - height / 2))
