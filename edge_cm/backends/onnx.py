"""onnxruntime backend (CPU execution provider)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import ModelFile
from ..errors import BackendError, DependencyError
from .base import Backend, check_tensor

_ORT_TYPES = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, model: ModelFile, path: Path, threads: int = 1):
        super().__init__(model, path, threads)
        try:
            import onnxruntime as ort
        except ImportError:
            raise DependencyError("onnxruntime is not installed", hint="pip install onnxruntime") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"onnxruntime cannot load the model ({exc})", path=path,
                               hint="the file is corrupt or needs a newer onnxruntime") from None
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        check_tensor(model.input, inp.shape, _ORT_TYPES.get(inp.type, inp.type), "input", path)
        check_tensor(model.output, out.shape, _ORT_TYPES.get(out.type, out.type), "output", path)
        self._in, self._out = inp.name, out.name

    def run(self, features: np.ndarray) -> np.ndarray:
        x = self.prepare_input(features)
        (y,) = self.session.run([self._out], {self._in: x})
        return self.finish_output(y)
