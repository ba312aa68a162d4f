"""ONNX embedders that take ArcFace-aligned crops (MobileFaceNet, EdgeFace and kin).

EdgeFace is published as a PyTorch state dict; its cards name the ONNX file that
``faceledger models convert`` makes, and ``ModelStore.runtime_path`` finds it (or says how
to make it)."""

from __future__ import annotations

import numpy as np

from faceledger.embed.base import empty, register_embedder
from faceledger.runtime.model import OnnxModel
from faceledger.types import Embeddings

_BATCH = 32
"""Faces per run for graphs with a dynamic batch dimension."""


@register_embedder("arcface_onnx")
class OnnxArcFaceEmbedder(OnnxModel):
    """Any ONNX graph that maps ArcFace 112x112 crops to one vector each."""

    dynamic_batch = True

    def embed(self, crops: np.ndarray) -> Embeddings:
        session = self.session
        if len(crops) == 0:
            return empty(self.card)
        x = crops[..., ::-1] if self.card.color == "BGR" else crops
        x = ((x.astype(np.float32) - self.card.mean) / self.card.std).transpose(0, 3, 1, 2)
        # Batch-1 graphs are rewritten on load (runtime.onnx.with_dynamic_batch); one that
        # cannot be rewritten runs one face at a time.
        fixed = session.input_shape[0]
        step = fixed if isinstance(fixed, int) and fixed > 0 else _BATCH
        rows = [
            session.run(np.ascontiguousarray(x[i : i + step]))[0] for i in range(0, len(x), step)
        ]
        return Embeddings(np.concatenate(rows).reshape(len(x), -1), self.card.name)
