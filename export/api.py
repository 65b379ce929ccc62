"""export_bundle: a trained torch model + its FeatureSpec -> a gated, profiled edge-cm bundle."""
from __future__ import annotations

import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_cm.bundle import Bundle, BundleMeta, ModelFile, write_bundle
from edge_cm.errors import ExportError
from edge_cm.features import FeatureSpec, FrameAnalyzer, compute_features

from .evalmode import eval_mode
from .gates import GateLimits, check_gates, float_gate, int8_gate

#: format name on the CLI -> (bundle format, precision, file name in the bundle)
FORMATS = {
    "onnx": ("onnx", "float32", "model.onnx"),
    "onnx-int8": ("onnx", "int8", "model_int8.onnx"),
    "tflite": ("tflite", "float32", "model.tflite"),
    "tflite-int8": ("tflite", "int8", "model_int8.tflite"),
}
#: Layout strings written to TensorInfo.layout.
LAYOUT_SPECTROGRAM = "NCFT"  # batch, channel, frequency bins, time frames
LAYOUT_WAVEFORM = "NT"       # batch, samples
DEFAULT_THRESHOLD_METHOD = "default 0.5 (not calibrated)"
MAX_PARITY_WINDOWS = 32


def model_input_shape(spec: FeatureSpec, window_samples: int) -> list[int]:
    """(1, 1, bins, frames) for spectrogram front ends, (1, samples) for the waveform."""
    if spec.kind == "waveform":
        return [1, window_samples]
    return [1, 1, spec.n_bins, spec.n_frames(window_samples)]


def window_inputs(spec: FeatureSpec, windows: Sequence[np.ndarray], window_samples: int) -> np.ndarray:
    """Model inputs (n, *input_shape) float32 from audio windows of ``window_samples`` samples (16 kHz)."""
    shape = model_input_shape(spec, window_samples)
    analyzer = FrameAnalyzer(spec)
    out = np.empty((len(windows), *shape), dtype=np.float32)
    for i, w in enumerate(windows):
        w = np.asarray(w, dtype=np.float32)
        if w.shape != (window_samples,):
            raise ExportError(f"window {i} has shape {w.shape}, expected ({window_samples},) samples",
                              hint="cut windows of exactly window_samples samples")
        out[i] = compute_features(spec, w, analyzer).reshape(shape)
    return out


def torch_logits(model, inputs: np.ndarray) -> np.ndarray:
    """Reference logits of the torch model, one window at a time (as deployed: batch 1)."""
    import torch

    eval_mode(model)
    with torch.no_grad():
        return np.stack([model(torch.from_numpy(np.ascontiguousarray(x))).numpy().reshape(-1) for x in inputs])


def _labels_to_spoof(labels: Sequence, classes: Sequence[str]) -> np.ndarray:
    out = []
    for lab in labels:
        if isinstance(lab, str):
            # the gates score bona fide against the rest, so a manifest's generic "spoof" fits any model
            if lab not in classes and lab != "spoof":
                raise ExportError(f"evaluation label {lab!r} is neither 'spoof' nor one of the classes "
                                  f"{list(classes)}")
            out.append(lab != classes[0])
        else:
            out.append(int(lab) != 0)
    return np.asarray(out, dtype=bool)


