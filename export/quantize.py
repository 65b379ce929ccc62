"""ONNX int8: static post-training quantisation (QDQ format) with onnxruntime."""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from edge_cm.errors import DependencyError, ExportError


class _WindowReader:
    """CalibrationDataReader over model inputs (features of real 4-s windows)."""

    def __init__(self, input_name: str, inputs: Iterable[np.ndarray], shape: list[int]):
        self._name = input_name
        self._shape = shape
        self._it: Iterator[np.ndarray] = iter(inputs)
        self.count = 0

    def get_next(self):
        x = next(self._it, None)
        if x is None:
            return None
        self.count += 1
        return {self._name: np.asarray(x, dtype=np.float32).reshape(self._shape)}

    def rewind(self):  # onnxruntime calls this on some calibrators; one pass is enough here
        pass


def float_nodes(model_path: str | Path, keep_float: Sequence[str]) -> list[str]:
    """ONNX node names of the torch modules ``keep_float`` (matched by their ``<module>.weight`` input).

    Raises :class:`ExportError` for a module that no node uses, so a typo never quietly
    quantises the layer it meant to keep.
    """
    import onnx

    graph = onnx.load(str(model_path)).graph
    names: list[str] = []
    for module in keep_float:
        hits = [n.name for n in graph.node if f"{module}.weight" in n.input]
        if not hits:
            raise ExportError(f"no ONNX node uses the weights of module {module!r}", path=model_path,
                              hint="name a conv/linear module of the model, e.g. features.0")
        names += hits
    return names


def quantize_onnx_int8(float_model: str | Path, out_path: str | Path, calibration: Iterable[np.ndarray], *,
                       per_channel: bool = True, keep_float: Sequence[str] = ()) -> Path:
    """Write an int8 QDQ copy of ``float_model`` (int8 weights and activations, float32 input/output).

    Activation ranges come from min/max over the ``calibration`` inputs. ``keep_float``:
    torch module names (``features.0``) whose layers stay float32, with their input.
    """
    try:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise DependencyError("onnxruntime.quantization is not available",
                              hint="pip install onnxruntime onnx") from None
    import onnx

    from .onnx_export import onnx_session

    float_model, out_path = Path(float_model), Path(out_path)
    sess = onnx_session(float_model)
    inp = sess.get_inputs()[0]
    reader = _WindowReader(inp.name, calibration, [int(d) for d in inp.shape])
    CalibrationDataReader.register(_WindowReader)
    pre = out_path.with_suffix(".pre.onnx")
    root = logging.getLogger()
    root_level = root.level
    try:
        # onnxruntime.quantization logs per-tensor notes at INFO/WARNING through the root logger
        root.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                # Shape inference + graph cleanup before quantisation, as onnxruntime recommends.
                quant_pre_process(str(float_model), str(pre), skip_symbolic_shape=True)
                source = pre
            except Exception:
                source = float_model
            excluded = float_nodes(source, keep_float) if keep_float else []
            quantize_static(str(source), str(out_path), reader, quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            per_channel=per_channel, calibrate_method=CalibrationMethod.MinMax,
                            nodes_to_exclude=excluded,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"ONNX int8 quantisation failed ({type(exc).__name__}: {str(exc)[:300]})",
                          path=float_model) from None
    finally:
        root.setLevel(root_level)
        pre.unlink(missing_ok=True)
    if reader.count == 0:
        out_path.unlink(missing_ok=True)
        raise ExportError("no calibration windows", hint="pass --calibration with real audio")
    onnx.checker.check_model(onnx.load(str(out_path)))
    return out_path
