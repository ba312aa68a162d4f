"""Calibrate an embedder's thresholds on LFW View 1 (pairsDevTrain.txt).

Mated scores: the file's same-person pairs. Non-mated scores: every pair of images of two
different people among the images the file names (millions of pairs, so FMR 1e-4 is
estimated from thousands of impostor scores above the threshold, not from a handful).

    python -m faceledger.bench.calibrate --profile fast --data ../shared/datasets/lfw
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rich.progress import Progress

from faceledger.bench.lfw import embed_images, read_pairs
from faceledger.config import load_config
from faceledger.engine import Engine

FMRS = (1e-2, 1e-3, 1e-4)


def threshold_at_fmr(non_mated: np.ndarray, fmr: float) -> float:
    """Smallest threshold t with fraction(non_mated >= t) <= fmr."""
    ordered = np.sort(non_mated)[::-1]
    allowed = int(np.floor(fmr * len(ordered)))
    if allowed >= len(ordered):
        return float(ordered[-1])
    return float(np.nextafter(ordered[allowed], np.inf)) if allowed >= 0 else float("inf")


def non_mated_scores(vectors: np.ndarray, people: np.ndarray) -> np.ndarray:
    """Scores of all pairs (i < j) whose people differ."""
    sims = vectors @ vectors.T
    upper = np.triu(np.ones(sims.shape, dtype=bool), k=1)
    return sims[upper & (people[:, None] != people[None, :])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="embedded")
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/lfw"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench"))
    args = parser.parse_args(argv)
    engine = Engine(load_config(profile=args.profile))
    pairs = read_pairs(args.data / "pairsDevTrain.txt")
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    cache = args.cache / f"lfw-{engine.detector_card.name}-{engine.embedder_card.name}.npz"
    with Progress(transient=True) as bar:
        task = bar.add_task(f"embedding {len(keys)} View 1 images", total=len(keys))
        emb, fallbacks = embed_images(
            engine, args.data, keys, cache, lambda n: bar.advance(task, n)
        )
    mated = np.array([emb[p.a] @ emb[p.b] for p in pairs if p.same])
    vectors = np.stack([emb[k] for k in keys])
    impostors = non_mated_scores(vectors, np.array([k[0] for k in keys]))
    result = {
        "profile": args.profile,
        "embedder": engine.embedder_card.name,
        "detector": engine.detector_card.name,
        "protocol": "LFW View 1 pairsDevTrain",
        "images": len(keys),
        "centred_fallbacks": fallbacks,
        "mated_pairs": len(mated),
        "non_mated_pairs": len(impostors),
        "thresholds": {},
    }
    for fmr in FMRS:
        t = threshold_at_fmr(impostors, fmr)
        result["thresholds"][f"{fmr:g}"] = {
            "threshold": round(t, 4),
            "tar": round(float((mated >= t).mean()), 4),
        }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
