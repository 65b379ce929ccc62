"""ResNetSE ablation (the paper's Tables 1 and 2) on a budget; see training/resnetse/ablation.py.

    python benchmarks/resnetse_ablation.py --bonafide-manifest ../shared/data/bonafide/manifest.csv \
        --spoof-manifest DEVCORPUS/manifest.csv --out runs/resnetse_ablation --budget tiny

Same as ``edge-cm-train resnetse ablate ...``. Writes results.json and results.md to --out.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from training.resnetse.ablation import add_arguments, run_from_args
    from training.resnetse.cli import _threads

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    _threads(args.threads)
    print(run_from_args(args))
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "resnetse_ablation.py"))
