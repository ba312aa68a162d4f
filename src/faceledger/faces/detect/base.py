"""The detector protocol, its registry, and numpy helpers shared by the decoders."""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from faceledger.models.catalog import ModelCard
from faceledger.models.store import ModelStore
from faceledger.runtime.model import ArchitectureRegistry, OnnxModel
from faceledger.runtime.onnx import RuntimeOptions
from faceledger.types import Faces, ImageArray


class DetectorOptions(BaseModel):
    """Settings every detector takes; a backend may subclass to add its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    nms_iou: float = Field(0.4, gt=0.0, le=1.0)
    input_max_side: int = Field(640, ge=64, le=4096, description="network input's longest side")
    threads: int = Field(0, ge=0, description="inference threads when no RuntimeOptions is given")


class Detector(Protocol):
    """``detect(rgb image) -> Faces`` in the image's own pixel coordinates, best first."""

    card: ModelCard

    def load(self) -> None: ...

    def detect(self, image: ImageArray) -> Faces: ...


class DetectorFactory(Protocol):
    """A detector class: what ``register_detector`` takes."""

    def __call__(
        self,
        card: ModelCard,
        store: ModelStore,
        options: DetectorOptions,
        runtime: RuntimeOptions | None = None,
    ) -> Detector: ...


def _import_detectors() -> None:
    from faceledger.faces.detect import dlib_hog, retinaface, scrfd, yunet  # noqa: F401


DETECTORS: ArchitectureRegistry[DetectorFactory] = ArchitectureRegistry(
    "detector", _import_detectors
)
register_detector = DETECTORS.register
"""Class decorator: ``@register_detector("scrfd")`` runs every card of that architecture."""


def create_detector(
    card: ModelCard,
    store: ModelStore,
    options: DetectorOptions,
    runtime: RuntimeOptions | None = None,
) -> Detector:
    """The detector for ``card``, by its architecture (not loaded yet).

    ``runtime`` (threads, providers) defaults to ``options.threads`` on the CPU.
    """
    cls = DETECTORS.lookup(card)
    return cls(card, store, options, runtime)


class OnnxDetector(OnnxModel):
    """An onnxruntime detector: the load sequence of :class:`OnnxModel` plus options."""

    def __init__(
        self,
        card: ModelCard,
        store: ModelStore,
        options: DetectorOptions,
        runtime: RuntimeOptions | None = None,
    ) -> None:
        super().__init__(card, store, runtime or RuntimeOptions(threads=options.threads))
        self.options = options


def resize_for_network(
    image: ImageArray,
    size: tuple[int, int] | None,
    max_side: int,
    stride: int = 32,
    upscale: bool = True,
) -> tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio and pad bottom/right with zeros.

    ``size`` is a fixed (width, height) the network needs; without it the longest side
    becomes ``max_side`` (with ``upscale=False`` a smaller image keeps its size) and the
    padded canvas is rounded up to a multiple of ``stride``.
    Returns the canvas and the factor that maps canvas coordinates back to the image.
    """
    h, w = image.shape[:2]
    if size is not None:
        cw, ch = size
        scale = min(cw / w, ch / h)
    else:
        scale = max_side / max(h, w)
        if not upscale:
            scale = min(1.0, scale)
        # at least one stride: a 1 x 5000 image must not become a canvas 0 pixels wide
        cw = max(stride, int(np.ceil(round(w * scale) / stride) * stride))
        ch = max(stride, int(np.ceil(round(h * scale) / stride) * stride))
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(
        image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    canvas = np.zeros((ch, cw, 3), dtype=np.uint8)
    canvas[:nh, :nw] = resized
    return canvas, 1.0 / scale


def to_tensor(canvas: np.ndarray, card: ModelCard) -> np.ndarray:
    """HWC uint8 RGB canvas -> NCHW float32 in the card's colour order and normalisation."""
    if card.color == "BGR":
        canvas = canvas[:, :, ::-1]
    tensor = (canvas.astype(np.float32) - np.asarray(card.mean, np.float32)) / card.std
    return np.ascontiguousarray(tensor.transpose(2, 0, 1)[None])


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def anchor_centers(height: int, width: int, stride: int, per_cell: int) -> np.ndarray:
    """(h*w*per_cell, 2) x,y centres of a stride's grid, row-major, each repeated per_cell."""
    ys, xs = np.mgrid[:height, :width]
    centers = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centers, per_cell, axis=0) if per_cell > 1 else centers


def finish(
    boxes: np.ndarray,
    scores: np.ndarray,
    landmarks: np.ndarray,
    back: float,
    options: DetectorOptions,
) -> Faces:
    """Threshold, NMS, and map network coordinates back to the image."""
    keep = scores >= options.score_threshold
    boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
    kept = nms(boxes, scores, options.nms_iou)
    return Faces(boxes[kept], scores[kept], landmarks[kept].reshape(-1, 5, 2)).scaled(back)
