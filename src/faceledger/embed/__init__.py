"""Embedders: aligned crops -> L2-normalised vectors stamped with the model id."""

from faceledger.embed.base import Embedder, create_embedder

__all__ = ["Embedder", "create_embedder"]
