"""``edge-cm-export``: checkpoint -> gated, profiled bundle; ``profile BUNDLE``; ``c-array MODEL``.

Examples::

    edge-cm-export --checkpoint runs/ecnn/best.pt --formats onnx,onnx-int8,tflite,tflite-int8 \\
        --calibration data/calib.csv --eval data/dev.csv --out bundles/ecnn
    edge-cm-export profile bundles/ecnn --json profile.json --markdown profile.md
    edge-cm-export c-array bundles/ecnn/model_int8.tflite --out firmware/model
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_cm.errors import EdgeCMError, ExportError


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-cm-export", description="Export a trained model to an edge-cm bundle "
                                "(float/int8 ONNX and TFLite), with parity gates and a profile.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="checkpoint written by edge-cm-train, or a bundle "
                     "carrying training weights (its training_weights.npz travels into the new bundle)")
    src.add_argument("--config", type=Path, help="training config: export an UNTRAINED model of its architecture "
                     "(pipeline checks and profiling only; the bundle is marked untrained)")
    src.add_argument("--program", type=Path, help="a torch.export program (.pt2) mapping features to logits; "
                     "needs --feature-spec and --architecture")
    p.add_argument("--feature-spec", type=Path, help="FeatureSpec JSON (with --program)")
    p.add_argument("--architecture", help="architecture name to record (default: from the checkpoint)")
    p.add_argument("--formats", default="onnx,tflite",
                   help="comma-separated: onnx, onnx-int8, tflite, tflite-int8 (default: onnx,tflite)")
    p.add_argument("--calibration", type=Path, help="manifest CSV (path,label,...) of real audio for int8 "
                   "calibration, bona fide and spoof mixed")
    p.add_argument("--eval", type=Path, help="manifest CSV for the gates (default: files of --calibration not "
                   "used for calibration)")
    p.add_argument("--calibration-windows", type=int, default=64, help="4-s windows (one per file) to calibrate on")
    p.add_argument("--eval-windows", type=int, default=200, help="windows (one per file) for the gates")
    p.add_argument("--per-tensor", action="store_true", help="int8 weights per tensor (default: per channel)")
    p.add_argument("--int8-keep-float", default="", metavar="MODULES",
                   help="comma-separated torch module names left float32 in the int8 models, e.g. features.0 "
                        "(mixed precision, for a first layer that int8 inputs hurt)")
    p.add_argument("--threshold", type=float, default=None, help="spoof-score threshold (default: checkpoint "
                   "metrics' calibrated threshold if any, else 0.5)")
    p.add_argument("--onnx-exporter", default="auto", choices=("auto", "dynamo", "torchscript"))
    p.add_argument("--name", help="bundle name (default: architecture)")
    p.add_argument("--no-profile", action="store_true", help="skip latency measurement and target fit")
    p.add_argument("--micro", action="store_true", help="also run the int8 .tflite in TensorFlow Lite Micro "
                   "(needs tflite-micro) and record its arena size")
    p.add_argument("--c-array", type=Path, help="also write model_data.h/.cc of the int8 .tflite to this folder")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to create")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    return p


def _deployable(model):
    """The inference graph of a training model: multi-task models drop their source head."""
    export_module = getattr(model, "export_module", None)
    return export_module().eval() if callable(export_module) else model


def _from_resnetse_checkpoint(full: dict, path: Path):
    """A ``edge-cm-train resnetse`` stage checkpoint (fine-tuned teacher or student): 8 classes,
    the front end it was trained on (b unless chosen); the deployed score is bona fide against the other seven."""
    from training.resnetse.frontends import checkpoint_front_end
    from training.resnetse.pipeline import model_from_stage_checkpoint

    if full.get("stage") == "ge2e":
        raise ExportError(f"{path} is a GE2E pre-training checkpoint (speaker embeddings, no "
                          "spoof head that was trained)", hint="export the fine-tuned teacher or the student")
    model, _ = model_from_stage_checkpoint(full, path)
    history = full.get("history") or [{}]
    extra = {"training_data": {"checkpoint": str(path), "stage": full.get("stage"),
                               "epochs": len(history), "final_train_loss": history[-1].get("loss")}}
    return model, checkpoint_front_end(full)[1], full["architecture"], list(full["classes"]), extra


def load_checkpoint_for_export(path: Path, ckpt: dict | None = None):
    """(deployable model, FeatureSpec, architecture, classes, bundle metadata) of a checkpoint of
    ``edge-cm-train train`` or of a ResNetSE stage (``edge-cm-train resnetse``); ``ckpt`` is the
    checkpoint dict when the caller has read it already."""
    from training.train import model_from_checkpoint, read_checkpoint

    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    if "stage" in ckpt and "state_dict" in ckpt:
        return _from_resnetse_checkpoint(ckpt, path)
    if "model_state" not in ckpt:
        raise ExportError(f"{path} is not a checkpoint written by edge-cm-train",
                          hint="pass the best.pt/last.pt of `edge-cm-train train` or a ResNetSE stage "
                               "checkpoint of `edge-cm-train resnetse`")
    model, meta = model_from_checkpoint(ckpt, path)
    extra = {"training_data": {"checkpoint": str(path), "manifest": getattr(meta.get("config"), "manifest", "")},
             "metrics": meta.get("metrics") or {}}
    return (_deployable(model), meta["feature_spec"], meta["architecture"],
            list(meta.get("classes") or ["bonafide", "spoof"]), extra)


def _load_model(args, ckpt: dict | None):
    """(model, spec, architecture, classes, metadata) from --checkpoint (read into ``ckpt``),
    --config or --program."""
    from edge_cm.features import FeatureSpec

    if args.checkpoint:
        model, spec, arch, classes, extra = load_checkpoint_for_export(args.checkpoint, ckpt)
        return model, spec, args.architecture or arch, classes, extra
    if args.config:
        from training.config import load_config
        from training.models import registry

        # export needs only the architecture; a config without a manifest is fine here
        import yaml

        raw = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
        cfg = load_config(args.config, manifest=None if raw.get("manifest") else "(not used by export)")
        arch = registry.get(cfg.architecture)
        kwargs = dict(cfg.model_args)
        if arch.multitask:
            kwargs.setdefault("n_sources", 2)  # the source head is dropped for deployment anyway
        model = _deployable(registry.build(cfg.architecture, **kwargs).eval())
        spec = arch.feature_spec()
        if arch.needs_global_stats:
            import numpy as np

            # Untrained export: identity normalisation keeps the spec valid without training statistics.
            spec = spec.with_global_stats(np.zeros(spec.n_bins), np.ones(spec.n_bins))
        return model, spec, args.architecture or cfg.architecture, list(arch.classes), {
            "untrained": True, "notes": f"UNTRAINED: random weights of {cfg.architecture} from {args.config}"}
    if not args.feature_spec or not args.architecture:
        raise ExportError("--program needs --feature-spec and --architecture")
    import torch

    program = torch.export.load(str(args.program))
    spec = FeatureSpec.from_dict(json.loads(args.feature_spec.read_text(encoding="utf-8")))
    return program.module(), spec, args.architecture, ["bonafide", "spoof"], {}


def run_export(argv: list[str]) -> int:
    args = _export_parser().parse_args(argv)
    from .api import FORMATS, export_bundle
    from .windows import calibration_and_eval, choose_rows, load_windows, read_manifest

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ExportError(f"unknown format(s) {bad}", hint=f"use some of {', '.join(FORMATS)}")
    ckpt = None
    if args.checkpoint:
        from training.train import read_checkpoint

        ckpt = read_checkpoint(args.checkpoint)
    model, spec, arch, classes, extra = _load_model(args, ckpt)
    # edge-cm-train checkpoints travel in the bundle for fine-tuning; ResNetSE stage files do not
    training_checkpoint = ckpt if ckpt is not None and "model_state" in ckpt else None
    window_samples = 64000
    cal = ev = None
    if args.calibration:
        cal, ev = calibration_and_eval(args.calibration, args.eval, n_calibration=args.calibration_windows,
                                       n_eval=args.eval_windows, window_samples=window_samples)
        print(f"calibration: {len(cal)} windows {cal.counts()}; evaluation: {len(ev)} windows {ev.counts()}")
    elif args.eval:
        ev = load_windows(choose_rows(read_manifest(args.eval), args.eval_windows, salt="evaluation"),
                          window_samples)
    threshold, method = 0.5, "default 0.5 (not calibrated)"
    metrics = extra.get("metrics") or {}
    if args.threshold is not None:
        threshold, method = args.threshold, "set on the command line (--threshold)"
    elif isinstance(metrics.get("threshold"), (int, float)):
        threshold, method = float(metrics["threshold"]), str(metrics.get("threshold_method", "from checkpoint"))
    bundle = export_bundle(
        model, spec, args.out, formats=formats, architecture=arch, classes=classes,
        calibration_windows=cal.windows if cal else None,
        eval_windows=ev.windows if ev else None, eval_labels=ev.labels if ev else None,
        window_samples=window_samples, threshold=threshold, threshold_method=method, metadata=extra,
        overwrite=args.force, per_channel=not args.per_tensor, onnx_exporter=args.onnx_exporter,
        int8_keep_float=[m for m in args.int8_keep_float.split(",") if m], training_checkpoint=training_checkpoint,
        profile=not args.no_profile, name=args.name, micro=args.micro, c_array_dir=args.c_array)
    for key, g in bundle.meta.export_gates["results"].items():
        if g["kind"] == "float_parity":
            print(f"gate {key}: max |Δ logit| {g['max_abs_logit_diff']:.2e} (limit {g['limit']:.2g}) on "
                  f"{g['windows']} windows: passed")
        else:
            print(f"gate {key}: EER {g['eer_float_percent']:.2f}% -> {g['eer_int8_percent']:.2f}%, decisions agree "
                  f"on {100 * g['decision_agreement']:.1f}% of {g['windows']} windows: passed")
    print(f"wrote {bundle.path} ({', '.join(m.file for m in bundle.meta.models)})")
    return 0


def run_profile(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="edge-cm-export profile",
                                description="Profile a bundle: sizes, latency per 4-s window, target fit.")
    p.add_argument("bundle", type=Path)
    p.add_argument("--repeats", type=int, default=20, help="timed runs per backend (1 thread)")
    p.add_argument("--targets", type=Path, help="targets JSON (default: export/targets.json)")
    p.add_argument("--json", type=Path, help="write the profile as JSON here")
    p.add_argument("--markdown", type=Path, help="write the markdown report here")
    args = p.parse_args(argv)
    from .profile import load_targets, profile_markdown, reprofile_bundle

    targets = load_targets(args.targets)
    prof = reprofile_bundle(args.bundle, repeats=args.repeats, targets=targets)
    md = profile_markdown(prof, targets)
    print(md)
    if args.json:
        args.json.write_text(json.dumps(prof, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(md + "\n", encoding="utf-8")
    return 0


def run_c_array(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="edge-cm-export c-array", description="Write a .tflite as model_data.h/.cc.")
    p.add_argument("model", type=Path)
    p.add_argument("--out", type=Path, required=True, help="folder for model_data.h and model_data.cc")
    p.add_argument("--name", default="model_data")
    p.add_argument("--symbol", default="g_model")
    args = p.parse_args(argv)
    from .c_array import write_c_array

    h, c = write_c_array(args.model, args.out, name=args.name, symbol=args.symbol)
    print(f"wrote {h} and {c}")
    return 0


COMMANDS = {"profile": run_profile, "c-array": run_c_array, "export": run_export}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        command, argv = COMMANDS[argv[0]], argv[1:]
    else:
        command = run_export
    try:
        return command(argv)
    except EdgeCMError as exc:
        print(f"edge-cm-export: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
