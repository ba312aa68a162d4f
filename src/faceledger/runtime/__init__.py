"""How tensors run: sessions, providers, threads. Models only do numpy pre/post-processing."""

from faceledger.runtime.onnx import OnnxSession, RuntimeOptions, choose_providers

__all__ = ["OnnxSession", "RuntimeOptions", "choose_providers"]
