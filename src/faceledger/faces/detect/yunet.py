"""YuNet (OpenCV Zoo): anchor-free, one prediction per grid cell at strides 8/16/32."""

from __future__ import annotations

import numpy as np

from faceledger.faces.detect.base import (
    OnnxDetector,
    anchor_centers,
    finish,
    register_detector,
    resize_for_network,
    to_tensor,
)
from faceledger.types import Faces, ImageArray

STRIDES = (8, 16, 32)


def decode(
    outputs: list[np.ndarray], height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Graph outputs (cls x3, obj x3, bbox x3, kps x3) -> boxes, scores, (n, 10) landmarks."""
    n = len(STRIDES)
    boxes, scores, kps = [], [], []
    for i, stride in enumerate(STRIDES):
        cls = outputs[i].reshape(-1)
        obj = outputs[n + i].reshape(-1)
        bbox = outputs[2 * n + i].reshape(-1, 4)
        lm = outputs[3 * n + i].reshape(-1, 10)
        centers = anchor_centers(height // stride, width // stride, stride, 1)
        scores.append(np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1)))
        mid = centers + bbox[:, :2] * stride
        half = np.exp(bbox[:, 2:]) * stride / 2
        boxes.append(np.concatenate([mid - half, mid + half], axis=1))
        kps.append(np.tile(centers, 5) + lm * stride)
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(kps)


@register_detector("yunet")
class YuNetDetector(OnnxDetector):
    """YuNet on a BGR 0-255 canvas whose longest side is ``options.input_max_side``."""

    def detect(self, image: ImageArray) -> Faces:
        # Small images are not upscaled: that multiplies the work and finds no more faces.
        canvas, back = resize_for_network(image, None, self.options.input_max_side, upscale=False)
        outputs = self.session.run(to_tensor(canvas, self.card))
        boxes, scores, kps = decode(outputs, *canvas.shape[:2])
        return finish(boxes, scores, kps, back, self.options)
