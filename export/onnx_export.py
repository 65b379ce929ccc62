"""torch -> ONNX (float32): one self-contained file, opset >= 17."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

from edge_cm.bundle import TensorInfo
from .evalmode import eval_mode
from edge_cm.errors import ExportError

DEFAULT_OPSET = 18
INPUT_NAME = "features"
OUTPUT_NAME = "logits"
EXPORTERS = ("auto", "dynamo", "torchscript")

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


def _strip_node_metadata(proto) -> bool:
    """Drop per-node metadata (the exporter's Python stack traces and fx names).

    They hold absolute source paths of the machine that exported, and make the same
    weights give different bytes after any edit of the model's source file.
    """
    nodes = [n for n in proto.graph.node] + [n for f in proto.functions for n in f.node]
    changed = any(len(n.metadata_props) for n in nodes)
    for n in nodes:
        del n.metadata_props[:]
    return changed


def export_onnx(model, example, path: str | Path, *, opset: int = DEFAULT_OPSET, exporter: str = "auto") -> Path:
    """Write ``model`` (eval mode, fixed input shape of ``example``) to ``path`` as one ONNX file.

    ``exporter``: ``dynamo`` (torch.export based, the torch 2.x default), ``torchscript``
    (the legacy tracer) or ``auto`` = dynamo, falling back to torchscript if dynamo fails
    or writes weights to an external-data file.
    """
    import onnx
    import torch

    if exporter not in EXPORTERS:
        raise ExportError(f"unknown ONNX exporter {exporter!r}", hint=f"use one of {EXPORTERS}")
    if opset < 17:
        raise ExportError(f"opset {opset} is too old", hint="use opset >= 17 (LayerNormalization, STFT)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = eval_mode(model)
    order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    errors: list[str] = []
    for name in order:
        for stale in (path, path.with_name(path.name + ".data")):
            stale.unlink(missing_ok=True)
        try:
            with torch.no_grad(), _quiet():
                if name == "dynamo":
                    torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME],
                                      output_names=[OUTPUT_NAME], opset_version=opset, dynamo=True,
                                      external_data=False, verbose=False)
                else:
                    torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME],
                                      output_names=[OUTPUT_NAME], opset_version=opset, dynamo=False,
                                      do_constant_folding=True)
            proto = onnx.load(str(path), load_external_data=False)
            if _uses_external_data(proto):
                raise ExportError("the exporter wrote weights to an external-data file")
            if _strip_node_metadata(proto):
                onnx.save(proto, str(path))
            onnx.checker.check_model(proto)
            return path
        except Exception as exc:  # any exporter failure: try the next exporter, report all at the end
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
    raise ExportError("ONNX export failed (" + "; ".join(errors) + ")", path=path,
                      hint="simplify the model's forward (no data-dependent control flow) or try --onnx-exporter")


def _uses_external_data(proto) -> bool:
    from onnx import TensorProto

    return any(t.data_location == TensorProto.EXTERNAL for t in proto.graph.initializer)


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and deprecation warnings; keep the CLI output readable."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def onnx_session(path: str | Path, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_tensor_info(path: str | Path, layout: str = "") -> tuple[TensorInfo, TensorInfo]:
    """Input and output TensorInfo read from the model file itself (via onnxruntime)."""
    sess = onnx_session(path)
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]

    def info(t, lay):
        shape = [int(d) if isinstance(d, int) else -1 for d in t.shape]
        return TensorInfo(name=t.name, shape=shape, dtype=_ORT_DTYPES.get(t.type, t.type), layout=lay)

    return info(inp, layout), info(out, "NC")


def run_onnx(path_or_session, inputs: np.ndarray) -> np.ndarray:
    """Logits for a batch of single-window inputs ``inputs[i]`` (each of the model's input shape)."""
    sess = onnx_session(path_or_session) if isinstance(path_or_session, (str, Path)) else path_or_session
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    return np.stack([sess.run([out.name], {inp.name: np.asarray(x, dtype=np.float32)})[0].reshape(-1)
                     for x in inputs])


_QDQ_PLUMBING = {"QuantizeLinear", "DequantizeLinear", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
                 "Shape", "Gather", "Concat", "Constant", "Identity"}


def onnx_float_ops(path: str | Path) -> list[str]:
    """Compute ops of a QDQ model whose activation input is not the output of a DequantizeLinear,
    i.e. that onnxruntime will run in float32 (layout ops are not counted)."""
    import onnx

    graph = onnx.load(str(path)).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    found = []
    for n in graph.node:
        if n.op_type in _QDQ_PLUMBING or not n.input:
            continue
        if producer.get(n.input[0]) != "DequantizeLinear":
            found.append(n.op_type)
    return found
