"""``edge-cm-train release``: a trained checkpoint -> a gated, evaluated bundle with its model card.

Steps (all measured, nothing copied by hand):

1. export float ONNX to a scratch bundle and score every **dev** clip with the real
   runtime (``edge_cm.Detector.detect_file``: 4-s windows, 2-s hop, speech gate, clip
   score = mean P(spoof) over speech windows) - exactly what users get;
2. the decision threshold is the dev EER threshold of those clip scores;
3. score every **test** clip the same way: EER per spoofing system and pooled, AUC,
   macro-F1 at the dev threshold (test systems and speakers are unseen in training);
4. export the final bundle (``--formats``) with int8 calibration windows from the
   **train** split and gate windows from **dev** (disjoint), the threshold, the metrics
   and a training-data summary in ``bundle.json``, and the checkpoint's weights as
   ``training_weights.npz`` (for ``edge-cm-train adapt --from BUNDLE``); write
   ``model_card.md`` beside it.

    edge-cm-train release --checkpoint RUN/best.pt --manifest CORPUS/manifest.csv --out BUNDLE
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_cm import metrics as M
from edge_cm.errors import DataError, ExportError


def score_clips(bundle: Path, rows: Sequence, backend: str = "onnx") -> tuple[list, list[float | None]]:
    """Clip scores (P(spoof), None for clips without speech) of ``rows`` through the runtime."""
    import edge_cm

    detector = edge_cm.load(bundle, backend=backend)
    return list(rows), [detector.detect_file(r.path).score for r in rows]


def split_metrics(rows: Sequence, scores: Sequence[float | None], threshold: float | None = None) -> dict:
    """Pooled and per-system EER/AUC of clip scores (higher = spoof); macro-F1 at ``threshold``."""
    keep = [(r, s) for r, s in zip(rows, scores) if s is not None]
    labels = ["bonafide" if r.is_bonafide else "spoof" for r, _ in keep]
    values = np.array([s for _, s in keep], dtype=np.float64)
    result = M.breakdown(values, labels, [r.system for r, _ in keep], higher_means="spoof")
    result["no_speech_clips"] = len(rows) - len(keep)
    if threshold is not None:
        result["macro_f1"] = M.macro_f1(labels, values, threshold, higher_means="spoof")
    return result


def corpus_summary(rows: Sequence) -> dict:
    """Files, minutes and systems per split and class: the training-data card of the bundle."""
    out: dict = {}
    for split in ("train", "dev", "test"):
        part = [r for r in rows if r.split == split]
        bona = [r for r in part if r.is_bonafide]
        spoof = [r for r in part if not r.is_bonafide]
        out[split] = {
            "bonafide_files": len(bona), "bonafide_minutes": round(sum(r.seconds for r in bona) / 60, 1),
            "spoof_files": len(spoof), "spoof_minutes": round(sum(r.seconds for r in spoof) / 60, 1),
            "spoof_systems": sorted({r.system for r in spoof}),
            "families": dict(Counter(r.family for r in spoof)),
        }
    return out


def pick_windows(rows: Sequence, n: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """One 4-s window (centre crop, or looped) from each of ``n`` rows drawn class-balanced."""
    from edge_cm.audio import read_audio
    from training.dataset import fit_window

    rng = np.random.default_rng(seed)
    bona = [r for r in rows if r.is_bonafide]
    spoof = [r for r in rows if not r.is_bonafide]
    chosen = [bona[i] for i in rng.choice(len(bona), min(len(bona), n // 2), replace=False)]
    chosen += [spoof[i] for i in rng.choice(len(spoof), min(len(spoof), n - len(chosen)), replace=False)]
    windows = [fit_window(read_audio(r.path), 64000, None) for r in chosen]
    return windows, ["bonafide" if r.is_bonafide else "spoof" for r in chosen]


def model_card(meta_name: str, arch: str, profile: dict, dev: dict, test: dict, threshold: float,
               summary: dict, gates: dict, train_seconds: float | None, notes: str = "") -> str:
    lines = [f"### Model card: `{meta_name}` ({arch})", ""]
    if profile:
        from export.profile import parameters_text

        lines.append(f"Parameters {parameters_text(profile)}; MACs per 4-s window "
                     f"{profile.get('macs', 0):,}.")
    tr = summary["train"]
    lines += [f"Trained on the developer corpus train split: {tr['bonafide_files']} bona fide clips "
              f"({tr['bonafide_minutes']} min) and {tr['spoof_files']} spoofs ({tr['spoof_minutes']} min) from "
              f"{len(tr['spoof_systems'])} systems"
              + (f" (left out: {', '.join(tr['excluded_systems'])})." if tr.get("excluded_systems") else ".")
              + (f" Training time {train_seconds / 60:.0f} min (wall clock)." if train_seconds else ""),
              f"Threshold {threshold:.4f} = the EER threshold of dev clip scores (dev systems are unseen "
              "in training). Scores below are clip scores from the runtime (4-s windows, 2-s hop, mean "
              "P(spoof) over speech windows).", "",
              "| split | system | family | EER % | AUC | bona fide / spoof clips |", "|---|---|---|---:|---:|---|"]
    for name, res, split in (("dev", dev, "dev"), ("test", test, "test")):
        fam = {s: f for s, f in res.get("families", {}).items()}
        for system, e in sorted(res["systems"].items(), key=lambda kv: kv[1]["eer"]):
            lines.append(f"| {split} | `{system}` | {fam.get(system, '')} | {100 * e['eer']:.2f} | {e['auc']:.3f} | "
                         f"{e['n_bonafide']} / {e['n_spoof']} |")
        p = res["pooled"]
        lines.append(f"| {split} | **pooled** | | **{100 * p['eer']:.2f}** | {p['auc']:.3f} | "
                     f"{p['n_bonafide']} / {p['n_spoof']} |")
    if "macro_f1" in test:
        lines += ["", f"Test macro-F1 at the dev threshold: {100 * test['macro_f1']:.2f} %."]
    results = (gates or {}).get("results", {})
    if results:
        lines += ["", "Export gates: " + "; ".join(
            f"{k}: " + ", ".join(f"{kk} {vv:.4g}" if isinstance(vv, float) else f"{kk} {vv}"
                                 for kk, vv in v.items() if kk in ("max_abs_logit_diff", "eer_float_percent", "eer_int8_percent",
                                                                   "decision_agreement", "passed"))
            for k, v in results.items())]
    if notes:
        lines += ["", f"Release notes: {notes}"]
    return "\n".join(lines) + "\n"


def with_level(spec, level: str, train_rows: Sequence, cfg):
    """``spec`` with ``level_dbfs`` from ``--level-dbfs`` (``auto``: :func:`training.level.training_level_dbfs`
    of the run's training windows; ``none``: no level; the global statistics stay those the model was trained
    with)."""
    from dataclasses import replace

    from edge_cm.errors import FeatureSpecError

    if level == "auto":
        from training.level import training_level_dbfs

        value = training_level_dbfs(train_rows, spec, n_windows=cfg.norm_stats_windows, seed=cfg.seed,
                                    window_seconds=cfg.window_seconds)
    elif level == "none":
        value = None
    else:
        try:
            value = float(level)
        except ValueError:
            raise FeatureSpecError(f"--level-dbfs must be keep, auto, none or a level in dBFS, got {level!r}",
                                   hint="e.g. --level-dbfs auto") from None
    return replace(spec, level_dbfs=value)


def main(argv: list[str] | None = None) -> int:
    from export.api import export_bundle
    from training.dataset import read_rows
    from training.train import model_from_checkpoint, read_checkpoint

    p = argparse.ArgumentParser(prog="edge-cm-train release", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="best.pt of a run, or a bundle with training weights")
    p.add_argument("--manifest", required=True, help="corpus manifest with train/dev/test splits")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--name", default=None)
    p.add_argument("--formats", default="onnx,tflite,onnx-int8,tflite-int8")
    p.add_argument("--calibration-windows", type=int, default=64)
    # 400: with ~100 windows per class an EER step is ~1 point, coarser than the 0.5-point int8 limit.
    p.add_argument("--gate-windows", type=int, default=400)
    p.add_argument("--max-clips", type=int, default=0, help="score at most this many clips per split (0 = all)")
    p.add_argument("--train-seconds", type=float, default=None, help="wall-clock seconds the training took (for the card)")
    p.add_argument("--float-fallback", action="store_true",
                   help="if an int8 gate fails, ship the float formats and record why in the bundle")
    p.add_argument("--int8-keep-float", default="", metavar="MODULES",
                   help="comma-separated module names left float32 in the int8 models (see edge-cm-export)")
    p.add_argument("--level-dbfs", default="keep", metavar="keep|auto|none|DBFS",
                   help="the front end's level normalisation (FeatureSpec.level_dbfs): keep the checkpoint's, auto "
                        "(the training windows' median level, training.level), none, or a level in dBFS")
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)

    checkpoint = read_checkpoint(args.checkpoint)
    model, meta = model_from_checkpoint(checkpoint, args.checkpoint)
    export_model = model.export_module() if hasattr(model, "export_module") else model
    spec = meta["feature_spec"]
    rows = read_rows(args.manifest)
    # A run that left systems out of training (exclude_systems) gets a card and calibration set
    # that leave them out too; dev and test are scored in full. A left-out system missing from this
    # manifest means it is not the run's corpus, and the card would describe the wrong data.
    from training.train import without_systems

    excluded = meta["config"].exclude_systems
    rows = ([r for r in rows if r.split != "train"]
            + without_systems([r for r in rows if r.split == "train"], excluded, args.manifest))
    by_split = {s: [r for r in rows if r.split == s] for s in ("train", "dev", "test")}
    for s, part in by_split.items():
        if not any(r.is_bonafide for r in part) or all(r.is_bonafide for r in part):
            raise DataError(f"split {s!r} needs bona fide and spoof rows", path=args.manifest)
    if args.level_dbfs != "keep":
        spec = with_level(spec, args.level_dbfs, by_split["train"], meta["config"])
        # The bundle's training weights carry the spec too, so `adapt --from` the bundle keeps the level.
        checkpoint = dict(checkpoint, feature_spec=spec.to_dict())
    if args.max_clips:
        from training.dataset import subset
        by_split = {s: subset(part, args.max_clips, seed=0) for s, part in by_split.items()}
    name = args.name or f"{meta['architecture']}-devcorpus"
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="edge-cm-release-") as tmp:
        scratch = Path(tmp) / "scratch"
        export_bundle(export_model, spec, scratch, formats=("onnx",), architecture=meta["architecture"],
                      profile=False, name=name)
        dev_rows, dev_scores = score_clips(scratch, by_split["dev"])
        dev = split_metrics(dev_rows, dev_scores)
        threshold = float(dev["pooled"]["threshold"])
        dev = split_metrics(dev_rows, dev_scores, threshold)
        test_rows, test_scores = score_clips(scratch, by_split["test"])
        test = split_metrics(test_rows, test_scores, threshold)
    for res, part in ((dev, by_split["dev"]), (test, by_split["test"])):
        res["families"] = {r.system: r.family for r in part if not r.is_bonafide}
    calib, _ = pick_windows(by_split["train"], args.calibration_windows, seed=1)
    gate_windows, gate_labels = pick_windows(by_split["dev"], args.gate_windows, seed=2)
    summary = corpus_summary(rows)
    summary["train"]["excluded_systems"] = sorted(excluded)
    metrics = {"clip_scoring": "runtime detect_file: 4-s windows, 2-s hop, mean P(spoof) over speech windows",
               "dev": {"pooled_eer": dev["pooled"]["eer"], "pooled_auc": dev["pooled"]["auc"],
                       "per_system_eer": {k: v["eer"] for k, v in dev["systems"].items()}},
               "test": {"pooled_eer": test["pooled"]["eer"], "pooled_auc": test["pooled"]["auc"],
                        "macro_f1_at_dev_threshold": test["macro_f1"],
                        "per_system_eer": {k: v["eer"] for k, v in test["systems"].items()}}}
    formats = tuple(args.formats.split(","))
    kwargs = dict(architecture=meta["architecture"], calibration_windows=calib, eval_windows=gate_windows,
                  eval_labels=gate_labels, threshold=threshold, overwrite=args.force, name=name,
                  int8_keep_float=[m for m in args.int8_keep_float.split(",") if m],
                  training_checkpoint=checkpoint,
                  threshold_method="EER threshold of runtime clip scores on the dev split (systems unseen in training)")
    notes = ""
    try:
        bundle = export_bundle(export_model, spec, args.out, formats=formats,
                               metadata={"training_data": {"manifest": Path(args.manifest).name, "splits": summary},
                                         "metrics": metrics}, **kwargs)
    except ExportError as exc:
        float_only = tuple(f for f in formats if not f.endswith("int8"))
        if float_only == formats or not args.float_fallback:
            raise
        # Ship what passed its gates and say why the int8 models are missing.
        notes = f"int8 formats not shipped: {exc}"
        print(f"edge-cm-train release: {notes}; exporting {', '.join(float_only)} only")
        bundle = export_bundle(export_model, spec, args.out, formats=float_only,
                               metadata={"training_data": {"manifest": Path(args.manifest).name, "splits": summary},
                                         "metrics": metrics, "notes": notes}, **kwargs)
    card = model_card(name, meta["architecture"], bundle.meta.profile, dev, test, threshold, summary,
                      bundle.meta.export_gates, args.train_seconds, notes)
    (Path(args.out) / "model_card.md").write_text(card, encoding="utf-8")
    (Path(args.out) / "evaluation.json").write_text(json.dumps({"dev": dev, "test": test}, indent=2, default=float)
                                                    + "\n", encoding="utf-8")
    print(card)
    print(f"release took {time.time() - started:.0f} s")
    return 0
