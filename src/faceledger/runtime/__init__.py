"""How tensors run: sessions, providers, threads. Models only do numpy pre/post-processing."""

from faceledger.runtime.onnx import OnnxSession

__all__ = ["OnnxSession"]
