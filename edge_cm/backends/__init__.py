"""Inference backends and the rule that picks one.

``auto`` takes, among the bundle's model files whose runtime is installed, float32
before int8 and onnxruntime before TFLite (float32 is the reference the int8
models were gated against; pass ``precision="int8"`` to run the quantised model).
"""
from __future__ import annotations

import importlib.util

from ..bundle import Bundle
from ..errors import BackendError, DependencyError
from .base import Backend

BACKENDS = ("onnx", "tflite")


def installed_backends() -> list[str]:
    """Backends whose runtime package can be imported here."""
    found = []
    if importlib.util.find_spec("onnxruntime") is not None:
        found.append("onnx")
    if importlib.util.find_spec("ai_edge_litert") is not None or importlib.util.find_spec("tflite_runtime") is not None:
        found.append("tflite")
    return found


def open_backend(bundle: Bundle, backend: str = "auto", threads: int = 1, precision: str | None = None) -> Backend:
    """Open the bundle's model file for ``backend`` (``auto``, ``onnx`` or ``tflite``)."""
    if backend not in ("auto",) + BACKENDS:
        raise BackendError(f"unknown backend {backend!r}", hint="use auto, onnx or tflite")
    if precision not in (None, "float32", "int8"):
        raise BackendError(f"unknown precision {precision!r}", hint="use float32 or int8")
    wanted = BACKENDS if backend == "auto" else (backend,)
    available = installed_backends()
    candidates = [m for m in bundle.select(precision=precision) if m.format in wanted]
    if not candidates:
        have = ", ".join(f"{m.format}/{m.precision}" for m in bundle.meta.models)
        raise BackendError(f"bundle has no {'/'.join(wanted)} model{' of precision ' + precision if precision else ''}"
                           f" (it has: {have})", path=bundle.path, hint="choose another --backend or re-export")
    # float32 before int8, then onnx before tflite
    candidates.sort(key=lambda m: (m.precision != "float32", BACKENDS.index(m.format)))
    usable = [m for m in candidates if m.format in available]
    if not usable:
        missing = sorted({m.format for m in candidates})
        hint = "pip install onnxruntime" if "onnx" in missing else "pip install 'edge-cm[tflite]'"
        raise DependencyError(f"the runtime for {', '.join(missing)} is not installed", path=bundle.path, hint=hint)
    model = usable[0]
    path = bundle.model_path(model)
    if model.format == "onnx":
        from .onnx import OnnxBackend
        return OnnxBackend(model, path, threads)
    from .tflite import TFLiteBackend
    return TFLiteBackend(model, path, threads)
