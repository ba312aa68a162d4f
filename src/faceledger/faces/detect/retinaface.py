"""RetinaFace MobileNet-0.25 (biubug6/Pytorch_Retinaface export): SSD-style priors."""

from __future__ import annotations

import numpy as np

from faceledger.faces.detect.base import (
    DetectorOptions,
    OnnxDetector,
    anchor_centers,
    finish,
    register_detector,
    resize_for_network,
    to_tensor,
)
from faceledger.models.catalog import ModelCard
from faceledger.models.store import ModelStore
from faceledger.runtime.onnx import RuntimeOptions
from faceledger.types import Faces, ImageArray

MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCE = (0.1, 0.2)
"""Upstream subtracts this per-channel mean from the 0-255 BGR image. The card's scalar
``mean`` cannot hold it, so the card keeps 0 (raw BGR) and the decoder subtracts it."""


def priors(width: int, height: int) -> np.ndarray:
    """(n, 4) prior boxes cx, cy, w, h in canvas pixels, in the graph's output order."""
    out = []
    for sizes, step in zip(MIN_SIZES, STEPS, strict=True):
        rows, cols = -(-height // step), -(-width // step)
        centers = anchor_centers(rows, cols, step, len(sizes)) + step / 2
        wh = np.tile(np.asarray(sizes, dtype=np.float32), rows * cols)[:, None].repeat(2, axis=1)
        out.append(np.concatenate([centers, wh], axis=1))
    return np.concatenate(out)


def decode(
    outputs: list[np.ndarray], prior: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Graph outputs (loc, softmaxed conf, landmarks) -> boxes, scores, (n, 10) landmarks."""
    loc, conf, lm = (o.reshape(len(prior), -1) for o in outputs)
    centers, sizes = prior[:, :2], prior[:, 2:]
    mid = centers + loc[:, :2] * VARIANCE[0] * sizes
    half = sizes * np.exp(loc[:, 2:] * VARIANCE[1]) / 2
    boxes = np.concatenate([mid - half, mid + half], axis=1)
    kps = np.tile(centers, 5) + lm * VARIANCE[0] * np.tile(sizes, 5)
    return boxes, conf[:, 1], kps


@register_detector("retinaface")
class RetinaFaceDetector(OnnxDetector):
    """RetinaFace on a letterboxed BGR canvas of the card's fixed size, minus its channel means."""

    def __init__(
        self,
        card: ModelCard,
        store: ModelStore,
        options: DetectorOptions,
        runtime: RuntimeOptions | None = None,
    ) -> None:
        super().__init__(card, store, options, runtime)
        self._priors: dict[tuple[int, int], np.ndarray] = {}

    def detect(self, image: ImageArray) -> Faces:
        canvas, back = resize_for_network(image, self.card.input_size, self.options.input_max_side)
        height, width = canvas.shape[:2]
        if (width, height) not in self._priors:
            self._priors[width, height] = priors(width, height)
        outputs = self.session.run(to_tensor(canvas, self.card))
        boxes, scores, kps = decode(outputs, self._priors[width, height])
        return finish(boxes, scores, kps, back, self.options)
