"""Microcontroller readiness: run the int8 .tflite in TensorFlow Lite Micro's Python interpreter.

Reports the tensor arena TFLM actually allocates (its recording allocator) and the parity
of its int8 outputs with LiteRT on the same int8 inputs: against LiteRT's reference
kernels (TFLM's kernels are ports of them, so the outputs should be bit-identical) and
against LiteRT's default (XNNPACK) kernels, whose requantisation rounds differently and may
differ by a few LSB. Needs PyPI ``tflite-micro``.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge_cm.errors import DependencyError, ExportError

ARENA_TRY_BYTES = 16 * 1024 * 1024


def _capture_c_output(fn):
    """Run ``fn`` with the C-level stdout and stderr sent to a file; return (result, text).

    TFLM's allocation report is printed from C++, out of reach of Python's sys.stdout.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for fd in saved:
            os.dup2(tmp.fileno(), fd)
        try:
            result = fn()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, old in saved.items():
                os.dup2(old, fd)
                os.close(old)
        tmp.seek(0)
        return result, tmp.read().decode("utf-8", "replace")


def micro_check(tflite_int8: str | Path, inputs: np.ndarray) -> dict:
    """Arena bytes TFLM needs for ``tflite_int8`` and its output parity with LiteRT.

    ``inputs`` are float model inputs (n, *input_shape); both interpreters get the same
    int8-quantised tensors.
    """
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise DependencyError("tflite-micro is not installed", hint="pip install tflite-micro") from None
    from .tflite_export import tflite_interpreter

    path = Path(tflite_int8)
    try:
        micro = runtime.Interpreter.from_file(str(path), arena_size=ARENA_TRY_BYTES)
    except Exception as exc:
        raise ExportError(f"TFLite Micro cannot load the model ({exc})", path=path,
                          hint="an op may be missing from TFLM's kernels") from None
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    ref = Interpreter(model_path=str(path), num_threads=1,
                      experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    ref.allocate_tensors()
    lite = tflite_interpreter(path)
    ind, outd = lite.get_input_details()[0], lite.get_output_details()[0]
    scale, zp = ind["quantization"]
    o_scale, o_zp = outd["quantization"]
    diffs, diffs_default, agree = [], [], 0
    for x in inputs:
        q = np.clip(np.round(np.asarray(x, np.float32) / np.float32(scale)) + zp, -128, 127).astype(np.int8)
        q = q.reshape(ind["shape"])
        micro.set_input(q, 0)
        micro.invoke()
        y_micro = np.asarray(micro.get_output(0)).astype(np.int32).reshape(-1)
        ys = []
        for interp in (ref, lite):
            interp.set_tensor(ind["index"], q)
            interp.invoke()
            ys.append(interp.get_tensor(outd["index"]).astype(np.int32).reshape(-1))
        y_lite, y_default = ys
        diffs.append(int(np.max(np.abs(y_micro - y_lite))))
        diffs_default.append(int(np.max(np.abs(y_micro - y_default))))
        agree += int(np.argmax(y_micro) == np.argmax(y_lite))
    _, text = _capture_c_output(micro.print_allocations)
    found = {k: int(v) for k, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text)}
    if "total" not in found:
        raise ExportError("TFLite Micro printed no arena report", path=path,
                          hint=f"its output was: {text.strip()[:200]!r}")
    return {"interpreter": "tflite-micro (Python)", "arena_bytes": found.get("total"),
            "arena_head_bytes": found.get("head"), "arena_tail_bytes": found.get("tail"),
            "windows": int(len(inputs)), "compared_with": "LiteRT reference kernels (BUILTIN_REF)",
            "max_abs_diff_int8_lsb": int(max(diffs)) if diffs else None,
            "max_abs_diff_int8_lsb_vs_litert_default": int(max(diffs_default)) if diffs_default else None,
            "max_abs_diff_logit": float(max(diffs) * o_scale) if diffs else None,
            "argmax_agreement": agree / max(1, len(inputs)),
            "output_zero_point": int(o_zp)}
