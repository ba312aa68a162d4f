"""Converting published weights into the ONNX files faceledger runs.

Some models are published only as PyTorch state dicts (EdgeFace). Their cards declare the
source file, which ``ModelStore`` resolves and verifies like any other, and name the ONNX
file the runtime loads (``ModelCard.converted``); this package makes that file, checks it
against the source model, and records its sha256 beside it.

This is the only part of faceledger that uses PyTorch, an optional extra
(from a checkout: ``pip install -e '.[convert]'``). Nothing imports torch until a conversion runs.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from faceledger.errors import ConfigError, ModelError
from faceledger.models.catalog import ModelCard
from faceledger.models.store import ModelStore

__all__ = ["ConversionReport", "convert", "convertible", "require_torch"]

INSTALL_HINT = (
    "pip install -e '.[convert]' from a checkout; a CPU-only PyTorch is enough, e.g. "
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
)

_CONVERTERS: Mapping[str, str] = MappingProxyType(
    {
        "edgeface_xs": "faceledger.convert.edgeface",
        "edgeface_xxs": "faceledger.convert.edgeface",
    }
)
"""Card name -> module whose ``convert(card, store, faces, say)`` makes its file."""

Say = Callable[[str], None]
"""Receives one line of progress ("loading ...", "exporting ...")."""


@dataclass(frozen=True)
class ConversionReport:
    """What one conversion produced and how closely it matches the source model."""

    model: str
    path: Path
    sha256: str
    source: str
    source_sha256: str
    source_origin: str
    checked_on: str
    """What the parity figures were measured on, e.g. "6 aligned faces"."""
    quantized_cosine: Mapping[str, tuple[float, float]]
    """Quantized-kernel engine -> (min, mean) cosine between the published int8 model run
    on that engine and the float network that is exported."""
    onnx_max_abs_diff: float
    """Largest difference of any embedding value between onnxruntime and torch (float)."""
    onnx_cosine_min: float
    torch_version: str
    opset: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def convertible() -> list[str]:
    """Names of the catalog models that ``convert`` can make."""
    return sorted(_CONVERTERS)


def require_torch() -> None:
    """Raise a ``ModelError`` saying what to install when torch or onnx is missing."""
    missing = [m for m in ("torch", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelError(
            f"converting a model needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {INSTALL_HINT}"
        )


def convert(
    card: ModelCard,
    store: ModelStore,
    faces: np.ndarray | None = None,
    say: Say | None = None,
) -> ConversionReport:
    """Make ``card``'s converted file in the store's cache and record its sha256.

    ``faces`` are (n, 112, 112, 3) uint8 RGB aligned crops to measure parity on; without
    them a fixed set of synthetic images is used (and the report says so). The source file
    comes from ``store.resolve`` (explicit folder, cache, mirror or download).
    """
    if card.name not in _CONVERTERS:
        raise ConfigError(
            f"model {card.name} is used as published and needs no conversion; "
            f"models that do: {', '.join(convertible())}"
        )
    require_torch()
    module = importlib.import_module(_CONVERTERS[card.name])
    report: ConversionReport = module.convert(card, store, faces, say or _quiet)
    return report


def _quiet(_line: str) -> None:
    return None
