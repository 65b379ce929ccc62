"""How sure is an EER? Bootstrap intervals of pooled and per-system clip EER, and of the
difference between bundles scored on the same clips.

Scores every dev and test clip of a corpus with each bundle through the runtime (as
``edge-cm-train release`` does: 4-s windows, 2-s hop, mean P(spoof) over speech windows), so
the point estimates are the bundles' model-card figures. Then, ``--resamples`` times, it draws
clips with replacement within each stratum (the bona fide clips, and each spoofing system's
clips, so every resample keeps the split's counts) and recomputes every EER with the audited
:func:`edge_cm.metrics.compute_eer`. Intervals are the 2.5th and 97.5th percentiles. All bundles
share each resample, so the interval of a difference (each bundle minus the first) is paired: it
leaves out the clips' common difficulty, which an unpaired comparison would count twice.

What the intervals leave out: clips of one speaker are not independent, so resampling clips
understates the spread; ``--unit speaker`` resamples whole speakers instead (the bona fide
speakers, and the source speakers of each vocoder's or codec's copies; where the manifest names no
speaker, the recording source stands in for one; a TTS voice is one speaker, so its clips are
still drawn one by one). And a second training seed moves these models' EER too
(README, "Training"), which only retraining measures. Read an interval as the least uncertainty a
figure carries.

    python benchmarks/eer_uncertainty.py --bundle default=edge_cm/assets/models/default \\
        --bundle other=bundles/other --manifest CORPUS/manifest.csv \\
        --out benchmarks/results/eer_uncertainty.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.report import check_unique, named_values, write_report  # noqa: E402  (needs REPO on the path)
from training.uncertainty import BONAFIDE, UNITS, bootstrap, check_resamples, speaker_unit  # noqa: E402

SPLITS = ("dev", "test")
UNIT_TEXT = {"clip": "the clips",
             "speaker": "the speakers (the recording source where none is named; a TTS voice's clips one by one)"}


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def markdown(results: dict, names: list[str], sources: dict[str, str], n_resamples: int, unit: str,
             command: str) -> list[str]:
    lines = ["# How sure is each EER? Bootstrap intervals of clip EER", "",
             f"Runtime clip scores (4-s windows, 2-s hop); {n_resamples} resamples of {UNIT_TEXT[unit]} within each "
             "stratum (bona fide, each spoofing system); 95 % percentile intervals, EER %. "
             f"Differences are paired (the same resamples), each bundle minus `{names[0]}`; "
             "'lower in' is the share of resamples in which that bundle's EER was strictly the lower; "
             "'units' is how many were resampled. A training seed moves EER too, and resampling clips "
             "treats clips of one speaker as independent, so the true uncertainty is larger.", "",
             "Bundles: " + "; ".join(f"`{n}` = `{sources[n]}`" for n in names), "", f"    {command}", ""]
    for split, res in results.items():
        head = ["row", "clips (units)"] + [f"{n} [95 %]" for n in names]
        for n in names[1:]:
            head += [f"{n} - {names[0]} [95 %]", "lower in"]
        lines += [f"## {split}", "", f"{res['clips'][BONAFIDE]} bona fide clips ({res['units'][BONAFIDE]} units).", "",
                  "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for r, entry in sorted(res["rows"].items(), key=lambda kv: (kv[0] != "pooled", kv[0])):
            keys = [k for k in res["clips"] if k != BONAFIDE] if r == "pooled" else [r]
            clips, units = (sum(res[what][k] for k in keys) for what in ("clips", "units"))
            cells = ["**pooled**" if r == "pooled" else f"`{r}`", f"{clips} ({units})"]
            for n in names:
                lo, hi = entry[n]["interval"]
                cells.append(f"{_pct(entry[n]['eer'])} [{_pct(lo)}, {_pct(hi)}]")
            for n in names[1:]:
                lo, hi = entry[n]["minus_first_interval"]
                cells += [f"{100 * entry[n]['minus_first']:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]",
                          f"{100 * entry[n]['lower_than_first_share']:.0f} %"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    from edge_cm.bundle import load_bundle
    from edge_cm.errors import DataError
    from training.dataset import read_rows
    from training.release import score_clips

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", action="append", required=True, metavar="NAME=PATH",
                   help="a bundle folder (repeat); differences are taken against the first")
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--splits", nargs="+", default=list(SPLITS), choices=("train",) + SPLITS)
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap draws (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws")
    p.add_argument("--unit", choices=UNITS, default="clip",
                   help="what is resampled: single clips (default) or whole speakers (the manifest's speaker column)")
    p.add_argument("--out", required=True, type=Path, help="markdown table (.json beside it)")
    args = p.parse_args(argv)
    check_resamples(args.resamples)
    bundles = named_values(args.bundle, "--bundle")
    check_unique([n for n, _ in bundles])
    for _, path in bundles:
        load_bundle(path)  # a typed error for a missing or broken bundle before any scoring
    rows = [r for r in read_rows(args.manifest) if r.split in args.splits]
    results: dict = {}
    scored = {name: score_clips(Path(path), rows)[1] for name, path in bundles}
    for split in args.splits:
        idx = [i for i, r in enumerate(rows) if r.split == split]
        keep = [i for i in idx if all(s[i] is not None for s in scored.values())]
        is_bona = np.array([rows[i].is_bonafide for i in keep], dtype=bool)
        if not is_bona.any() or is_bona.all():
            raise DataError(f"split {split!r} needs bona fide and spoof clips with speech", path=args.manifest,
                            hint="pass a corpus manifest built by edge-cm-train corpus build")
        systems = np.array([rows[i].system for i in keep], dtype=str)
        scores = {n: -np.array([s[i] for i in keep], dtype=np.float64) for n, s in scored.items()}  # higher = bona fide
        clusters = np.array([speaker_unit(rows[i]) for i in keep], dtype=str) if args.unit == "speaker" else None
        results[split] = bootstrap(scores, is_bona, systems, args.resamples, args.seed, clusters)
        results[split]["no_speech_clips"] = len(idx) - len(keep)
    command = ("python benchmarks/eer_uncertainty.py " + " ".join(f"--bundle {n}={p}" for n, p in bundles)
               + f" --manifest {args.manifest} --resamples {args.resamples} --seed {args.seed} --unit {args.unit}")
    lines = markdown(results, [n for n, _ in bundles], dict(bundles), args.resamples, args.unit, command)
    write_report(args.out, lines, results)
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "eer_uncertainty.py"))
