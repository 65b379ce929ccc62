"""Where does a bundle err? Its clip scores (dev and test, optionally train) broken down by bona
fide source, by clip length, and by how window scores are pooled into a clip score.

The pooled EER mixes two kinds of error: spoofs that pass and bona fide clips that are
flagged. Per-system tables (``compare_releases.py``) show the first; this shows the second
(which real recordings look like spoofs: a codec, a short clip, a language) and whether the
clip length or the runtime's pooling (mean P(spoof) over 4-s speech windows, 2-s hop) is
to blame. Every clip is scored once through the runtime (``edge_cm.Detector.detect_file``);
the window scores are kept, so the pooling alternatives need no second pass.

    python benchmarks/error_sources.py --bundle edge_cm/assets/models/default \\
        --manifest devcorpus/manifest.csv --splits train dev test \\
        --out benchmarks/results/error_sources_spec_mel_cnn_mt.md

Writes the markdown table and a ``.json`` with the same figures beside it; ``--clips-csv``
also writes every clip's scores (one row per clip with speech).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SPLITS = ("train", "dev", "test")
"""Splits that can be broken down; dev and test by default (train shows what the model fits)."""
LENGTH_BUCKETS = ((0.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, float("inf")))
"""Clip lengths in seconds; below 4 s the runtime loops the clip to fill its one window."""


def pooled_scores(window_scores: list[float]) -> dict[str, float]:
    """Clip scores (higher = spoof) from the P(spoof) of its speech windows, pooled four ways.

    ``mean_p`` is what the runtime reports; ``mean_log_odds`` weighs confident windows more;
    ``median`` ignores a minority of odd windows; ``max`` flags a clip on its worst window.
    """
    from benchmarks.score_fusion import log_odds

    w = np.asarray(window_scores, dtype=np.float64)
    return {"mean_p": float(w.mean()), "mean_log_odds": float(log_odds(w).mean()),
            "median": float(np.median(w)), "max": float(w.max())}


def eer_percent(bona: np.ndarray, spoof: np.ndarray) -> float:
    """EER in % of spoof-oriented scores (higher = spoof), by the audited ``edge_cm.metrics``."""
    from edge_cm import metrics as M

    return 100.0 * M.compute_eer(-np.asarray(bona, dtype=np.float64), -np.asarray(spoof, dtype=np.float64))[0]


def score_rows(bundle: Path, rows: list, root: Path) -> tuple[list[dict], dict[str, int]]:
    """One record per clip with speech (its pooled scores; ``path`` relative to ``root``), and
    per split the number of clips in which the runtime found no speech (they have no score)."""
    import edge_cm

    detector = edge_cm.load(bundle, backend="onnx")
    out, no_speech = [], {split: 0 for split in SPLITS}
    for r in rows:
        clip = detector.detect_file(r.path)
        windows = [w.score for w in clip.speech_windows]
        if not windows:
            no_speech[r.split] += 1
            continue
        path = Path(r.path).resolve()
        out.append({"path": str(path.relative_to(root)) if path.is_relative_to(root) else str(path),
                    "split": r.split, "label": "bonafide" if r.is_bonafide else "spoof",
                    "system": r.system, "source": r.source, "seconds": clip.duration,
                    "windows": len(windows), "looped": any(w.looped for w in clip.speech_windows),
                    **pooled_scores(windows)})
    return out, no_speech


def group_errors(scores: np.ndarray, others: np.ndarray, threshold: float, *, spoof: bool) -> dict:
    """Clips of one bona fide source (``spoof`` False) or one spoofing system (True): mean score,
    the share on the wrong side of ``threshold`` (false alarms or misses), and the EER against
    all clips of the other class."""
    wrong = scores < threshold if spoof else scores >= threshold
    eer = eer_percent(others, scores) if spoof else eer_percent(scores, others)
    return {"clips": int(scores.size), "mean_score": float(scores.mean()),
            "error_percent": 100.0 * float(wrong.mean()), "eer": eer}


def breakdown(records: list[dict], threshold: float, no_speech: dict[str, int],
              splits: tuple[str, ...] = SPLITS) -> dict:
    """Per split: pooled EER per pooling rule; per bona fide source, per spoofing system and per
    length bucket, error rates at ``threshold`` (the bundle's, on ``mean_p``) and EER."""
    result: dict = {}
    for split in splits:
        part = [r for r in records if r["split"] == split]
        bona = [r for r in part if r["label"] == "bonafide"]
        spoof = [r for r in part if r["label"] == "spoof"]
        if not bona or not spoof:
            continue
        pooling = {rule: eer_percent(np.array([r[rule] for r in bona]), np.array([r[rule] for r in spoof]))
                   for rule in ("mean_p", "mean_log_odds", "median", "max")}
        bona_scores = np.array([r["mean_p"] for r in bona])
        spoof_scores = np.array([r["mean_p"] for r in spoof])
        sources = {name: group_errors(np.array([r["mean_p"] for r in bona if r["source"] == name]),
                                      spoof_scores, threshold, spoof=False)
                   for name in sorted({r["source"] for r in bona})}
        systems = {name: group_errors(np.array([r["mean_p"] for r in spoof if r["system"] == name]),
                                      bona_scores, threshold, spoof=True)
                   for name in sorted({r["system"] for r in spoof})}
        lengths = {}
        for lo, hi in LENGTH_BUCKETS:
            b = np.array([r["mean_p"] for r in bona if lo <= r["seconds"] < hi])
            s = np.array([r["mean_p"] for r in spoof if lo <= r["seconds"] < hi])
            lengths[f"{lo:g}-{hi:g} s"] = {
                "bonafide_clips": int(b.size), "spoof_clips": int(s.size),
                "false_alarm_percent": 100.0 * float((b >= threshold).mean()) if b.size else None,
                "miss_percent": 100.0 * float((s < threshold).mean()) if s.size else None,
                "eer": eer_percent(b, s) if b.size and s.size else None}
        result[split] = {"bonafide_clips": len(bona), "spoof_clips": len(spoof),
                         "no_speech_clips": no_speech.get(split, 0), "pooling_eer": pooling,
                         "sources": sources, "systems": systems, "lengths": lengths}
    return result


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown(name: str, threshold: float, result: dict) -> str:
    lines = [f"# Where `{name}` errs: bona fide sources, clip length, window pooling", "",
             f"Clip scores through the runtime (4-s windows, 2-s hop, speech windows only). Error rates "
             f"at the bundle's threshold {threshold:.4f} (the dev EER threshold of `mean_p`).", ""]
    lines += ["## Pooled EER (%) by how window scores become a clip score", "",
              "| split | bona fide / spoof clips (no speech) | mean P (runtime) | mean log-odds | median | max |",
              "|---|---|---:|---:|---:|---:|"]
    for split, r in result.items():
        p = r["pooling_eer"]
        lines.append(f"| {split} | {r['bonafide_clips']} / {r['spoof_clips']} ({r['no_speech_clips']}) "
                     f"| {_fmt(p['mean_p'])} | {_fmt(p['mean_log_odds'])} | {_fmt(p['median'])} | {_fmt(p['max'])} |")
    for key, title, errors, against in (("sources", "Bona fide sources", "false alarms", "spoofs"),
                                        ("systems", "Spoofing systems", "misses", "bona fide clips")):
        lines += ["", f"## {title}", "",
                  f"EER of each group's clips against all {against} of the split; {errors} at the threshold.", "",
                  f"| split | {key[:-1]} | clips | mean P(spoof) | {errors} % | EER vs all {against} % |",
                  "|---|---|---:|---:|---:|---:|"]
        for split, r in result.items():
            for name, v in sorted(r[key].items(), key=lambda kv: -kv[1]["eer"]):
                lines.append(f"| {split} | `{name}` | {v['clips']} | {v['mean_score']:.3f} | "
                             f"{v['error_percent']:.1f} | {v['eer']:.2f} |")
    lines += ["", "## Clip length", "",
              "| split | length | bona fide / spoof clips | false alarms % | misses % | EER % |",
              "|---|---|---|---:|---:|---:|"]
    for split, r in result.items():
        for bucket, v in r["lengths"].items():
            lines.append(f"| {split} | {bucket} | {v['bonafide_clips']} / {v['spoof_clips']} | "
                         f"{_fmt(v['false_alarm_percent'])} | {_fmt(v['miss_percent'])} | {_fmt(v['eer'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from edge_cm.bundle import load_bundle
    from edge_cm.errors import DataError
    from training.dataset import read_rows

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="markdown table (.json beside it)")
    p.add_argument("--clips-csv", type=Path, help="also write the clip scores here")
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=["dev", "test"],
                   help="splits to break down (default: dev test)")
    args = p.parse_args(argv)
    bundle = load_bundle(args.bundle)
    rows = [r for r in read_rows(args.manifest) if r.split in args.splits]
    if not rows:
        raise DataError(f"the manifest has no rows in {' or '.join(args.splits)}", path=args.manifest,
                        hint="pass a corpus built by edge-cm-train corpus build")
    records, no_speech = score_rows(args.bundle, rows, args.manifest.resolve().parent)
    if not records:
        raise DataError("the runtime found speech in none of the clips", path=args.manifest,
                        hint="check the corpus audio with edge-cm-train corpus check")
    result = breakdown(records, bundle.meta.threshold, no_speech, tuple(args.splits))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(bundle.meta.name, bundle.meta.threshold, result), encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    if args.clips_csv:
        with open(args.clips_csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    print(args.out.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "error_sources.py"))
