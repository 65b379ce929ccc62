"""Export report: export models with edge-cm-export's pipeline and tabulate their profiles.

For each architecture (untrained weights from the registry; the numbers that do not depend
on weights - parameters, MACs, activation arena, file sizes, latency - are those of a trained
model too) or checkpoint: export, gate, profile, and write one markdown table + JSON.

    python benchmarks/export_report.py --architectures efficientcnn_small,efficientcnn_medium \\
        --formats onnx,tflite --eval ../shared/data/bonafide/manifest.csv \\
        --out benchmarks/results/export_report.md

int8 formats need calibration and evaluation clips of both classes: --calibration/--eval
manifests, or --bonafide MANIFEST --espeak-spoof N, which synthesises N espeak-ng clips
(a real TTS engine) into a temporary folder and mixes them with the bona fide dev split.
An untrained model's int8 gate is meaningless (its scores are near ties), so untrained
architectures need --record-int8-gates: the gate values are measured and reported, not
enforced (edge-cm-export itself always enforces them).

    python benchmarks/export_report.py --architectures efficientcnn_small \
        --formats onnx,onnx-int8,tflite,tflite-int8 --bonafide ../shared/data/bonafide/manifest.csv \
        --espeak-spoof 24 --record-int8-gates --micro --out benchmarks/results/export_report.md
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _models(args):
    from export.cli import _deployable
    from training.models import registry

    for name in [a for a in (args.architectures or "").split(",") if a]:
        arch = registry.get(name)
        model = _deployable(registry.build(name).eval())
        spec = arch.feature_spec()
        if arch.needs_global_stats:
            spec = spec.with_global_stats(np.zeros(spec.n_bins), np.ones(spec.n_bins))
        yield name + " (untrained)", name, model, spec, list(arch.classes)
    for ckpt in args.checkpoint or []:
        from export.cli import load_checkpoint_for_export

        model, spec, arch, classes, _ = load_checkpoint_for_export(Path(ckpt))
        yield f"{arch} ({Path(ckpt).name})", arch, model, spec, classes


SENTENCES = ("My voice is my password, verify me.", "Transfer five hundred dollars to my savings account.",
             "The weather today is cloudy with a chance of rain.", "Open the front door and turn on the lights.",
             "We will meet at the station at seven thirty.", "Remember to water the plants every morning.")
VOICES = ("en", "en-us", "en-gb-scotland", "en+f3", "en+m3", "en-us+f2")


def _espeak_manifest(bonafide: Path, n: int, folder: Path) -> Path:
    """A manifest of n espeak-ng clips (spoof) and n bona fide dev-split clips."""
    import csv
    import subprocess

    from export.windows import read_manifest

    rows = [(r.path, "bonafide") for r in read_manifest(bonafide) if r.split == "dev"][:n]
    for i in range(n):
        wav = folder / f"espeak_{i:03d}.wav"
        subprocess.run(["espeak-ng", "-v", VOICES[i % len(VOICES)], "-w", str(wav), SENTENCES[i % len(SENTENCES)]],
                       check=True, capture_output=True, timeout=60)
        rows.append((wav, "spoof"))
    out = folder / "mixed.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows([(str(p), lab) for p, lab in rows])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--architectures", default="", help="comma-separated registry names")
    p.add_argument("--checkpoint", action="append", help="edge-cm-train checkpoint (repeatable)")
    p.add_argument("--formats", default="onnx,tflite")
    p.add_argument("--calibration", type=Path)
    p.add_argument("--eval", type=Path, help="manifest for the gates (real audio)")
    p.add_argument("--eval-windows", type=int, default=16)
    p.add_argument("--calibration-windows", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch threads during export (latency is always 1)")
    p.add_argument("--bonafide", type=Path, help="bona fide manifest (shared/data/bonafide/manifest.csv)")
    p.add_argument("--espeak-spoof", type=int, default=0, help="synthesise this many espeak-ng spoof clips")
    p.add_argument("--record-int8-gates", action="store_true",
                   help="measure but do not enforce the int8 gates (untrained models only)")
    p.add_argument("--micro", action="store_true", help="run the int8 .tflite in TensorFlow Lite Micro")
    p.add_argument("--bundled", action="store_true",
                   help="profile every bundle shipped in edge_cm/assets/models (no export; latency re-measured)")
    p.add_argument("--out", type=Path, required=True, help="markdown report; JSON is written beside it")
    args = p.parse_args(argv)
    if args.bundled:
        return bundled_report(args, argv)

    import torch

    from export.api import export_bundle
    from export.gates import GateLimits
    from export.profile import load_targets, profile_markdown
    from export.windows import calibration_and_eval, choose_rows, load_windows, read_manifest

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    formats = [f for f in args.formats.split(",") if f]
    cal = ev = None
    scratch = tempfile.TemporaryDirectory(prefix="export-report-")
    if args.espeak_spoof:
        if not args.bonafide:
            p.error("--espeak-spoof needs --bonafide")
        args.calibration = _espeak_manifest(args.bonafide, args.espeak_spoof, Path(scratch.name))
    if args.calibration:
        cal, ev = calibration_and_eval(args.calibration, args.eval, n_calibration=args.calibration_windows,
                                       n_eval=args.eval_windows)
    elif args.eval:
        ev = load_windows(choose_rows(read_manifest(args.eval), args.eval_windows, salt="evaluation"))
    targets = load_targets()
    results, sections = {}, []
    for label, arch, model, spec, classes in _models(args):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            limits = GateLimits(int8_max_eer_increase_points=float("inf"), int8_min_decision_agreement=0.0) \
                if args.record_int8_gates else GateLimits()
            b = export_bundle(model, spec, Path(tmp) / "b", formats=formats, architecture=arch, classes=classes,
                              calibration_windows=cal.windows if cal else None,
                              eval_windows=ev.windows if ev else None, eval_labels=ev.labels if ev else None,
                              profile_repeats=args.repeats, limits=limits, micro=args.micro)
            seconds = time.perf_counter() - t0
        prof, gates = b.meta.profile, b.meta.export_gates
        results[label] = {"profile": prof, "export_gates": gates, "export_seconds_total": seconds}
        gate_lines = [f"- gate {k}: " + (f"max |Δ logit| {g['max_abs_logit_diff']:.2e} on {g['windows']} windows"
                                         if g["kind"] == "float_parity" else
                                         f"EER {g['eer_float_percent']:.2f} -> {g['eer_int8_percent']:.2f} %, "
                                         f"agreement {100 * g['decision_agreement']:.1f} %, max |Δ logit| "
                                         f"{g['max_abs_logit_diff']:.2e}, float ops {g.get('float_ops')}"
                                         + (" (recorded, not enforced)" if args.record_int8_gates else ""))
                      + f" ({g['data']})" for k, g in gates["results"].items()]
        sections.append(f"## {label}\n\n" + "\n".join(gate_lines) + f"\n- export took {seconds:.1f} s\n"
                        + profile_markdown(prof, targets) + "\n")
        print(f"{label}: done in {seconds:.1f} s", file=sys.stderr)
    summary = ["| model | params | MACs / window | arena f32 / int8 (KiB) | " + " | ".join(
        f"{f} bytes" for f in formats) + " | front end ms | " + " | ".join(f"{f} ms" for f in formats) + " |",
        "|---|---:|---:|---:|" + "---:|" * (2 * len(formats) + 1)]
    for label, r in results.items():
        prof = r["profile"]
        keys = list(prof["file_sizes"])
        act = prof["activation_memory"]["bytes"]
        summary.append(f"| {label} | {prof['parameters']:,} | {prof['macs']:,} | {act['float32'] / 1024:.0f} / "
                       f"{act['int8'] / 1024:.0f} | " + " | ".join(f"{prof['file_sizes'][k]:,}" for k in keys)
                       + f" | {prof['latency']['front_end']['median_ms']:.1f} | "
                       + " | ".join(f"{prof['latency']['inference'][k]['median_ms']:.2f}" for k in keys) + " |")
    machine = next(iter(results.values()))["profile"]["latency"]["machine"] if results else {}
    where = (f"{machine.get('cpu')}, {machine.get('cores')} cores, Python {machine.get('python')}, "
             f"load average {load_before:.1f} at start (latency on a busy machine is noisy)")
    text = ("# Export report\n\nGenerated by `python benchmarks/export_report.py " + " ".join(
        argv if argv is not None else sys.argv[1:]) + f"` on {where}. Latency: median of {args.repeats} runs, "
        "1 thread, per 4-s window. Target times are estimates from assumed MAC rates (export/targets.json).\n\n"
        + "\n".join(summary) + "\n\n" + "\n".join(sections))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(text)
    return 0


def bundled_report(args, argv) -> int:
    """The profile table of every bundle shipped with the package, from its stored export profile and
    gates plus latency and target fit re-measured here (``edge_cm.profile.reprofile``)."""
    from edge_cm.bundle import default_bundle_path, load_bundle
    from edge_cm.profile import reprofile
    from export.profile import load_targets, profile_markdown

    targets = load_targets()
    sections, results = [], {}
    for folder in sorted(p for p in default_bundle_path().parent.iterdir() if (p / "bundle.json").is_file()):
        bundle = load_bundle(folder)
        prof = reprofile(bundle, targets, repeats=args.repeats)
        gates = bundle.meta.export_gates.get("results", {})
        results[bundle.meta.name] = {"profile": prof, "export_gates": bundle.meta.export_gates}
        gate_lines = [f"- gate {k}: " + (f"max |Δ logit| {g['max_abs_logit_diff']:.2e} on {g['windows']} windows"
                                         if g["kind"] == "float_parity" else
                                         f"EER {g['eer_float_percent']:.2f} -> {g['eer_int8_percent']:.2f} %, "
                                         f"agreement {100 * g['decision_agreement']:.1f} % on {g['windows']} windows")
                      + (" passed" if g["passed"] else " FAILED") for k, g in gates.items()]
        sections.append(f"## {bundle.meta.name} (`{folder.name}`, {bundle.meta.architecture})\n\n"
                        + "\n".join(gate_lines) + "\n\n" + profile_markdown(prof, targets) + "\n")
    text = ("# Bundled models: profile\n\nGenerated by `python benchmarks/export_report.py " + " ".join(
        argv if argv is not None else sys.argv[1:]) + "`; latency: median of "
        f"{args.repeats} runs, 1 thread, per 4-s window, on this machine. Target times are estimates "
        "from the MAC rates stated in export/targets.json.\n\n" + "\n".join(sections))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "export_report.py"))
