"""How many clips of real speech does ``edge-cm calibrate`` need? Test false alarms at thresholds
chosen from a few dev clips.

Dev and test are heard through one condition of ``channel_robustness.py`` (the same corrupted audio,
same ``--seed``), as a device in that room would hear them. For each size n of ``--sizes``,
``--draws`` times, n of dev's bona fide clips are drawn without replacement, the threshold
``edge-cm calibrate`` would choose from them (``--false-alarms`` percent) is taken, and test's false
alarms and misses are measured at it. Dev and test speakers do not overlap, so the spread is what a
user who records n clips in a room may get on other speakers in that room.

    python benchmarks/calibration_size.py --bundle edge_cm/assets/models/default \\
        --manifest devcorpus/manifest.csv --condition "babble 15 dB" \\
        --out benchmarks/results/calibration_size.md
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.channel_robustness import conditions, corrupt, manifest_conditions  # noqa: E402  (REPO on path)
from benchmarks.report import write_report  # noqa: E402

CONDITION_NAMES = tuple(conditions((np.ones(16, np.float32),)))


def heard_scores(detector, part: list, transform, seed: int, condition: int) -> tuple[list, np.ndarray]:
    """Clip scores of ``part`` heard through ``transform`` (as channel_robustness corrupts them); clips
    without speech are left out. Returns (kept rows, scores)."""
    from edge_cm.audio import read_audio

    kept, scores = [], []
    for k, r in enumerate(part):
        heard = corrupt(read_audio(r.path, target_rate=16000), transform, seed, k, condition)
        score = detector.detect_array(heard, 16000, source=r.path).score
        if score is not None:
            kept.append(r)
            scores.append(score)
    return kept, np.array(scores, dtype=np.float64)


def size_row(dev_bona: np.ndarray, test_bona: np.ndarray, test_spoof: np.ndarray, size: int, draws: int,
             target: float, rng: np.random.Generator) -> dict:
    """Test false alarms and misses (%) at thresholds chosen from ``size`` dev clips, ``draws`` times:
    median and 5th-95th percentiles (one draw when ``size`` is every dev clip)."""
    from edge_cm.calibrate import threshold_for

    n = 1 if size == dev_bona.size else draws
    fa, miss = np.empty(n), np.empty(n)
    for i in range(n):
        t = threshold_for(rng.choice(dev_bona, size, replace=False), target)
        fa[i], miss[i] = 100 * np.mean(test_bona >= t), 100 * np.mean(test_spoof < t)

    def spread(v: np.ndarray) -> dict:
        return {"median": float(np.median(v)), "p5": float(np.percentile(v, 5)), "p95": float(np.percentile(v, 95))}

    return {"size": size, "draws": n, "false_alarm_percent": spread(fa), "miss_percent": spread(miss)}


def main(argv: list[str] | None = None) -> int:
    import edge_cm
    from edge_cm.calibrate import check_target
    from edge_cm.errors import DataError
    from training.dataset import read_rows

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, type=Path, help="a bundle folder")
    p.add_argument("--manifest", required=True, type=Path, help="built corpus manifest")
    p.add_argument("--condition", default="babble 15 dB", choices=CONDITION_NAMES)
    p.add_argument("--false-alarms", type=float, default=5.0, metavar="PERCENT", help="calibration target")
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 200], help="dev clips per calibration")
    p.add_argument("--draws", type=int, default=500, help="calibrations per size")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruption (as channel_robustness) and draws")
    p.add_argument("--out", required=True, type=Path, help="markdown table (.json beside it)")
    args = p.parse_args(argv)
    target = check_target(args.false_alarms / 100.0)
    if args.draws < 1:
        raise DataError(f"--draws must be at least 1, got {args.draws}")
    detector = edge_cm.load(args.bundle)
    rows = read_rows(args.manifest)
    dev_count = sum(r.split == "dev" and r.is_bonafide for r in rows)
    too_small = [n for n in args.sizes if n < math.ceil(1 / target - 1e-9)]
    if too_small or max(args.sizes) > dev_count:
        raise DataError(f"--sizes {args.sizes} must lie between {math.ceil(1 / target - 1e-9)} (to resolve "
                        f"{args.false_alarms:g} % false alarms) and the {dev_count} dev bona fide clips",
                        path=args.manifest, hint="choose other --sizes or --false-alarms")
    conds = manifest_conditions(rows, args.manifest)
    j = list(conds).index(args.condition)
    scored = {}
    for split in ("dev", "test"):
        part = [r for r in rows if r.split == split]
        kept, scores = heard_scores(detector, part, conds[args.condition], args.seed, j)
        bona = np.array([r.is_bonafide for r in kept])
        scored[split] = (scores[bona], scores[~bona])
    dev_bona, _ = scored["dev"]
    test_bona, test_spoof = scored["test"]
    if not test_bona.size or not test_spoof.size:
        raise DataError("the test split needs bona fide and spoof clips with speech", path=args.manifest)
    rng = np.random.default_rng(args.seed)
    sizes = sorted({min(n, dev_bona.size) for n in args.sizes} | {dev_bona.size})
    table = [size_row(dev_bona, test_bona, test_spoof, n, args.draws, target, rng) for n in sizes]
    results = {"bundle": str(args.bundle), "condition": args.condition, "target_false_alarm_percent": args.false_alarms,
               "bundle_threshold": detector.threshold, "test_clips": {"bonafide": int(test_bona.size),
                                                                       "spoof": int(test_spoof.size)},
               "at_bundle_threshold": {"false_alarm_percent": float(100 * np.mean(test_bona >= detector.threshold)),
                                       "miss_percent": float(100 * np.mean(test_spoof < detector.threshold))},
               "sizes": table}
    bt = results["at_bundle_threshold"]
    lines = ["# How many clips does `edge-cm calibrate` need?", "",
             f"Bundle `{args.bundle}`; dev and test heard through **{args.condition}** (as "
             "`channel_robustness.py`). Each row: thresholds chosen from n of dev's real clips at "
             f"{args.false_alarms:g} % false alarms, {args.draws} random draws of n (one when n is all of dev), "
             f"then test's false alarms and misses at each; median [5th, 95th percentile]. Test: "
             f"{test_bona.size} bona fide and {test_spoof.size} spoof clips, speakers not in dev.", "",
             "    python benchmarks/calibration_size.py --bundle " + str(args.bundle) + f" --manifest {args.manifest}"
             + f' --condition "{args.condition}" --false-alarms {args.false_alarms:g} --sizes '
             + " ".join(map(str, args.sizes)) + f" --draws {args.draws} --seed {args.seed}", "",
             "| dev clips recorded | test false alarms % | test misses % |", "|---:|---:|---:|",
             f"| (bundle's threshold {detector.threshold:.4f}) | {bt['false_alarm_percent']:.1f} | "
             f"{bt['miss_percent']:.1f} |"]
    for row in table:
        fa, miss = row["false_alarm_percent"], row["miss_percent"]
        lines.append(f"| {row['size']} | {fa['median']:.1f} [{fa['p5']:.1f}, {fa['p95']:.1f}] | "
                     f"{miss['median']:.1f} [{miss['p5']:.1f}, {miss['p95']:.1f}] |")
    write_report(args.out, lines + [""], results)
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "calibration_size.py"))
