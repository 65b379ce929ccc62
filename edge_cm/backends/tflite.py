"""TFLite backend: ``ai_edge_litert`` (LiteRT), falling back to ``tflite_runtime``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import ModelFile
from ..errors import BackendError, DependencyError
from .base import Backend, check_tensor


def interpreter_class():
    """The TFLite Interpreter class of whichever package is installed (LiteRT first)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter
    except ImportError:
        raise DependencyError("no TFLite interpreter installed",
                              hint="pip install 'edge-cm[tflite]' (ai-edge-litert) or tflite-runtime") from None


class TFLiteBackend(Backend):
    name = "tflite"

    def __init__(self, model: ModelFile, path: Path, threads: int = 1):
        super().__init__(model, path, threads)
        cls = interpreter_class()
        try:
            self.interpreter = cls(model_path=str(path), num_threads=int(threads))
            self.interpreter.allocate_tensors()
        except Exception as exc:  # the interpreters raise ValueError/RuntimeError
            raise BackendError(f"TFLite interpreter cannot load the model ({exc})", path=path,
                               hint="the file is corrupt or uses ops this interpreter lacks") from None
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        check_tensor(model.input, list(inp["shape"]), np.dtype(inp["dtype"]).name, "input", path,
                     quant=inp.get("quantization"))
        check_tensor(model.output, list(out["shape"]), np.dtype(out["dtype"]).name, "output", path,
                     quant=out.get("quantization"))
        self._in, self._out = inp["index"], out["index"]

    def run(self, features: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in, self.prepare_input(features))
        self.interpreter.invoke()
        return self.finish_output(self.interpreter.get_tensor(self._out))
