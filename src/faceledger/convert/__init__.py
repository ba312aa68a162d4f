"""Converting published weights into the ONNX files faceledger runs.

Some models are published only as PyTorch state dicts (EdgeFace). Their cards declare the
source file, which ``ModelStore`` resolves and verifies like any other, and name the ONNX
file the runtime loads (``ModelCard.converted``); this package makes that file, checks it,
and records its sha256 beside it.

The default converter needs no PyTorch: :mod:`faceledger.convert.checkpoint` reads the
checkpoint archive with a restricted unpickler (no code from the file runs), and
:mod:`faceledger.convert.edgeface_onnx` dequantizes the weights in numpy and writes the
ONNX graph with the ``onnx`` package, in about a second. The runtime does this by itself
the first time a profile needs the model (``ensure_converted``).

The reference converter, :mod:`faceledger.convert.edgeface`, builds the network in
PyTorch, measures it against the published int8 model and exports it with torch
(``faceledger models convert NAME --converter torch``; PyTorch is an optional extra, from a
checkout: ``pip install -e '.[convert]'``). Nothing imports torch unless it is asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from faceledger.errors import ConfigError, ModelError
from faceledger.models.catalog import ModelCard
from faceledger.models.store import ModelStore

__all__ = [
    "CONVERTERS",
    "ConversionReport",
    "convert",
    "convertible",
    "ensure_converted",
    "require_torch",
]

INSTALL_HINT = (
    "pip install -e '.[convert]' from a checkout; a CPU-only PyTorch is enough, e.g. "
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
)

_CONVERTERS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "edgeface_xs": {
            "numpy": "faceledger.convert.edgeface_onnx",
            "torch": "faceledger.convert.edgeface",
        },
        "edgeface_xxs": {
            "numpy": "faceledger.convert.edgeface_onnx",
            "torch": "faceledger.convert.edgeface",
        },
    }
)
"""Card name -> converter -> module whose ``convert(card, store, faces, say)`` makes its
file."""
CONVERTERS = ("numpy", "torch")
"""``numpy``: no PyTorch needed (the default); ``torch``: the PyTorch reference."""

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
    """What the checks were run on, e.g. "6 aligned faces"."""
    opset: int
    seconds: float
    converter: str = "numpy"
    """``numpy`` (the state dict read and the graph written without PyTorch) or ``torch``
    (the network built in PyTorch and exported by it)."""
    quantized_cosine: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """torch only: quantized-kernel engine -> (min, mean) cosine between the published int8
    model run on that engine and the float network that is exported."""
    onnx_max_abs_diff: float | None = None
    """torch only: largest difference of any embedding value, onnxruntime vs torch."""
    onnx_cosine_min: float | None = None
    torch_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def convertible() -> list[str]:
    """Names of the catalog models that ``convert`` can make."""
    return sorted(_CONVERTERS)


def require_torch() -> None:
    """Raise a ``ModelError`` saying what to install when torch or onnx is missing (for
    the torch converter only)."""
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
    converter: str = "numpy",
) -> ConversionReport:
    """Make ``card``'s converted file in the store's cache and record its sha256.

    ``faces`` are (n, 112, 112, 3) uint8 RGB aligned crops to check the result on; without
    them a fixed set of synthetic images is used (and the report says so). The source file
    comes from ``store.resolve`` (explicit folder, cache, mirror or download).
    ``converter`` is ``numpy`` (no PyTorch) or ``torch`` (the PyTorch reference).
    """
    module = _converter_module(card, converter)
    with conversion_lock(store.conversion_target(card)):
        return _run(module, card, store, faces, say or _quiet)


def ensure_converted(card: ModelCard, store: ModelStore, say: Say | None = None) -> Path:
    """``card``'s verified converted file, made now (numpy converter) if it is missing.

    Two processes that get here at once take turns: the second finds the first one's file.
    """
    found = store.find_converted(card)
    if found is not None:
        return found
    module = _converter_module(card, "numpy")
    with conversion_lock(store.conversion_target(card)):
        found = store.find_converted(card)
        if found is not None:
            return found
        return _run(module, card, store, None, say or _quiet).path


def _converter_module(card: ModelCard, converter: str) -> str:
    if card.name not in _CONVERTERS:
        raise ConfigError(
            f"model {card.name} is used as published and needs no conversion; "
            f"models that do: {', '.join(convertible())}"
        )
    if converter not in CONVERTERS:
        raise ConfigError(
            f"unknown converter {converter!r}; choose one of: {', '.join(CONVERTERS)}"
        )
    if converter == "torch":
        require_torch()
    return _CONVERTERS[card.name][converter]


def _run(
    module: str, card: ModelCard, store: ModelStore, faces: np.ndarray | None, say: Say
) -> ConversionReport:
    report: ConversionReport = importlib.import_module(module).convert(card, store, faces, say)
    return report


@contextmanager
def conversion_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``target`` (POSIX ``flock``), so that processes
    converting the same model at once take turns. The file itself is always written to a
    temporary name and renamed into place, so a reader never sees half of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone keeps the file whole
        yield
        return
    lock = target.with_name(f".{target.name}.lock")
    with lock.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _quiet(_line: str) -> None:
    return None
