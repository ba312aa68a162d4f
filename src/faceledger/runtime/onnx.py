"""An onnxruntime session with explicit providers and thread count."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceledger.errors import ModelError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
_WARNED: set[str] = set()
"""Providers already warned about in this process (each is warned about once)."""


@dataclass(frozen=True)
class RuntimeOptions:
    """How a model's tensors run: what the engine hands every model it creates."""

    threads: int = 0
    """Intra-op threads per call (0: onnxruntime's default, every core)."""
    providers: tuple[str, ...] = (CPU,)
    """onnxruntime execution providers, most preferred first."""


def choose_providers(requested: Sequence[str]) -> list[str]:
    """The requested providers this onnxruntime has, in order; CPU when none is left.

    Each provider that is not available is skipped with a warning, once per process.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = [p for p in requested if p in available] or [CPU]
    for name in requested:
        if name not in available and name not in _WARNED:
            _WARNED.add(name)
            log.warning(
                "onnxruntime execution provider %s is not available here (available: %s); using %s",
                name,
                ", ".join(available),
                ", ".join(chosen),
            )
    return chosen


class OnnxSession:
    """Runs one ONNX graph; created by a model's ``load()``, never at import time."""

    def __init__(
        self,
        path: Path,
        threads: int = 0,
        providers: Sequence[str] = (),
        dynamic_batch: bool = False,
    ) -> None:
        """``dynamic_batch``: if the graph fixes batch 1, rewrite it to take any batch."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        chosen = choose_providers(providers)
        source: str | bytes = str(path)
        if dynamic_batch:
            source = with_dynamic_batch(path) or source
        try:
            self._session = ort.InferenceSession(source, options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: onnxruntime cannot load this model ({exc})") from exc
        inputs = self._session.get_inputs()
        self.input_name: str = inputs[0].name
        self.input_shape: list[int | str | None] = list(inputs[0].shape)
        self.output_names: list[str] = [o.name for o in self._session.get_outputs()]
        self.providers: list[str] = list(self._session.get_providers())
        """The providers the session runs on (onnxruntime may add CPU as a fallback)."""

    def fixed_hw(self) -> tuple[int, int] | None:
        """(height, width) when the graph fixes them, else ``None``."""
        h, w = self.input_shape[2], self.input_shape[3]
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            return h, w
        return None

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        outputs = self._session.run(self.output_names, {self.input_name: tensor})
        return [np.asarray(o) for o in outputs]


def with_dynamic_batch(path: Path) -> bytes | None:
    """The graph at ``path`` with its fixed batch of 1 made symbolic, or None if not needed.

    Exported graphs often pin batch 1 on their input, outputs and the shape of a final
    ``Reshape`` ([1, -1]). Those are rewritten (the reshape to [0, -1], which copies the
    batch); anything else that depends on the batch makes this return None (batch 1 stays).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    dims = [graph.input[0].type.tensor_type.shape.dim[0]] + [
        o.type.tensor_type.shape.dim[0] for o in graph.output
    ]
    if dims[0].dim_value != 1:
        return None
    constants = {n.output[0]: n.attribute[0].t for n in graph.node if n.op_type == "Constant"}
    constants |= {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type in ("Shape", "Expand", "Tile", "ConstantOfShape"):
            return None
        if node.op_type == "Reshape":
            tensor = constants.get(node.input[1])
            if tensor is None:
                return None
            shape = numpy_helper.to_array(tensor)
            if shape[0] == 1:
                tensor.CopyFrom(
                    numpy_helper.from_array(np.r_[0, shape[1:]].astype(shape.dtype), tensor.name)
                )
    for dim in dims:
        dim.dim_param = "batch"
    del graph.value_info[:]
    return bytes(model.SerializeToString())
