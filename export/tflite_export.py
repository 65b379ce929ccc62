"""torch -> TFLite (LiteRT) via litert-torch: float32, and full-integer int8 via PT2E.

The int8 model has int8 input and output tensors; their scale and zero point
(real = scale * (q - zero_point)) are read back from the file into the bundle.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from edge_cm.bundle import TensorInfo
from .evalmode import eval_mode
from edge_cm.errors import DependencyError, ExportError

# TfLiteType enum values (tensorflow/lite/schema), as the model-interface rewriter expects them.
_TFL_INT8 = 9


@contextlib.contextmanager
def _quiet():
    """litert-torch prints a progress tree; keep CLI and test output readable unless asked for."""
    old = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = old if old is not None else "n"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        if old is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)


def _litert_torch():
    try:
        import litert_torch
    except ImportError:
        raise DependencyError("litert-torch is not installed", hint="pip install 'edge-cm[export]'") from None
    return litert_torch


def export_tflite(model, example, path: str | Path) -> Path:
    """Write ``model`` (fixed input shape of ``example``) as a float32 .tflite file."""
    litert_torch = _litert_torch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet():
            edge = litert_torch.convert(eval_mode(model), (example,))
            edge.export(str(path))
    except Exception as exc:
        raise ExportError(f"litert-torch conversion failed ({type(exc).__name__}: {str(exc)[:300]})", path=path,
                          hint="the model uses an op litert-torch cannot lower; simplify its forward") from None
    return path


def _in_modules(node, modules: Sequence[str]) -> bool:
    """True when ``node`` was traced inside one of the torch ``modules`` (``features.0``)."""
    paths = [path for path, _ in (node.meta.get("nn_module_stack") or {}).values()]
    return any(p == m or p.startswith(m + ".") for p in paths for m in modules)


def _quantizer_class(keep_float: Sequence[str] = ()):
    """litert-torch's PT2E quantizer, plus the int8 SOFTMAX output TFLite requires, additions and means.

    litert-torch gives SOFTMAX its fixed output quantisation (scale 1/256, zero point -128)
    only for ``aten._softmax``; ``torch.export`` of a model that calls ``torch.softmax``
    leaves ``aten.softmax.int``, whose output then gets an observed scale that the TFLite
    int8 kernel refuses at load time (ResNetSE's attentive pooling hit this).

    It also quantises tensor additions (residual connections, fused with a following
    ReLU) and means over axes that feed quantised ops (squeeze-excitation, pooling):
    litert-torch finds additions by their source function, which ``torch.export`` no longer
    records, and has no annotator for means, so both stayed float between
    DEQUANTIZE/QUANTIZE pairs.

    ``keep_float``: module names whose ops lose their annotation, so they stay float32
    (litert-torch's ``set_module_name`` does not accept "no quantisation").
    """
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.pt2e_quantizer_utils import (get_fixed_qparams_qspec, get_input_act_qspec,
                                                            get_output_act_qspec)
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    aten = torch.ops.aten
    relus = (aten.relu.default, aten.relu_.default)

    def quantised(arg) -> bool:
        """Whether ``arg`` is a node with a quantised output (graph order: producers come first)."""
        ann = arg.meta.get("quantization_annotation") if isinstance(arg, torch.fx.Node) else None
        return ann is not None and ann.output_qspec is not None

    def constant(arg) -> bool:
        """Whether ``arg`` is computed from weights and buffers only (no model input)."""
        if not isinstance(arg, torch.fx.Node):
            return True
        if arg.op == "get_attr":
            return True
        return arg.op == "call_function" and all(constant(a) for a in arg.all_input_nodes)

    def annotate_add_and_mean(node, config) -> None:
        if node.op != "call_function" or "quantization_annotation" in node.meta:
            return
        act_in, act_out = get_input_act_qspec(config), get_output_act_qspec(config)
        # Only additions of quantised tensors (or of a quantised tensor and a constant, such as a
        # BatchNorm shift) and means that feed quantised ops: in float arithmetic (a per-window
        # normalisation, var + eps) they would only add a rounding step.
        if (node.target == aten.add.Tensor and quantised(node.args[0]) and isinstance(node.args[1], torch.fx.Node)
                and constant(node.args[1])):
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={node.args[0]: act_in, node.args[1]: act_in}, output_qspec=act_out, _annotated=True)
        elif node.target == aten.add.Tensor and all(quantised(a) for a in node.args[:2]):
            users = list(node.users)
            relu = users[0] if len(users) == 1 and users[0].target in relus else None
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={a: act_in for a in node.args[:2]}, output_qspec=None if relu else act_out,
                _annotated=True)
            if relu is not None:  # ADD with a fused ReLU: one quantised output, after the ReLU
                relu.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=act_out, _annotated=True)
        elif (node.target == aten.mean.dim and isinstance(node.args[0], torch.fx.Node)
              and all("quantization_annotation" in u.meta for u in node.users)):
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={node.args[0]: act_in}, output_qspec=act_out, _annotated=True)

    def fuse_linear_relu(node, config) -> None:
        """Quantise ``linear -> ReLU`` after the ReLU, as litert-torch does for convolutions: the
        pre-ReLU range can be far wider than what passes (a mostly negative channel), and one
        per-tensor scale over it rounds the other channels to zero."""
        ann = node.meta.get("quantization_annotation")
        users = list(node.users)
        if (node.target != aten.linear.default or ann is None or ann.output_qspec is None or len(users) != 1
                or users[0].target not in relus or "quantization_annotation" in users[0].meta):
            return
        ann.output_qspec = None
        users[0].meta["quantization_annotation"] = QuantizationAnnotation(
            output_qspec=get_output_act_qspec(config), _annotated=True)

    class SoftmaxAwareQuantizer(pt2e_quantizer.PT2EQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            for node in model.graph.nodes:
                if node.op == "call_function":
                    fuse_linear_relu(node, self.global_config)
                if node.op == "call_function" and node.target == torch.ops.aten.softmax.int:
                    node.meta["quantization_annotation"] = QuantizationAnnotation(
                        output_qspec=get_fixed_qparams_qspec(self.global_config), _annotated=True)
                annotate_add_and_mean(node, self.global_config)
                if keep_float and _in_modules(node, keep_float):
                    node.meta.pop("quantization_annotation", None)
            return model

    return SoftmaxAwareQuantizer


def export_tflite_int8(model, example, calibration: Iterable[np.ndarray], path: str | Path, *,
                       per_channel: bool = True, keep_float: Sequence[str] = ()) -> Path:
    """Int8 .tflite via PT2E post-training quantisation; full-integer unless ``keep_float``.

    ``calibration`` yields model inputs (each of the shape of ``example``): the
    representative dataset whose activation ranges set the int8 scales. ``keep_float``:
    torch module names kept float32; a model whose first (last) layer is kept float keeps a
    float input (output), which the bundle records and the runtime follows.
    """
    import torch

    litert_torch = _litert_torch()
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet():
            graph = torch.export.export(eval_mode(model), (example,)).module()
            if keep_float:
                names = {name for name, _ in model.named_modules()}
                missing = [m for m in keep_float if m not in names]
                if missing:
                    raise ExportError(f"keep-float module(s) {missing} are not in the model",
                                      hint="name modules as model.named_modules() does, e.g. features.0")
            quantizer = _quantizer_class(tuple(keep_float))().set_global(
                pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=per_channel))
            prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
            n = 0
            with torch.no_grad():
                for x in calibration:
                    prepared(torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(example.shape))
                    n += 1
            if n == 0:
                raise ExportError("no calibration windows", hint="pass --calibration with real audio")
            converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
            edge = litert_torch.convert(converted, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
            edge.export(str(path))
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"int8 TFLite conversion failed ({type(exc).__name__}: {str(exc)[:300]})", path=path,
                          hint="check the model and the calibration windows") from None
    if not keep_float:  # a float first or last layer keeps its float input or output
        _force_int8_io(path)
    return path


def _force_int8_io(path: Path) -> None:
    """Make the model's input and output int8 if the converter left a float interface."""
    inp, out = tflite_tensor_info(path)
    if inp.dtype == "int8" and out.dtype == "int8":
        return
    from ai_edge_litert import _pywrap_modify_model_interface as mmi

    tmp = path.with_suffix(".io.tflite")
    status = mmi.modify_model_interface(str(path), str(tmp), _TFL_INT8, _TFL_INT8)
    if status != 0:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot make the int8 model's interface int8 (status {status})", path=path)
    os.replace(tmp, path)


def tflite_interpreter(path: str | Path, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        # e.g. an int8 SOFTMAX whose output scale is not 1/256 (attention pooling after PT2E)
        raise ExportError(f"the TFLite interpreter rejects the converted model: {exc}", path=path,
                          hint="export this model as float TFLite and/or int8 ONNX") from exc
    return interp


def _info(detail: dict, layout: str) -> TensorInfo:
    dtype = np.dtype(detail["dtype"]).name
    scale, zp = detail["quantization"]
    quantised = dtype in ("int8", "uint8", "int16")
    return TensorInfo(name=str(detail["name"]), shape=[int(d) for d in detail["shape"]], dtype=dtype, layout=layout,
                      scale=float(scale) if quantised else None, zero_point=int(zp) if quantised else None)


def tflite_tensor_info(path: str | Path, layout: str = "") -> tuple[TensorInfo, TensorInfo]:
    """Input and output TensorInfo (with int8 scale / zero point) read from the .tflite file."""
    interp = tflite_interpreter(path)
    return _info(interp.get_input_details()[0], layout), _info(interp.get_output_details()[0], "NC")


def run_tflite(path_or_interp, inputs: np.ndarray) -> np.ndarray:
    """Float logits for a batch of single-window float inputs; int8 models are (de)quantised at the edges."""
    interp = tflite_interpreter(path_or_interp) if isinstance(path_or_interp, (str, Path)) else path_or_interp
    ind, outd = interp.get_input_details()[0], interp.get_output_details()[0]
    rows = []
    for x in inputs:
        x = np.asarray(x, dtype=np.float32).reshape(ind["shape"])
        if np.dtype(ind["dtype"]) == np.int8:
            scale, zp = ind["quantization"]
            x = np.clip(np.round(x / np.float32(scale)) + zp, -128, 127).astype(np.int8)
        interp.set_tensor(ind["index"], x)
        interp.invoke()
        y = interp.get_tensor(outd["index"])
        if np.dtype(outd["dtype"]) == np.int8:
            scale, zp = outd["quantization"]
            y = (y.astype(np.float32) - np.float32(zp)) * np.float32(scale)
        rows.append(np.asarray(y, dtype=np.float32).reshape(-1))
    return np.stack(rows)


def tflite_float_ops(path: str | Path) -> list[str]:
    """Ops of the model that compute in float32 (empty for a full-integer model).

    An op counts as float when one of its activation inputs or outputs is a float32 tensor
    (the int8 model's bias tensors are int32 and its weights int8, so they never count).
    """
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    found = []
    for op in interp._get_ops_details():  # the public API has no per-op listing
        tensors = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
        if any(dtypes.get(int(i)) == np.float32 for i in tensors):
            found.append(str(op["op_name"]))
    return found
