"""An onnxruntime session with explicit providers and thread count."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceledger.errors import ModelError


class OnnxSession:
    """Runs one ONNX graph; created by a model's ``load()``, never at import time."""

    def __init__(self, path: Path, threads: int = 0, providers: tuple[str, ...] = ()) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        available = ort.get_available_providers()
        chosen = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: onnxruntime cannot load this model ({exc})") from exc
        inputs = self._session.get_inputs()
        self.input_name: str = inputs[0].name
        self.input_shape: list[int | str | None] = list(inputs[0].shape)
        self.output_names: list[str] = [o.name for o in self._session.get_outputs()]
        self.providers = chosen

    def fixed_hw(self) -> tuple[int, int] | None:
        """(height, width) when the graph fixes them, else ``None``."""
        h, w = self.input_shape[2], self.input_shape[3]
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            return h, w
        return None

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        outputs = self._session.run(self.output_names, {self.input_name: tensor})
        return [np.asarray(o) for o in outputs]
