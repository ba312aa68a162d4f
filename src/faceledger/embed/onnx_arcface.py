"""ONNX embedders that take ArcFace-aligned crops (MobileFaceNet and kin)."""

from __future__ import annotations

import numpy as np

from faceledger.embed.base import empty, register_embedder
from faceledger.models.catalog import ModelCard
from faceledger.models.store import ModelStore
from faceledger.runtime.onnx import OnnxSession
from faceledger.types import Embeddings


@register_embedder("mobilefacenet")
class OnnxArcFaceEmbedder:
    def __init__(self, card: ModelCard, store: ModelStore, threads: int = 0) -> None:
        self.card = card
        self.store = store
        self.threads = threads
        self._session: OnnxSession | None = None

    def load(self) -> None:
        self._loaded()

    def _loaded(self) -> OnnxSession:
        if self._session is None:
            self._session = OnnxSession(self.store.resolve(self.card).path(), self.threads)
        return self._session

    def embed(self, crops: np.ndarray) -> Embeddings:
        session = self._loaded()
        if len(crops) == 0:
            return empty(self.card)
        x = crops[..., ::-1] if self.card.color == "BGR" else crops
        x = ((x.astype(np.float32) - self.card.mean) / self.card.std).transpose(0, 3, 1, 2)
        # The shipped graph fixes batch 1, so faces run one at a time for now.
        rows = [session.run(np.ascontiguousarray(x[i : i + 1]))[0] for i in range(len(x))]
        return Embeddings(np.concatenate(rows).reshape(len(x), -1), self.card.name)
