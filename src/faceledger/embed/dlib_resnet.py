"""dlib's ResNet-29 face descriptor (128-d) on dlib's own 150x150 chips."""

from __future__ import annotations

from typing import Any

import numpy as np

from faceledger.embed.base import empty, register_embedder
from faceledger.models.catalog import ModelCard
from faceledger.models.store import ModelStore
from faceledger.runtime.onnx import RuntimeOptions
from faceledger.types import Embeddings


@register_embedder("dlib_resnet")
class DlibResNetEmbedder:
    """dlib runs on its own (no execution providers): ``runtime`` is accepted for the common
    constructor and not used."""

    def __init__(
        self, card: ModelCard, store: ModelStore, runtime: RuntimeOptions | None = None
    ) -> None:
        self.card = card
        self.store = store
        self.runtime = runtime or RuntimeOptions()
        self._model: Any = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Resolve and verify the descriptor model and open it in dlib (once)."""
        if self.loaded:
            return
        import dlib

        path = self.store.resolve(self.card).path("dlib_face_recognition_resnet_model_v1.dat")
        self._model = dlib.face_recognition_model_v1(str(path))

    def embed(self, crops: np.ndarray) -> Embeddings:
        self.load()
        if len(crops) == 0:
            return empty(self.card)
        chips = [np.ascontiguousarray(c) for c in crops]
        vectors = np.array(self._model.compute_face_descriptor(chips), dtype=np.float32)
        return Embeddings(vectors, self.card.name)
