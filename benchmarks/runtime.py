"""Runtime benchmark: per-window latency of the front end and of inference, real-time factor, peak RSS.

For each bundle (default: the bundled default model) and each model file it holds
(onnx/tflite, float32/int8), with 1 thread:

* front end: full-window features (what ``detect_array`` does) and incremental
  features (what streaming does per 2-s hop), median and p95 ms per window;
* inference: backend ``run`` on one window's features, median and p95 ms;
* real-time factor = (incremental features + inference) per hop / hop duration;
* peak RSS (MiB) of a separate process streaming a 1-hour file through ``detect_file``.

Writes a markdown table (with date, CPU and versions) and a JSON file.

    python benchmarks/runtime.py [--bundle B ...] [--repeats 30] [--hour-file] --out benchmarks/results/runtime.md
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from edge_cm.backends.onnx import OnnxBackend
from edge_cm.backends.tflite import TFLiteBackend
from edge_cm.bundle import default_bundle_path, load_bundle
from edge_cm.features import FrameAnalyzer, compute_features, normalize


def percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.median(ms)), float(np.percentile(ms, 95))


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def test_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like test signal (amplitude-modulated harmonics plus noise) at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))
    return (0.05 * env * voiced + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def time_front_end(spec, window: np.ndarray, hop: int, repeats: int) -> dict:
    analyzer = FrameAnalyzer(spec)
    full, incr = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        compute_features(spec, window, analyzer)
        full.append((time.perf_counter() - t0) * 1000)
        if spec.kind != "waveform":
            # a streaming hop: frame only the new samples, then normalise the window's columns
            cols = analyzer.frames(window)
            t0 = time.perf_counter()
            new = analyzer.frames(window[-(hop + spec.win_length - spec.hop_length):])
            normalize(spec, np.concatenate([cols[:, new.shape[1]:], new], axis=1), window)
            incr.append((time.perf_counter() - t0) * 1000)
    out = {"full_ms": percentiles(full)}
    out["incremental_ms"] = percentiles(incr) if incr else out["full_ms"]
    return out


def time_inference(bundle, model, features: np.ndarray, repeats: int) -> tuple[float, float]:
    cls = OnnxBackend if model.format == "onnx" else TFLiteBackend
    backend = cls(model, bundle.model_path(model), threads=1)
    backend.run(features)  # warm-up (allocations, XNNPACK delegate set-up)
    ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        backend.run(features)
        ms.append((time.perf_counter() - t0) * 1000)
    return percentiles(ms)


def hour_file_rss(bundle_path: Path, workdir: Path) -> dict:
    """Peak RSS (MiB) and wall time of ``detect_file`` on a 1-hour 16 kHz file, in a fresh process."""
    import soundfile as sf

    path = workdir / "hour.wav"
    minute = (test_audio(60.0) * 32767).astype(np.int16)
    with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as f:
        for _ in range(60):
            f.write(minute)
    script = textwrap.dedent(f"""
        import time, edge_cm
        det = edge_cm.load({str(bundle_path)!r})
        t0 = time.perf_counter()
        clip = det.detect_file({str(path)!r})
        wall = time.perf_counter() - t0
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
        print(len(clip.windows), wall, int(hwm.split()[1]) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    return {"windows": int(out[0]), "wall_s": float(out[1]), "peak_rss_mib": float(out[2])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, action="append", help="bundle folder(s); default: the bundled model")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--hour-file", action="store_true", help="also stream a 1-hour file and measure peak RSS")
    ap.add_argument("--out", type=Path, required=True, help="markdown output; JSON written beside it")
    args = ap.parse_args(argv)

    bundles = args.bundle or [default_bundle_path()]
    rows, records = [], []
    window = test_audio(4.0)
    for bpath in bundles:
        bundle = load_bundle(bpath)
        meta = bundle.meta
        label = meta.name if not args.bundle else f"{meta.name} (`{bpath}`)"  # two folders may share a name
        hop = int(meta.default_hop_seconds * meta.sample_rate)
        fe = time_front_end(meta.feature_spec, window, hop, args.repeats)
        feats = compute_features(meta.feature_spec, window)
        rss = None
        if args.hour_file:
            with tempfile.TemporaryDirectory() as tmp:
                rss = hour_file_rss(bpath, Path(tmp))
        for model in bundle.meta.models:
            inf = time_inference(bundle, model, feats, args.repeats)
            per_hop_ms = fe["incremental_ms"][0] + inf[0]
            rtf = per_hop_ms / 1000 / (hop / meta.sample_rate)
            rec = {"bundle": meta.name, "model": f"{model.format}/{model.precision}", "file": model.file,
                   "front_end_full_ms": fe["full_ms"], "front_end_incremental_ms": fe["incremental_ms"],
                   "inference_ms": inf, "rtf": rtf, "hour_file": rss}
            records.append(rec)
            rows.append(f"| {label} | {rec['model']} | {fe['full_ms'][0]:.2f} / {fe['full_ms'][1]:.2f} | "
                        f"{fe['incremental_ms'][0]:.2f} / {fe['incremental_ms'][1]:.2f} | "
                        f"{inf[0]:.2f} / {inf[1]:.2f} | {rtf:.4f} | "
                        + (f"{rss['peak_rss_mib']:.0f} MiB ({rss['wall_s']:.0f} s for 1 h)" if rss else "-") + " |")

    import onnxruntime
    try:
        import ai_edge_litert
        litert = getattr(ai_edge_litert, "__version__", "installed")
    except ImportError:
        litert = "absent"
    header = [
        f"Measured {dt.date.today().isoformat()} on {cpu_name()} ({platform.machine()}), 1 thread, "
        f"Python {platform.python_version()}, numpy {np.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"ai-edge-litert {litert}; {args.repeats} repeats per figure; command: "
        "`python benchmarks/runtime.py" + "".join(f" --bundle {b}" for b in args.bundle or [])
        + (f" --repeats {args.repeats}" if args.repeats != 30 else "")
        + f"{' --hour-file' if args.hour_file else ''} --out {args.out}`.",
        "",
        "| bundle | model | front end, full window ms (median / p95) | front end, per 2-s hop ms | "
        "inference ms (median / p95) | real-time factor | peak RSS, 1-hour file |",
        "|---|---|---|---|---|---|---|",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + rows) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(records, indent=2) + "\n")
    print("\n".join(header + rows))
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "runtime.py"))
