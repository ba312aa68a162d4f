"""The embedder protocol and its registry: ``embed(aligned crops) -> Embeddings``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import numpy as np

from faceledger.errors import ConfigError
from faceledger.models.catalog import ModelCard
from faceledger.models.store import ModelStore
from faceledger.types import Embeddings


class Embedder(Protocol):
    card: ModelCard

    def load(self) -> None: ...

    def embed(self, crops: np.ndarray) -> Embeddings:
        """(n, H, W, 3) uint8 RGB crops from the card's aligner -> n L2-normalised vectors."""
        ...


EmbedderFactory = Callable[[ModelCard, ModelStore, int], Embedder]
_REGISTRY: dict[str, EmbedderFactory] = {}
_T = TypeVar("_T")


def register_embedder(name: str) -> Callable[[_T], _T]:
    def wrap(cls: _T) -> _T:
        _REGISTRY[name] = cls  # type: ignore[assignment]
        return cls

    return wrap


def create_embedder(card: ModelCard, store: ModelStore, threads: int = 0) -> Embedder:
    from faceledger.embed import dlib_resnet, onnx_arcface  # noqa: F401  (register)

    if card.kind != "embedder" or card.name not in _REGISTRY:
        valid = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"{card.name!r} is not an embedder; known embedders: {valid}")
    return _REGISTRY[card.name](card, store, threads)


def empty(card: ModelCard) -> Embeddings:
    return Embeddings(np.zeros((0, card.embedding_dim), np.float32), card.name)
