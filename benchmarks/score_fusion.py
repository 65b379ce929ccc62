"""Do two bundles err on different spoofs? Clip-score EER of each and of their fused log-odds.

Scores every dev and test clip of a corpus with each bundle through the runtime (as
``edge-cm-train release`` does: 4-s windows, 2-s hop, mean P(spoof) over speech windows),
then fuses per clip by the mean and by the max of the two spoof log-odds. If fusion beats
both, the models are complementary, and one model that learns both views is worth training
(how ``spec_mel_cnn`` came about).

    python benchmarks/score_fusion.py --bundle A --bundle B --manifest CORPUS/manifest.csv \\
        --out benchmarks/results/score_fusion.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.report import write_report  # noqa: E402  (needs REPO on the path)


def log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def main(argv: list[str] | None = None) -> int:
    from edge_cm import metrics as M
    from edge_cm.bundle import load_bundle
    from training.dataset import read_rows
    from training.release import score_clips

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", action="append", required=True, type=Path, help="exactly two bundles")
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="markdown table (.json beside it)")
    args = p.parse_args(argv)
    if len(args.bundle) != 2:
        p.error("pass --bundle exactly twice")
    names = [load_bundle(b).meta.name for b in args.bundle]
    rows = [r for r in read_rows(args.manifest) if r.split in ("dev", "test")]
    scores = [score_clips(b, rows)[1] for b in args.bundle]
    keep = [i for i in range(len(rows)) if all(s[i] is not None for s in scores)]
    results: dict = {}
    for split in ("dev", "test"):
        idx = [i for i in keep if rows[i].split == split]
        labels = ["bonafide" if rows[i].is_bonafide else "spoof" for i in idx]
        systems = [rows[i].system for i in idx]
        a, b = (log_odds([s[i] for i in idx]) for s in scores)
        for label, values in ((names[0], a), (names[1], b), ("mean of log-odds", (a + b) / 2),
                              ("max of log-odds", np.maximum(a, b))):
            r = M.breakdown(values, labels, systems, higher_means="spoof")
            results.setdefault(split, {})[label] = {"pooled": r["pooled"]["eer"],
                                                    "systems": {k: v["eer"] for k, v in r["systems"].items()}}
    lines = ["# Score fusion of two bundles", "",
             f"Clip scores of {len(keep)} dev and test clips (runtime, 4-s windows, 2-s hop); EER %.", "",
             "    python benchmarks/score_fusion.py " + " ".join(f"--bundle {b.name}" for b in args.bundle)
             + f" --manifest {args.manifest.name}", ""]
    for split, by_score in results.items():
        systems = sorted(next(iter(by_score.values()))["systems"])
        lines += [f"## {split}", "", "| system | " + " | ".join(by_score) + " |",
                  "|---|" + "---:|" * len(by_score)]
        for s in systems:
            lines.append(f"| `{s}` | " + " | ".join(f"{100 * v['systems'][s]:.1f}" for v in by_score.values()) + " |")
        lines += ["| **pooled** | " + " | ".join(f"**{100 * v['pooled']:.2f}**" for v in by_score.values()) + " |", ""]
    write_report(args.out, lines, results)
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "score_fusion.py"))
