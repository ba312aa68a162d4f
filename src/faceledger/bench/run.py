"""``faceledger bench lfw``: every LFW protocol for one profile (and the peer), one result.

The result is a flat dict with fixed keys (see ``RESULT_KEYS``) so that scripts and the
docs can rely on it; ``details`` holds what a reader needs to trust the numbers (counts,
thresholds, fallbacks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from faceledger.bench import protocols
from faceledger.bench.lfw import ImageKey, Pair, all_keys, people, read_pairs
from faceledger.bench.protocols import FARS, FPIRS, Metric

RESULT_KEYS = (
    "profile",
    "models",
    "lfw_acc",
    "lfw_acc_std",
    "auc",
    "tar_at_far_1e-2",
    "tar_at_far_1e-3",
    "tar_at_far_1e-4",
    "rank1",
    "rank5",
    "fnir_at_fpir_0.01",
    "fnir_at_fpir_0.003",
    "search_correct",
    "search_wrong",
    "search_fpir",
    "det_failures",
    "ms_detect",
    "ms_embed_per_face",
    "images_per_s",
)

ProgressFactory = Callable[[str, int], Callable[[int], None]]
"""(label, total) -> advance(n): how the caller shows progress."""


class LfwVectors(Protocol):
    """Anything that turns LFW image keys into vectors (our pipeline or a peer's)."""

    def run(
        self, keys: Sequence[ImageKey], progress: Callable[[int], None] | None = None
    ) -> tuple[dict[ImageKey, np.ndarray], list[ImageKey]]: ...


@dataclass(frozen=True)
class LfwData:
    """The LFW images and protocol files under one folder, optionally cut to a slice."""

    root: Path
    pairs: list[Pair]
    counts: dict[str, int]

    @classmethod
    def open(cls, root: Path, per_fold: int | None = None) -> LfwData:
        """``per_fold`` keeps the first N mated and N non-mated pairs of every fold, and
        only the people those pairs name (a quick run for tests and smoke checks)."""
        pairs = read_pairs(root / "pairs.txt")
        counts = people(root)
        if per_fold is not None:
            kept: list[Pair] = []
            for fold in sorted({p.fold for p in pairs}):
                for same in (True, False):
                    kept += [p for p in pairs if p.fold == fold and p.same == same][:per_fold]
            pairs = kept
            named = {k[0] for p in pairs for k in (p.a, p.b)}
            counts = {n: c for n, c in counts.items() if n in named}
        return cls(root, pairs, counts)

    def keys(self) -> list[ImageKey]:
        return list(
            dict.fromkeys(all_keys(self.counts) + [k for p in self.pairs for k in (p.a, p.b)])
        )


@dataclass
class LfwResult:
    summary: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    verification: protocols.Verification | None = None
    open_set: protocols.OpenSetResult | None = None


def evaluate(
    source: LfwVectors,
    data: LfwData,
    label: str,
    metric: Metric = "cosine",
    progress: ProgressFactory | None = None,
    *,
    search_threshold: Callable[[int], float] | None = None,
) -> LfwResult:
    """Embed every image ``data`` needs, then run the three protocols; with
    ``search_threshold`` (gallery size -> the threshold the product's search uses), also
    the product's own 1:N answers at it (:func:`protocols.search_decisions`)."""
    keys = data.keys()
    advance = progress(f"{label}: embedding LFW", len(keys)) if progress else None
    vectors, fallbacks = source.run(keys, advance)
    ver = protocols.verification(vectors, data.pairs, metric)
    ident = protocols.identification(vectors, data.counts, metric)
    ope = protocols.open_set(vectors, data.counts, metric)
    summary: dict[str, Any] = {
        "lfw_acc": ver.accuracy,
        "lfw_acc_std": ver.accuracy_std,
        "auc": ver.auc,
        **{f"tar_at_far_{_e(f)}": ver.tar_at_far[f] for f in FARS},
        "rank1": ident.rank1,
        "rank5": ident.rank5,
        **{f"fnir_at_fpir_{f:g}": ope.fnir_at_fpir[f] for f in FPIRS},
        "det_failures": len(fallbacks),
    }
    pair_keys = {k for p in data.pairs for k in (p.a, p.b)}
    details = {
        "images": len(keys),
        "pairs": len(data.pairs),
        "mated_pairs": len(ver.mated),
        "non_mated_pairs": len(ver.non_mated),
        "det_failures_in_pairs": sum(1 for k in fallbacks if k in pair_keys),
        "det_failure_handling": "centred crop (box and template landmarks in the image centre)",
        "identification": {"gallery": ident.gallery, "probes": ident.probes},
        "open_set": {
            "enrolled": ope.enrolled,
            "mated_searches": ope.mated_searches,
            "non_mated_searches": ope.non_mated_searches,
            "threshold_at_fpir": {f"{f:g}": t for f, t in ope.threshold_at_fpir.items()},
        },
        "metric": metric,
    }
    if search_threshold is not None:
        threshold = search_threshold(ident.gallery)
        found = protocols.search_decisions(vectors, data.counts, threshold, metric)
        summary["search_correct"] = found.correct
        summary["search_wrong"] = found.wrong
        summary["search_fpir"] = found.strangers_named
        details["search"] = {"threshold": round(threshold, 4), "gallery": found.gallery,
                             "probes": found.probes}  # fmt: skip
    return LfwResult(summary, details, ver, ope)


def _e(value: float) -> str:
    """1e-3 -> '1e-3' (the key spelling the JSON promises)."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def summary_row(result: Mapping[str, Any]) -> dict[str, Any]:
    """The fixed keys, in order, with None for any not measured."""
    return {key: result.get(key) for key in RESULT_KEYS}
