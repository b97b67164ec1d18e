"""Inference backends: torch (CPU/CUDA), ONNX Runtime, TensorRT. One interface, picked at run time."""

from catalogue_tagger.inference.base import Backend, open_backend, resolve_backend

__all__ = ["Backend", "open_backend", "resolve_backend"]
