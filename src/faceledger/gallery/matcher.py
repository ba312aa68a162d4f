"""Open-set identification: per-subject best-template score, then known or unknown."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from faceledger.gallery.index import ExactIndex, VectorIndex
from faceledger.types import Candidate, Embeddings, Match, Threshold

NameLookup = Callable[[np.ndarray], dict[int, str]]
"""Subject ids -> names of those that exist (an erased subject is left out)."""


@dataclass
class Labels:
    """Which subject each template id belongs to (sorted template ids, their subjects),
    and how to name a subject. Names are looked up for the hits of each search only, so a
    gallery of millions never holds every name, and a subject erased meanwhile is not
    named."""

    template_ids: np.ndarray
    subject_ids: np.ndarray
    names: NameLookup

    def __post_init__(self) -> None:
        order = np.argsort(self.template_ids, kind="stable")
        self.template_ids = np.asarray(self.template_ids, np.int64)[order]
        self.subject_ids = np.asarray(self.subject_ids, np.int64)[order]
        self._recount()

    @classmethod
    def positional(cls, names: np.ndarray) -> Labels:
        """Template ``i`` belongs to the subject named ``names[i]``."""
        unique, codes = np.unique(np.asarray(names, dtype=object).astype(str), return_inverse=True)
        table = {i: str(name) for i, name in enumerate(unique)}

        def lookup(ids: np.ndarray) -> dict[int, str]:
            return {int(i): table[int(i)] for i in np.unique(ids) if int(i) in table}

        return cls(np.arange(len(codes), dtype=np.int64), codes.astype(np.int64), lookup)

    @property
    def size(self) -> int:
        return int(self.template_ids.shape[0])

    @property
    def per_subject(self) -> int:
        """The most templates any one subject has (at least 1)."""
        return self._per_subject

    def _recount(self) -> None:
        ids = self.subject_ids
        if ids.size == 0:
            self._per_subject = 1
        elif ids.min() >= 0 and ids.max() < 4 * ids.size + 4096:  # dense ids: count in O(n)
            self._per_subject = max(int(np.bincount(ids).max()), 1)
        else:
            _, counts = np.unique(ids, return_counts=True)
            self._per_subject = max(int(counts.max()), 1)

    def subjects_of(self, ids: np.ndarray) -> np.ndarray:
        """The subject id of each template id (-1 for padding or an id not held)."""
        ids = np.asarray(ids, np.int64)
        if self.size == 0:
            return np.full(ids.shape, -1, np.int64)
        at = np.clip(np.searchsorted(self.template_ids, ids), 0, self.size - 1)
        found = (self.template_ids[at] == ids) & (ids >= 0)
        return np.where(found, self.subject_ids[at], -1)

    def remove(self, ids: np.ndarray) -> None:
        keep = ~np.isin(self.template_ids, np.asarray(ids, np.int64))
        if not keep.all():
            self.template_ids, self.subject_ids = self.template_ids[keep], self.subject_ids[keep]
            self._recount()

    def add(self, template_ids: np.ndarray, subject_ids: np.ndarray) -> None:
        template_ids = np.asarray(template_ids, np.int64)
        subject_ids = np.asarray(subject_ids, np.int64)
        if template_ids.size == 0:
            return
        ids = np.concatenate([self.template_ids, template_ids])
        subjects = np.concatenate([self.subject_ids, subject_ids])
        if self.size and template_ids.min() <= self.template_ids[-1]:
            order = np.argsort(ids, kind="stable")
            ids, subjects = ids[order], subjects[order]
        self.template_ids, self.subject_ids = ids, subjects
        self._recount()


class Matcher:
    """Matches embeddings against templates labelled with their subjects."""

    def __init__(self, index: VectorIndex, labels: Labels, threshold: Threshold) -> None:
        if index.size != labels.size:
            raise ValueError(
                f"index holds {index.size} vectors but {labels.size} labels were given"
            )
        self.index = index
        self.labels = labels
        self.threshold = threshold

    @classmethod
    def exact(cls, vectors: np.ndarray, names: np.ndarray, threshold: Threshold) -> Matcher:
        """An exact matcher over ``vectors``, template ``i`` belonging to ``names[i]``."""
        return cls(ExactIndex(vectors), Labels.positional(names), threshold)

    def match(self, embeddings: Embeddings, top: int = 1) -> list[Match]:
        """One Match per embedding; ``subject`` is None unless the best score clears the bar."""
        if len(embeddings) == 0:
            return []
        # The top `top` subjects' best templates all rank within top * (max templates per subject).
        k = min(self.index.size, max(top, 1) * self.labels.per_subject)
        scores, ids = self.index.search(embeddings.vectors, max(k, 1))
        subject_ids = self.labels.subjects_of(ids)
        hits = subject_ids[subject_ids >= 0]
        names = self.labels.names(np.unique(hits)) if hits.size else {}
        return [
            self._decide(row_scores, row_subjects, names, top)
            for row_scores, row_subjects in zip(scores, subject_ids, strict=True)
        ]

    def _decide(
        self, scores: np.ndarray, subject_ids: np.ndarray, names: dict[int, str], top: int
    ) -> Match:
        candidates: list[Candidate] = []
        seen: set[int] = set()
        for score, subject_id in zip(scores, subject_ids, strict=True):
            sid = int(subject_id)
            if sid < 0 or sid in seen or sid not in names:
                continue  # padding, a subject already listed, or one erased meanwhile
            seen.add(sid)
            candidates.append(Candidate(names[sid], float(score)))
            if len(candidates) == top:
                break
        if not candidates:
            return Match(None, -1.0, self.threshold, ())  # empty gallery: nothing to match
        best = candidates[0]
        known = best.score >= self.threshold.value
        return Match(best.subject if known else None, best.score, self.threshold, tuple(candidates))
