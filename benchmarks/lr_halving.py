"""When did each run first halve its learning rate, and did the runs halved early end worse?

The plateau schedule (``lr_patience`` 2) halves the rate after three epochs without a new best
validation loss, and a noisy validation loss can trigger that early. This reads each run's
training curve (``metrics.csv``: the rate each epoch trained at) and model card (pooled dev and
test EER from ``edge-cm-train release``) and reports, per run, the first epoch trained at a
reduced rate, the best validation loss and its epoch, and the card's EER; then Spearman's rank
correlation of that epoch with each outcome, with a two-sided permutation p-value.

    python benchmarks/lr_halving.py --out benchmarks/results/lr_halving.md \\
        --run shipped benchmarks/results/train_curve_spec_mel_cnn_mt_freqmask.csv \\
                      edge_cm/assets/models/default/model_card.md  [--run NAME CURVE CARD ...]

(the 28 runs of ``benchmarks/results/lr_halving.md``: the command in ``benchmarks/experiments.md``).

A correlation across different recipes does not say which way the cause runs (a harder recipe can
both raise the validation loss and make it noisier); runs that differ in the schedule only do.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.report import check_unique, write_report  # noqa: E402  (needs REPO on the path)
from edge_cm.errors import DataError  # noqa: E402

POOLED = re.compile(r"^\|\s*(dev|test)\s*\|\s*\*\*pooled\*\*\s*\|[^|]*\|\s*\*\*([0-9.]+)\*\*")


@dataclass(frozen=True)
class RunSummary:
    name: str
    epochs: int
    first_reduced_epoch: int | None
    """1-based epoch of the first that trained below the starting rate; None = never."""
    best_epoch: int
    best_val_loss: float
    dev_eer: float
    test_eer: float


def read_curve(path: Path) -> tuple[list[float], list[float]]:
    """(rate per epoch, validation loss per epoch) from a training ``metrics.csv``."""
    if not path.is_file():
        raise DataError("training curve not found", path=path, hint="pass a run's metrics.csv")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"not a text CSV ({e})", path=path, hint="pass a run's metrics.csv") from None
    if not rows or not {"lr", "val_loss"} <= set(rows[0]):
        raise DataError("not a training curve: no rows with lr and val_loss columns", path=path,
                        hint="pass a run's metrics.csv")
    try:
        rates, losses = [float(r["lr"]) for r in rows], [float(r["val_loss"]) for r in rows]
    except (TypeError, ValueError) as e:
        raise DataError(f"a missing or non-numeric lr or val_loss ({e})", path=path) from None
    if not np.isfinite(rates + losses).all():
        raise DataError("a NaN or infinite lr or val_loss: the run diverged, so its best epoch is undefined",
                        path=path, hint="leave the run out, or rerun it")
    return rates, losses


def read_card(path: Path) -> tuple[float, float]:
    """(dev, test) pooled EER in % from a model card written by ``edge-cm-train release``."""
    if not path.is_file():
        raise DataError("model card not found", path=path, hint="pass the model_card.md of the run's release")
    found = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not a text file ({e})", path=path,
                        hint="pass the model_card.md of the run's release") from None
    for line in text.splitlines():
        m = POOLED.match(line)
        if m:
            found[m.group(1)] = float(m.group(2))
    if set(found) != {"dev", "test"}:
        raise DataError("no pooled dev and test EER rows", path=path,
                        hint="pass a model card written by edge-cm-train release")
    return found["dev"], found["test"]


def summarise(name: str, curve: Path, card: Path) -> RunSummary:
    rates, losses = read_curve(curve)
    dev, test = read_card(card)
    first = next((i + 1 for i, r in enumerate(rates) if r < rates[0]), None)
    best = int(np.argmin(losses))
    return RunSummary(name, len(rates), first, best + 1, losses[best], dev, test)


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their mean rank."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        r[tied] = r[tied].mean()
    return r


def spearman(x: np.ndarray, y: np.ndarray, permutations: int, seed: int) -> tuple[float, float]:
    """Spearman's rho and the two-sided permutation p-value (share of shuffles with |rho| at least as large)."""
    rx, ry = ranks(x), ranks(y)
    rho = float(np.corrcoef(rx, ry)[0, 1])
    rng = np.random.default_rng(seed)
    null = np.array([np.corrcoef(rx, rng.permutation(ry))[0, 1] for _ in range(permutations)])
    return rho, float((np.sum(np.abs(null) >= abs(rho) - 1e-12) + 1) / (permutations + 1))


