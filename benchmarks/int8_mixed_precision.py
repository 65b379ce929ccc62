"""int8 with and without float layers: decision agreement and EER of a trained checkpoint.

For each ``--keep-float`` setting (``-`` = full int8), quantise the checkpoint to ONNX
int8 (QDQ) and TFLite int8 (PT2E) exactly as ``edge-cm-export`` does, calibrated on
train-split windows, and measure the int8 gate values on dev-split windows (disjoint):
EER of float and int8 window scores, decision agreement at the threshold, max |Δ logit|,
and the ops left in float.

    python benchmarks/int8_mixed_precision.py --checkpoint RUN/best.pt --manifest CORPUS/manifest.csv \\
        --keep-float - --keep-float features.0 --threshold 0.58 --out benchmarks/results/int8_mixed.md
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def measure(model, calib: np.ndarray, gate: np.ndarray, is_spoof: np.ndarray, threshold: float,
            keep_float: list[str], workdir: Path) -> list[dict]:
    """Gate values of ONNX int8 and TFLite int8 with ``keep_float`` modules left float32."""
    import torch

    from export.api import torch_logits
    from export.gates import int8_gate
    from export.onnx_export import export_onnx, onnx_float_ops, onnx_session, run_onnx
    from export.quantize import quantize_onnx_int8
    from export.tflite_export import export_tflite_int8, run_tflite, tflite_float_ops, tflite_interpreter

    example = torch.from_numpy(gate[0])
    ref = torch_logits(model, gate)
    tag = "_".join(keep_float) or "full"
    float_onnx = export_onnx(model, example, workdir / "float.onnx")
    rows = []
    for fmt in ("onnx", "tflite"):
        t0 = time.perf_counter()
        if fmt == "onnx":
            path = quantize_onnx_int8(float_onnx, workdir / f"{tag}.onnx", iter(calib), keep_float=keep_float)
            sess = onnx_session(path)
            got = run_onnx(sess, gate)
            float_ops = onnx_float_ops(path)
        else:
            path = export_tflite_int8(model, example, iter(calib), workdir / f"{tag}.tflite", keep_float=keep_float)
            interp = tflite_interpreter(path)
            got = run_tflite(interp, gate)
            float_ops = tflite_float_ops(path)
        g = int8_gate(ref, got, is_spoof, threshold=threshold, data="dev windows", calibration_windows=len(calib))
        rows.append({"format": fmt, "keep_float": keep_float, "eer_float": g["eer_float_percent"],
                     "eer_int8": g["eer_int8_percent"], "agreement": g["decision_agreement"],
                     "max_abs_logit_diff": g["max_abs_logit_diff"], "passed": g["passed"],
                     "float_ops": float_ops, "size_bytes": path.stat().st_size,
                     "seconds": time.perf_counter() - t0})
    return rows


def main(argv: list[str] | None = None) -> int:
    import torch

    from export.api import window_inputs
    from training.dataset import read_rows
    from training.release import pick_windows
    from training.train import load_checkpoint

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--manifest", required=True, help="corpus manifest: calibration from train, gate windows from dev")
    p.add_argument("--keep-float", action="append", required=True,
                   help="comma-separated module names, or - for full int8; repeat for several settings")
    p.add_argument("--threshold", type=float, default=0.5, help="decision threshold on P(spoof)")
    p.add_argument("--calibration-windows", type=int, default=64)
    p.add_argument("--gate-windows", type=int, default=400)
    p.add_argument("--out", type=Path, required=True, help="markdown table (a .json copy is written beside it)")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    model, meta = load_checkpoint(args.checkpoint)
    model = model.export_module() if hasattr(model, "export_module") else model
    model.eval()
    spec = meta["feature_spec"]
    rows = read_rows(args.manifest)
    calib_w, _ = pick_windows([r for r in rows if r.split == "train"], args.calibration_windows, seed=1)
    gate_w, gate_labels = pick_windows([r for r in rows if r.split == "dev"], args.gate_windows, seed=2)
    calib, gate = window_inputs(spec, calib_w, 64000), window_inputs(spec, gate_w, 64000)
    is_spoof = np.array([label != "bonafide" for label in gate_labels])
    results = []
    with tempfile.TemporaryDirectory(prefix="edge-cm-int8-") as tmp:
        for setting in args.keep_float:
            keep = [] if setting == "-" else [m for m in setting.split(",") if m]
            results += measure(model, calib, gate, is_spoof, args.threshold, keep, Path(tmp))
    lines = [f"# int8 with float layers: `{meta['architecture']}`", "",
             f"Checkpoint `{Path(args.checkpoint).name}`; {len(calib)} calibration windows (train split), "
             f"{len(gate)} gate windows (dev split, {int(is_spoof.sum())} spoof); threshold {args.threshold:.4f}. "
             "Gate limits: EER rise ≤ 0.5 points, agreement ≥ 98 %.", "",
             f"    python benchmarks/int8_mixed_precision.py --checkpoint ... --manifest ... "
             + " ".join(f"--keep-float {s}" for s in args.keep_float), "",
             "| format | float modules | EER float % | EER int8 % | decision agreement % | max abs Δ logit | "
             "gate | float ops left | size (KB) |",
             "|---|---|---:|---:|---:|---:|---|---|---:|"]
    for r in results:
        lines.append(f"| {r['format']} int8 | {', '.join(r['keep_float']) or 'none (full int8)'} | "
                     f"{r['eer_float']:.2f} | {r['eer_int8']:.2f} | {100 * r['agreement']:.2f} | "
                     f"{r['max_abs_logit_diff']:.3f} | {'pass' if r['passed'] else 'FAIL'} | "
                     f"{', '.join(sorted(set(r['float_ops']))) or '-'} | {r['size_bytes'] / 1024:.1f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "int8_mixed_precision.py"))
