"""Open-set identification: per-subject best-template score, then known or unknown."""

from __future__ import annotations

from collections import Counter

import numpy as np

from faceledger.gallery.index import ExactIndex, VectorIndex
from faceledger.types import Candidate, Embeddings, Match, Threshold


class Matcher:
    """Matches embeddings against templates labelled with subject names."""

    def __init__(self, index: VectorIndex, labels: np.ndarray, threshold: Threshold) -> None:
        if index.size != len(labels):
            raise ValueError(
                f"index holds {index.size} vectors but {len(labels)} labels were given"
            )
        self.index = index
        self.labels = labels
        self.threshold = threshold
        self._per_subject = max(Counter(labels.tolist()).values(), default=1)

    @classmethod
    def exact(cls, vectors: np.ndarray, labels: np.ndarray, threshold: Threshold) -> Matcher:
        return cls(ExactIndex(vectors), labels, threshold)

    def match(self, embeddings: Embeddings, top: int = 1) -> list[Match]:
        """One Match per embedding; ``subject`` is None unless the best score clears the bar."""
        if len(embeddings) == 0:
            return []
        # The top `top` subjects' best templates all rank within top * (max templates per subject).
        k = min(self.index.size, max(top, 1) * self._per_subject)
        scores, ids = self.index.search(embeddings.vectors, max(k, 1))
        return [
            self._decide(row_scores, row_ids, top)
            for row_scores, row_ids in zip(scores, ids, strict=True)
        ]

    def _decide(self, scores: np.ndarray, ids: np.ndarray, top: int) -> Match:
        candidates: list[Candidate] = []
        seen: set[str] = set()
        for score, idx in zip(scores, ids, strict=True):
            if idx < 0:
                break
            name = str(self.labels[idx])
            if name not in seen:
                seen.add(name)
                candidates.append(Candidate(name, float(score)))
                if len(candidates) == top:
                    break
        if not candidates:
            return Match(None, -1.0, self.threshold, ())  # empty gallery: nothing to match
        best = candidates[0]
        known = best.score >= self.threshold.value
        return Match(best.subject if known else None, best.score, self.threshold, tuple(candidates))
