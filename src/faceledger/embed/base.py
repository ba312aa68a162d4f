"""The embedder protocol and its registry: ``embed(aligned crops) -> Embeddings``."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from faceledger.models.catalog import ModelCard
from faceledger.models.store import ModelStore
from faceledger.runtime.model import ArchitectureRegistry
from faceledger.runtime.onnx import RuntimeOptions
from faceledger.types import Embeddings


class Embedder(Protocol):
    card: ModelCard

    def load(self) -> None: ...

    def embed(self, crops: np.ndarray) -> Embeddings:
        """(n, H, W, 3) uint8 RGB crops from the card's aligner -> n L2-normalised vectors."""
        ...


class EmbedderFactory(Protocol):
    """An embedder class: what ``register_embedder`` takes."""

    def __call__(
        self, card: ModelCard, store: ModelStore, runtime: RuntimeOptions | None = None
    ) -> Embedder: ...


def _import_embedders() -> None:
    from faceledger.embed import dlib_resnet, onnx_arcface  # noqa: F401


EMBEDDERS: ArchitectureRegistry[EmbedderFactory] = ArchitectureRegistry(
    "embedder", _import_embedders
)
register_embedder = EMBEDDERS.register
"""Class decorator: ``@register_embedder("arcface_onnx")`` runs every card of that
architecture."""


def create_embedder(
    card: ModelCard,
    store: ModelStore,
    threads: int = 0,
    *,
    runtime: RuntimeOptions | None = None,
) -> Embedder:
    """The embedder for ``card``, by its architecture (not loaded yet).

    ``runtime`` (threads, providers); without it, ``threads`` on the CPU.
    """
    cls = EMBEDDERS.lookup(card)
    return cls(card, store, runtime or RuntimeOptions(threads=threads))


def empty(card: ModelCard) -> Embeddings:
    return Embeddings(np.zeros((0, card.embedding_dim), np.float32), card.name)
