"""Torch-free profiling of a bundle: file sizes, latency per 4-s window, real-time factor, target fit.

Used by ``edge-cm-export profile`` and callable from ``edge-cm info``. Latency is measured
here, on this machine, with the runtime backends and 1 thread; what a microcontroller
or phone would take is only *estimated* (MACs / the target's stated MAC rate) in
:func:`target_fit`, and labelled so.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .bundle import Bundle, ModelFile
from .features import FrameAnalyzer, compute_features


def _stats_ms(samples_s: list[float]) -> dict:
    a = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "runs": int(a.size)}


def _backend_for(bundle_path: Path, model: ModelFile, threads: int):
    if model.format == "onnx":
        from .backends.onnx import OnnxBackend
        return OnnxBackend(model, bundle_path / model.file, threads)
    from .backends.tflite import TFLiteBackend
    return TFLiteBackend(model, bundle_path / model.file, threads)


def latency_profile(bundle: Bundle | str | Path, *, repeats: int = 20, warmup: int = 2, threads: int = 1,
                    window: np.ndarray | None = None, models: list[ModelFile] | None = None) -> dict:
    """Latency per window (ms, median and p95) of the numpy front end and of each model file.

    ``window`` is one window of 16 kHz float32 audio (default: seeded noise at speech level);
    the real-time factor is (front end + inference median) / window duration.
    """
    if not isinstance(bundle, Bundle):
        from .bundle import load_bundle
        bundle = load_bundle(bundle)
    meta = bundle.meta
    n = meta.window_samples
    if window is None:
        window = (0.05 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    spec = meta.feature_spec
    analyzer = FrameAnalyzer(spec)
    for _ in range(warmup):
        feats = compute_features(spec, window, analyzer)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        feats = compute_features(spec, window, analyzer)
        times.append(time.perf_counter() - t0)
    front = _stats_ms(times)
    window_s = n / meta.sample_rate
    out = {"threads": threads, "window_seconds": window_s, "front_end": front, "inference": {},
           "machine": _machine()}
    for m in models if models is not None else meta.models:
        backend = _backend_for(bundle.path, m, threads)
        for _ in range(warmup):
            backend.run(feats)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            backend.run(feats)
            times.append(time.perf_counter() - t0)
        st = _stats_ms(times)
        st["real_time_factor"] = (front["median_ms"] + st["median_ms"]) / 1000.0 / window_s
        out["inference"][f"{m.format}/{m.precision}"] = st
    return out


def _machine() -> dict:
    import os
    import platform

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version()}


def target_fit(stats: dict, targets: dict, measured_arena: dict | None = None) -> dict:
    """Does each model file fit each deployment target, and an *estimated* time per window.

    ``stats`` needs ``macs`` (multiply-accumulates per window), ``file_sizes`` ({"fmt/precision":
    bytes}) and ``activation_bytes`` ({"float32": bytes, "int8": bytes}, the tensor-arena estimate).
    A model fits when its file fits the target's flash (or storage) budget and its arena the RAM
    budget. Time = MACs / the target's ``macs_per_second`` for that precision: an estimate from the
    stated rate, not a measurement. ``measured_arena`` ({"tflite/int8": bytes}, from TensorFlow
    Lite Micro) replaces the estimate for that model file.
    """
    measured_arena = measured_arena or {}
    out = {}
    for tname, t in targets.items():
        rows = {}
        for key, size in stats["file_sizes"].items():
            precision = key.split("/")[1]
            measured = measured_arena.get(key)
            arena = int(measured if measured is not None else stats["activation_bytes"][precision])
            rate = float(t["macs_per_second"][precision])
            fits_flash = size <= int(t["flash_bytes"])
            fits_ram = arena <= int(t["ram_bytes"])
            rows[key] = {"file_bytes": int(size), "arena_bytes": arena, "fits_flash": fits_flash,
                         "fits_ram": fits_ram, "fits": fits_flash and fits_ram,
                         "arena_source": "tflite-micro (measured)" if measured is not None else "estimate",
                         "estimated_ms_per_window": 1000.0 * float(stats["macs"]) / rate,
                         "estimate": True}
        out[tname] = rows
    return out


def fit_markdown(fit: dict, targets: dict) -> str:
    """Markdown table of :func:`target_fit`."""
    lines = ["| target | model | file | arena (* = measured by TFLM) | fits flash | fits RAM | "
             "est. ms / window (from MAC rate) |",
             "|---|---|---:|---:|:---:|:---:|---:|"]
    for tname, rows in fit.items():
        label = targets.get(tname, {}).get("label", tname)
        for key, r in rows.items():
            lines.append(f"| {label} | {key} | {_kib(r['file_bytes'])} | {_kib(r['arena_bytes'])}"
                         f"{'*' if r.get('arena_source', '').startswith('tflite-micro') else ''} | "
                         f"{'yes' if r['fits_flash'] else 'no'} | {'yes' if r['fits_ram'] else 'no'} | "
                         f"{r['estimated_ms_per_window']:.1f} |")
    return "\n".join(lines)


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


def reprofile(bundle: Bundle | str | Path, targets: dict, *, repeats: int = 20, threads: int = 1) -> dict:
    """Profile of a written bundle without torch: the model numbers stored at export (parameters,
    MACs, activation arena), this machine's file sizes and latency, and the target fit."""
    if not isinstance(bundle, Bundle):
        from .bundle import load_bundle
        bundle = load_bundle(bundle)
    stored = dict(bundle.meta.profile or {})
    sizes = {f"{m.format}/{m.precision}": int((bundle.path / m.file).stat().st_size) for m in bundle.meta.models}
    out = {k: v for k, v in stored.items() if k not in ("latency", "targets", "file_sizes")}
    out["file_sizes"] = sizes
    out["latency"] = latency_profile(bundle, repeats=repeats, threads=threads)
    if "macs" in stored and "activation_memory" in stored:
        micro = stored.get("micro") or {}
        measured = {"tflite/int8": micro["arena_bytes"]} if micro.get("arena_bytes") else None
        out["targets"] = target_fit({"macs": stored["macs"], "file_sizes": sizes,
                                     "activation_bytes": stored["activation_memory"]["bytes"]}, targets, measured)
    else:
        out["targets"] = {}
        out["targets_note"] = "no MACs / activation estimate stored in this bundle (exported without a profile)"
    return out


def load_default_targets() -> dict:
    """The deployment targets of ``export/targets.json`` (installed with edge-cm), without the
    ``_about`` note; {} if the file is not there. Reading it imports no torch."""
    import importlib.util
    import json

    spec = importlib.util.find_spec("export")
    if spec is None:
        return {}
    folders = [Path(spec.origin).parent] if spec.origin else []
    folders += [Path(p) for p in (spec.submodule_search_locations or [])]
    path = next((f / "targets.json" for f in folders if (f / "targets.json").is_file()), None)
    if path is None:
        return {}
    return {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if not k.startswith("_")}