def report(runs: list[RunSummary], early: int, permutations: int, seed: int) -> tuple[list[str], dict]:
    """The markdown lines and the correlations {outcome: {"rho", "p"}}."""
    never = max(r.epochs for r in runs) + 1  # a run never halved ranks after every halved one
    first = np.array([r.first_reduced_epoch or never for r in runs], dtype=float)
    lines = ["# First learning-rate halving against the run's outcome", "",
             "Per run: the first epoch trained at a reduced rate (from its `metrics.csv`), its best validation loss "
             "(which picks `best.pt`), and the pooled EER on its model card.", "",
             "| run | epochs | first epoch at a reduced rate | best epoch | best validation loss | dev EER % "
             "| test EER % |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r, f in sorted(zip(runs, first), key=lambda p: (p[1], p[0].name)):
        shown = r.first_reduced_epoch if r.first_reduced_epoch else "never"
        lines.append(f"| {r.name} | {r.epochs} | {shown} | {r.best_epoch} | {r.best_val_loss:.3f} | "
                     f"{r.dev_eer:.2f} | {r.test_eer:.2f} |")
    lines += ["", f"Spearman's rank correlation with the first reduced-rate epoch ({len(runs)} runs; two-sided "
              f"permutation p-value, {permutations:,} shuffles, seed {seed}):", "",
              "| outcome | rho | p |", "|---|---:|---:|"]
    outcomes = {"best validation loss": [r.best_val_loss for r in runs], "dev EER": [r.dev_eer for r in runs],
                "test EER": [r.test_eer for r in runs]}
    correlations = {}
    for label, values in outcomes.items():
        rho, p = spearman(first, np.array(values), permutations, seed)
        correlations[label] = {"rho": rho, "p": p}
        lines.append(f"| {label} | {rho:+.2f} | {p:.3f} |")
    is_early = first <= early
    lines += ["", f"Means of runs first halved by epoch {early} and after it:", "",
              "| group | runs | best validation loss | dev EER % | test EER % |", "|---|---:|---:|---:|---:|"]
    for label, mask in ((f"by epoch {early}", is_early), (f"after epoch {early}", ~is_early)):
        if mask.any():
            sel = [r for r, m in zip(runs, mask) if m]
            lines.append(f"| {label} | {len(sel)} | {np.mean([r.best_val_loss for r in sel]):.3f} | "
                         f"{np.mean([r.dev_eer for r in sel]):.2f} | {np.mean([r.test_eer for r in sel]):.2f} |")
    lines += ["", "Across recipes this is a correlation, not a cause: a harder recipe can both raise the validation "
              "loss and make it noisier, so that it halves early. Runs that differ in the schedule only "
              "(`lr_hold_epochs`) test the cause.", ""]
    return lines, correlations


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", nargs=3, action="append", required=True, metavar=("NAME", "CURVE", "CARD"),
                    help="a run's name, its metrics.csv and its model card (repeat, at least 3)")
    ap.add_argument("--early", type=int, default=14, help="runs first halved by this epoch form the early group")
    ap.add_argument("--permutations", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="markdown report (.json beside it)")
    args = ap.parse_args(argv)
    check_unique([name for name, _, _ in args.run], "--run")
    if len(args.run) < 3:
        raise DataError(f"a rank correlation needs at least 3 runs, got {len(args.run)}",
                        hint="repeat --run NAME CURVE CARD")
    if args.permutations < 1:
        raise DataError(f"--permutations must be >= 1, got {args.permutations}")
    runs = [summarise(name, Path(curve), Path(card)) for name, curve, card in args.run]
    lines, correlations = report(runs, args.early, args.permutations, args.seed)
    write_report(args.out, lines,
                 {"runs": [asdict(r) for r in runs], "spearman_with_first_reduced_epoch": correlations})
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "lr_halving.py"))
