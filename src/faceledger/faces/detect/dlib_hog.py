"""dlib's HOG frontal-face detector, with landmarks from dlib's 5-point shape predictor.

dlib's five points are two corners of each eye and the base of the nose. The ArcFace-order
landmarks returned here take eye centres from the corners, the nose point as given, and
mouth corners estimated from the eye-nose geometry (dlib does not locate the mouth).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from faceledger.faces.detect.base import DetectorOptions, register_detector
from faceledger.models.catalog import ModelCard
from faceledger.models.store import ModelStore
from faceledger.runtime.onnx import RuntimeOptions
from faceledger.types import Faces, ImageArray


def dlib_points_to_arcface(points: np.ndarray) -> np.ndarray:
    """(n,5,2) dlib 5-point shapes -> (n,5,2) eyes, nose, mouth corners (viewer's left first)."""
    eye_a = points[:, 0:2].mean(axis=1)
    eye_b = points[:, 2:4].mean(axis=1)
    swap = (eye_a[:, 0] > eye_b[:, 0])[:, None]
    left, right = np.where(swap, eye_b, eye_a), np.where(swap, eye_a, eye_b)
    nose = points[:, 4]
    mid = (left + right) / 2
    down = nose - mid
    half = (right - left) / 2
    mouth_mid = nose + 0.55 * down
    return np.stack([left, right, nose, mouth_mid - 0.8 * half, mouth_mid + 0.8 * half], axis=1)


def _box_to_rect(box: np.ndarray) -> Any:
    import dlib

    x1, y1, x2, y2 = (round(float(v)) for v in box)
    return dlib.rectangle(x1, y1, x2, y2)


def shape_points(predictor: Any, image: ImageArray, boxes: np.ndarray) -> np.ndarray:
    """Run a dlib shape predictor on each box; (n, parts, 2) float32."""
    shapes = [predictor(image, _box_to_rect(b)) for b in boxes]
    return np.array([[(p.x, p.y) for p in s.parts()] for s in shapes], dtype=np.float32).reshape(
        len(shapes), -1, 2
    )


@register_detector("dlib_hog")
class DlibHogDetector:
    """HOG + linear SVM (dlib). Finds frontal faces of about 80 px and larger.

    dlib runs on its own (one thread, no execution providers): ``runtime`` is accepted for
    the common constructor and not used.
    """

    def __init__(
        self,
        card: ModelCard,
        store: ModelStore,
        options: DetectorOptions,
        runtime: RuntimeOptions | None = None,
    ) -> None:
        self.card = card
        self.store = store
        self.options = options
        self.runtime = runtime or RuntimeOptions(threads=options.threads)
        self._detector: Any = None
        self._predictor: Any = None

    @property
    def loaded(self) -> bool:
        return self._detector is not None

    def load(self) -> None:
        """Resolve and verify the shape predictor and build dlib's detector (once)."""
        if self.loaded:
            return
        import dlib

        resolved = self.store.resolve(self.card)
        self._predictor = dlib.shape_predictor(str(resolved.path()))
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, image: ImageArray) -> Faces:
        self.load()
        h, w = image.shape[:2]
        scale = min(1.0, self.options.input_max_side / max(h, w))
        small: np.ndarray = image
        if scale < 1.0:
            import cv2

            small = cv2.resize(
                image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
            )
        # One upsampling pass finds faces down to ~40 px; the score is the SVM margin.
        rects, margins, _ = self._detector.run(small, 1, -0.2)
        if not rects:
            return Faces.empty()
        boxes = np.array(
            [(r.left(), r.top(), r.right(), r.bottom()) for r in rects], dtype=np.float32
        )
        scores = 1.0 / (1.0 + np.exp(-2.0 * np.asarray(margins, dtype=np.float32)))
        keep = scores >= self.options.score_threshold
        boxes, scores = boxes[keep], scores[keep]
        if not len(boxes):
            return Faces.empty()
        points = shape_points(self._predictor, small, boxes)
        faces = Faces(boxes, scores, dlib_points_to_arcface(points)).scaled(1.0 / scale)
        return faces.sorted_by_area()
