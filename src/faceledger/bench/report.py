"""Benchmark reports: a Markdown table (ours beside the peer) and ROC / DET plots."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.bench import metrics
from faceledger.bench.run import LfwResult
from faceledger.errors import ConfigError

ROWS: tuple[tuple[str, str, str], ...] = (
    ("lfw_acc", "LFW 10-fold accuracy", "pct"),
    ("lfw_acc_std", "  std over folds", "pct"),
    ("auc", "ROC AUC", "float4"),
    ("tar_at_far_1e-2", "TAR @ FAR 1e-2", "pct"),
    ("tar_at_far_1e-3", "TAR @ FAR 1e-3", "pct"),
    ("tar_at_far_1e-4", "TAR @ FAR 1e-4", "pct"),
    ("rank1", "rank-1 (1:N, closed set)", "pct"),
    ("rank5", "rank-5 (1:N, closed set)", "pct"),
    ("fnir_at_fpir_0.01", "FNIR @ FPIR 0.01 (open set)", "pct"),
    ("fnir_at_fpir_0.003", "FNIR @ FPIR 0.003 (open set)", "pct"),
    ("search_correct", "identify: enrolled named rightly (5,749 templates)", "pct"),
    ("search_wrong", "identify: enrolled named wrongly", "pct"),
    ("search_fpir", "identify: strangers named (measured FPIR, stated 0.1%)", "pct"),
    ("det_failures", "detection failures (centred crop)", "int"),
    ("ms_detect", "detect, ms per image", "float1"),
    ("ms_embed_per_face", "align + embed, ms per face (batch 1)", "float1"),
    ("images_per_s", "end to end, images per second", "float2"),
)


def fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "int":
        return str(int(value))
    return f"{value:.{kind[-1]}f}"


def markdown(columns: Sequence[Mapping[str, Any]], ratio: bool = True) -> str:
    """One column per result (ours first, then the peer); with ``ratio`` (only for columns
    timed in one run) the images/s of each column over the last one's."""
    heads = [f"{c['profile']} ({' + '.join(c.get('models', []))})" for c in columns]
    lines = ["| measure | " + " | ".join(heads) + " |", "|---" * (len(columns) + 1) + "|"]
    for key, label, kind in ROWS:
        if all(c.get(key) is None for c in columns):
            continue
        lines.append(f"| {label} | " + " | ".join(fmt(c.get(key), kind) for c in columns) + " |")
    rates = [float(c.get("images_per_s") or 0.0) for c in columns]
    if ratio and len(columns) >= 2 and all(rates):
        cells = " | ".join(f"{r / rates[-1]:.1f}x" for r in rates)
        lines.append(f"| speed vs {columns[-1]['profile']} (images/s ratio) | {cells} |")
    return "\n".join(lines) + "\n"


def plots(results: Mapping[str, LfwResult], folder: Path) -> list[Path]:
    """roc.png (TAR vs FAR, log FAR) and det.png (FNMR vs FMR, log-log) for View 2 pairs."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'faceledger[bench]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, ylabel in (("roc", "TAR (1 - FNMR)"), ("det", "FNMR")):
        fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
        for label, result in results.items():
            ver = result.verification
            if ver is None:
                continue
            curve = metrics.roc(ver.mated, ver.non_mated)
            keep = curve.far > 0
            y = curve.tar[keep] if name == "roc" else np.maximum(1 - curve.tar[keep], 1e-4)
            ax.plot(curve.far[keep], y, label=label)
        ax.set_xscale("log")
        if name == "det":
            ax.set_yscale("log")
        ax.set_xlabel("FAR (FMR), LFW View 2 non-mated pairs")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        path = folder / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
