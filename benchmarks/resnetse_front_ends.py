"""Which front end lets a ResNetSE fit the corpus; see training/resnetse/front_end_study.py.

    python benchmarks/resnetse_front_ends.py --bonafide-manifest ../shared/data/bonafide/manifest.csv \
        --spoof-manifest DEVCORPUS/manifest.csv --out runs/resnetse_front_ends --seeds 0 1 2

Trains the ablation's NLL-only teacher row once per front end and seed (``--budget long``,
``--width quarter`` by default) and writes results.json and results.md (train and test EER,
pooled and per spoofing family, and the mean over seeds) to --out.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from training.resnetse.front_end_study import main as study

    return study(argv)


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "resnetse_front_ends.py"))
