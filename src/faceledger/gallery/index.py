"""Vector indexes behind one small array contract: ``search(queries, k) -> (scores, ids)``.

``ExactIndex`` is the brute-force reference every approximate or remote index must be
tested against. Scores are cosine similarities (vectors are L2-normalised); rows are sorted
best first; when ``k`` exceeds the index size the tail is padded with score -inf, id -1.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    @property
    def size(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


class ExactIndex:
    """Exact inner-product search over an immutable (n, d) matrix."""

    def __init__(self, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"ExactIndex needs (n, d) vectors, got shape {vectors.shape}")
        self._vectors = np.ascontiguousarray(vectors)

    @property
    def size(self) -> int:
        return int(self._vectors.shape[0])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        m, n = queries.shape[0], self.size
        scores = np.full((m, k), -np.inf, dtype=np.float32)
        ids = np.full((m, k), -1, dtype=np.int64)
        if n == 0 or m == 0:
            return scores, ids
        if queries.shape[1] != self._vectors.shape[1]:
            raise ValueError(
                f"query dimension {queries.shape[1]} differs from index dimension "
                f"{self._vectors.shape[1]}"
            )
        sims = queries @ self._vectors.T
        kk = min(k, n)
        top = (
            np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            if kk < n
            else np.tile(np.arange(n), (m, 1))
        )
        top_scores = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        ids[:, :kk] = np.take_along_axis(top, order, axis=1)
        scores[:, :kk] = np.take_along_axis(top_scores, order, axis=1)
        return scores, ids