def _synthetic_inputs(shape: list[int], n: int = 4) -> np.ndarray:
    """Deterministic stand-in inputs when no real windows are given (recorded as such in export_gates)."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, *shape)).astype(np.float32)


def _build_meta(*, name: str, architecture: str, spec: FeatureSpec, models: list[ModelFile], classes, window_samples,
                threshold, threshold_method, metadata: dict | None) -> BundleMeta:
    meta = BundleMeta(name=name, architecture=architecture, feature_spec=spec, models=models, classes=list(classes),
                      sample_rate=spec.sample_rate, window_samples=int(window_samples), threshold=float(threshold),
                      threshold_method=threshold_method)
    allowed = {f.name for f in fields(BundleMeta)} - {"feature_spec", "models", "classes", "format_version"}
    for key, value in (metadata or {}).items():
        if key not in allowed:
            raise ExportError(f"unknown bundle metadata key {key!r}", hint=f"use one of {sorted(allowed)}")
        setattr(meta, key, value)
    return meta


def export_bundle(model, spec: FeatureSpec, out_dir: str | Path, *, formats: Sequence[str] = ("onnx", "tflite"),
                  architecture: str, classes: Sequence[str] = ("bonafide", "spoof"),
                  calibration_windows: Sequence[np.ndarray] | None = None,
                  eval_windows: Sequence[np.ndarray] | None = None, eval_labels: Sequence | None = None,
                  window_samples: int = 64000, threshold: float = 0.5,
                  threshold_method: str = DEFAULT_THRESHOLD_METHOD, metadata: dict | None = None,
                  overwrite: bool = False, per_channel: bool = True, onnx_exporter: str = "auto",
                  limits: GateLimits = GateLimits(), profile: bool = True, profile_repeats: int = 10, data_note: str = "",
                  name: str | None = None, micro: bool = False, c_array_dir: str | Path | None = None,
                  int8_keep_float: Sequence[str] = (), training_checkpoint: dict | None = None) -> Bundle:
    """Export ``model`` to ``formats`` (onnx, onnx-int8, tflite, tflite-int8), gate, profile and write a bundle.

    The model maps the features of one window, shape :func:`model_input_shape`, to logits
    (1, n_classes); the front end stays outside it (``spec``). Windows are float32 audio of
    ``window_samples`` samples at 16 kHz. Float formats are checked against torch on
    ``eval_windows`` (or the calibration windows, or - with neither - synthetic inputs,
    recorded as such); int8 formats need ``calibration_windows`` and a disjoint labelled
    evaluation set (``eval_windows`` + ``eval_labels``, both classes). A failed gate raises
    :class:`ExportError` and nothing is written at ``out_dir``.

    ``micro``: also run the int8 .tflite in TensorFlow Lite Micro (profile ``micro``);
    ``c_array_dir``: also write the int8 (else float) .tflite as ``model_data.h/.cc`` there.
    ``int8_keep_float``: torch module names (``features.0``) left float32 in both int8 formats
    (mixed precision; each int8 gate records them and the float ops that remain).
    ``training_checkpoint``: the checkpoint dict ``model`` came from; the bundle then carries
    its weights as ``training_weights.npz`` (for ``edge-cm-train adapt --from BUNDLE``).
    """
    import torch

    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown export format(s) {unknown or formats}", hint=f"use some of {list(FORMATS)}")
    if not classes or classes[0] != "bonafide":
        raise ExportError(f"classes must start with 'bonafide', got {list(classes)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ExportError("output folder exists", path=out_dir, hint="remove it or pass overwrite=True (--force)")
    wants_int8 = any(FORMATS[f][1] == "int8" for f in formats)
    has_calibration = calibration_windows is not None and len(calibration_windows) > 0
    has_eval = eval_windows is not None and len(eval_windows) > 0
    if wants_int8:
        if not has_calibration:
            raise ExportError("int8 export needs calibration windows", hint="pass --calibration MANIFEST")
        if not has_eval or eval_labels is None:
            raise ExportError("int8 export needs a labelled evaluation set disjoint from the calibration set",
                              hint="pass --eval MANIFEST with bona fide and spoof clips")
    if micro and "tflite-int8" not in formats:
        raise ExportError("the TensorFlow Lite Micro check (--micro) needs the tflite-int8 format")
    if c_array_dir is not None and not any(f.startswith("tflite") for f in formats):
        raise ExportError("the C array (--c-array) needs a tflite format")
    if eval_labels is not None and eval_windows is not None and len(eval_labels) != len(eval_windows):
        raise ExportError(f"{len(eval_windows)} evaluation windows but {len(eval_labels)} labels")

    model = eval_mode(model)
    shape = model_input_shape(spec, window_samples)
    example = torch.zeros(shape, dtype=torch.float32)
    with torch.no_grad():
        probe = model(example)
    if isinstance(probe, (tuple, list)):
        # multi-task models return (logits, source_logits): only the class logits are deployed
        model = LogitsOnly(model).eval()
        int8_keep_float = [f"inner.{m}" for m in int8_keep_float]
        with torch.no_grad():
            probe = model(example)
    if tuple(probe.shape) != (1, len(classes)):
        raise ExportError(f"model output shape is {tuple(probe.shape)} for input {shape}, expected "
                          f"(1, {len(classes)})", hint="the model must output logits over the classes for one window")
    layout = LAYOUT_WAVEFORM if spec.kind == "waveform" else LAYOUT_SPECTROGRAM

    calib_inputs = window_inputs(spec, calibration_windows, window_samples) if has_calibration else None
    eval_inputs = window_inputs(spec, eval_windows, window_samples) if has_eval else None
    if eval_inputs is not None:
        parity_inputs, parity_data = eval_inputs[:MAX_PARITY_WINDOWS], "evaluation windows (real audio)"
    elif calib_inputs is not None:
        parity_inputs, parity_data = calib_inputs[:MAX_PARITY_WINDOWS], "calibration windows (real audio)"
    else:
        parity_inputs, parity_data = _synthetic_inputs(shape), "synthetic N(0,1) inputs (no real windows given)"
    if data_note:
        parity_data = f"{parity_data}; {data_note}"
    parity_ref = torch_logits(model, parity_inputs)
    eval_ref = torch_logits(model, eval_inputs) if (wants_int8 and eval_inputs is not None) else None
    is_spoof = _labels_to_spoof(eval_labels, classes) if wants_int8 else None
    score_scale = float((metadata or {}).get("score_scale", 1.0))
    score_bias = float((metadata or {}).get("score_bias", 0.0))

    gates: dict[str, dict] = {}
    files: dict[str, Path] = {}
    models: list[ModelFile] = []
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edge-cm-export-") as tmp:
        tmp = Path(tmp)
        float_onnx: Path | None = None
        for fmt in sorted(formats, key=list(FORMATS).index):
            bformat, precision, fname = FORMATS[fmt]
            path = tmp / fname
            t0 = time.perf_counter()
            if fmt == "onnx" or (fmt == "onnx-int8" and float_onnx is None):
                from .onnx_export import export_onnx

                float_onnx = export_onnx(model, example, tmp / FORMATS["onnx"][2], exporter=onnx_exporter)
            if fmt == "onnx-int8":
                from .quantize import quantize_onnx_int8

                quantize_onnx_int8(float_onnx, path, iter(calib_inputs), per_channel=per_channel,
                                   keep_float=int8_keep_float)
            elif fmt == "tflite":
                from .tflite_export import export_tflite

                export_tflite(model, example, path)
            elif fmt == "tflite-int8":
                from .prepare import affine_standalone_batchnorm
                from .tflite_export import export_tflite_int8

                int8_model, _ = affine_standalone_batchnorm(model)
                export_tflite_int8(int8_model, example, iter(calib_inputs), path, per_channel=per_channel,
                                   keep_float=int8_keep_float)
            timings[fmt] = time.perf_counter() - t0

            if bformat == "onnx":
                from .onnx_export import onnx_float_ops, onnx_session, onnx_tensor_info, run_onnx

                tin, tout = onnx_tensor_info(path, layout)
                runner = onnx_session(path)
                run = lambda xs, r=runner: run_onnx(r, xs)  # noqa: E731
            else:
                from .tflite_export import run_tflite, tflite_float_ops, tflite_interpreter, tflite_tensor_info

                tin, tout = tflite_tensor_info(path, layout)
                runner = tflite_interpreter(path)
                run = lambda xs, r=runner: run_tflite(r, xs)  # noqa: E731
            if list(tin.shape) != shape or list(tout.shape) != [1, len(classes)]:
                raise ExportError(f"{fname}: exported shapes {tin.shape} -> {tout.shape}, expected {shape} -> "
                                  f"[1, {len(classes)}]")
            key = f"{bformat}/{precision}"
            if precision == "float32":
                gates[key] = float_gate(parity_ref, run(parity_inputs), data=parity_data, limits=limits)
            else:
                gates[key] = int8_gate(eval_ref, run(eval_inputs), is_spoof, threshold=threshold,
                                       score_scale=score_scale, score_bias=score_bias,
                                       data="evaluation windows (real audio), disjoint from calibration"
                                            + (f"; {data_note}" if data_note else ""),
                                       calibration_windows=len(calib_inputs), limits=limits)
                gates[key]["float_ops"] = tflite_float_ops(path) if bformat == "tflite" else onnx_float_ops(path)
                gates[key]["kept_float_modules"] = list(int8_keep_float)
            files[fname] = path
            models.append(ModelFile(file=fname, format=bformat, precision=precision, sha256="", size_bytes=0,
                                    input=tin, output=tout))
        check_gates(gates)
        meta = _build_meta(name=name or architecture, architecture=architecture, spec=spec, models=models,
                           classes=classes, window_samples=window_samples, threshold=threshold,
                           threshold_method=threshold_method, metadata=metadata)
        meta.export_gates = {"limits": {"float_max_abs_logit": limits.float_max_abs_logit,
                                        "int8_max_eer_increase_points": limits.int8_max_eer_increase_points,
                                        "int8_min_decision_agreement": limits.int8_min_decision_agreement},
                             "results": gates, "export_seconds": timings}
        micro_result = None
        if micro:
            from .micro import micro_check

            try:
                micro_result = micro_check(files["model_int8.tflite"], parity_inputs)
            except ExportError as exc:  # the phone/desktop formats stay valid; record why TFLM refused
                micro_result = {"interpreter": "tflite-micro (Python)", "error": str(exc)}
        if profile:
            from edge_cm.bundle import Bundle as _Bundle

            from .profile import profile_bundle

            meta.profile = profile_bundle(model, _Bundle(path=tmp, meta=meta), repeats=profile_repeats,
                                          example=example, micro=micro_result)
        elif micro_result:
            meta.profile = {"micro": micro_result}
        weights = None
        if training_checkpoint is not None:
            from training.checkpoint_npz import save_checkpoint_npz

            weights = save_checkpoint_npz(training_checkpoint, tmp / "training_weights.npz")
        bundle = write_bundle(out_dir, meta, {k: str(v) for k, v in files.items()}, overwrite=overwrite,
                              training_weights=weights)
    if c_array_dir is not None:
        from .c_array import write_c_array

        chosen = sorted(bundle.select(fmt="tflite"), key=lambda m: m.precision != "int8")[0]
        write_c_array(bundle.model_path(chosen), c_array_dir)
    return bundle


def _make_logits_only():
    import torch.nn as nn

    class LogitsOnly(nn.Module):
        """Wraps a multi-task model so the exported graph returns only the class logits."""

        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)[0]

    return LogitsOnly


def LogitsOnly(inner):  # noqa: N802 - reads as a class at the call site; torch is imported lazily
    return _make_logits_only()(inner)
