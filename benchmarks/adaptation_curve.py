"""Adaptation curve: fine-tune a trained detector vs train from scratch on a held-out system.

    python benchmarks/adaptation_curve.py --checkpoint edge_cm/assets/models/default \
        --manifest /path/to/manifest.csv --runs runs/adapt --out benchmarks/results/adaptation.md

The held-out system's files (default: the first spoof system of the dev split that is
absent from train) are split, seeded, into an adaptation pool (50 %), a validation set
(20 %) and a test set (30 %); bona fide adaptation files come from the train split and the
dev split is halved into validation and test. For each fraction (6.25 ... 100 % of the
pool) the script fine-tunes the checkpoint and trains the same architecture from scratch
on the same files, then reports the test EER of both (markdown table + PNG).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_cm.metrics import compute_eer  # noqa: E402
from training import dataset as ds  # noqa: E402
from training.adapt import adapt  # noqa: E402
from training.evaluate import score_dataset  # noqa: E402
from training.train import load_checkpoint  # noqa: E402

FRACTIONS = (0.0625, 0.125, 0.25, 0.5, 1.0)


def resplit(rows: list, shares: tuple[float, float], seed: int) -> list:
    """Reassign ``split`` of ``rows``: the first share 'train', the next 'dev', the rest 'test' (seeded)."""
    order = np.random.default_rng(seed).permutation(len(rows))
    n_train, n_dev = round(shares[0] * len(rows)), round(shares[1] * len(rows))
    names = {int(i): ("train" if k < n_train else "dev" if k < n_train + n_dev else "test")
             for k, i in enumerate(order)}
    return [replace(r, split=names[i]) for i, r in enumerate(rows)]


def test_eer(checkpoint: Path, test_rows: list, workers: int) -> float:
    model, meta = load_checkpoint(checkpoint)
    data = ds.WindowDataset(test_rows, meta["feature_spec"], train=False, systems=meta["systems"])
    s = score_dataset(model, data, num_workers=workers)
    return compute_eer(s.scores[s.labels == 0], s.scores[s.labels != 0])[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="trained detector: best.pt, or a bundle with training weights")
    p.add_argument("--manifest", required=True, type=Path, help="corpus manifest with train and dev splits")
    p.add_argument("--system", help="held-out spoof system (default: first dev-only system)")
    p.add_argument("--runs", required=True, type=Path, help="folder for the adaptation runs")
    p.add_argument("--out", required=True, type=Path, help="markdown table to write (PNG beside it)")
    p.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-bonafide", type=int, default=0, help="cap on bona fide train files (0 = all)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    rows = ds.read_rows(args.manifest)
    train_systems = {r.system for r in rows if r.split == "train" and not r.is_bonafide}
    held = sorted({r.system for r in rows if r.split == "dev" and not r.is_bonafide} - train_systems)
    system = args.system or (held[0] if held else None)
    if system is None:
        p.error("no dev-only spoof system in the manifest; pass --system")
    spoof = resplit([r for r in rows if r.system == system and not r.is_bonafide], (0.5, 0.2), args.seed)
    bona_train = ds.subset([r for r in rows if r.is_bonafide and r.split == "train"], args.max_bonafide, args.seed)
    bona_dev = resplit([r for r in rows if r.is_bonafide and r.split == "dev"], (0.0, 0.4), args.seed)
    bona = bona_train + bona_dev
    test_rows = [r for r in bona + spoof if r.split == "test"]
    if not any(r.is_bonafide for r in test_rows) or all(r.is_bonafide for r in test_rows):
        p.error(f"too few files of {system!r} or bona fide dev files for a test set")
    results = []
    zero_shot = test_eer(args.checkpoint, test_rows, args.workers)
    for fraction in args.fractions:
        entry = {"fraction": fraction}
        for mode in ("finetune", "scratch"):
            out = args.runs / f"{system}_{fraction:g}_{mode}"
            if not (out / "best.pt").exists():
                trainer = adapt(args.checkpoint, bona, spoof, fraction, out, max_epochs=args.max_epochs,
                                seed=args.seed, batch_size=args.batch_size, num_workers=args.workers,
                                scratch=mode == "scratch", progress=not args.quiet)
                entry["n_spoof"] = sum(not r.is_bonafide for r in trainer.train_set.rows)
            entry[mode] = test_eer(out / "best.pt", test_rows, args.workers)
        results.append(entry)
        print(f"{fraction:g}: fine-tune {100 * entry['finetune']:.2f}%  scratch {100 * entry['scratch']:.2f}%",
              flush=True)
    n_test_spoof = sum(not r.is_bonafide for r in test_rows)
    lines = [f"# Adaptation to held-out system `{system}`", "",
             f"Starting point `{args.checkpoint}`; test set: {n_test_spoof} `{system}` files and "
             f"{len(test_rows) - n_test_spoof} bona fide files. Made by `benchmarks/adaptation_curve.py` "
             f"(at most {args.max_epochs} epochs, seed {args.seed}). Without adaptation the test EER is "
             f"{100 * zero_shot:.2f} %.", "",
             "| share of the adaptation pool | spoof files | EER fine-tuned (%) | EER from scratch (%) |",
             "|---:|---:|---:|---:|"]
    for e in results:
        lines.append(f"| {100 * e['fraction']:g} % | {e.get('n_spoof', '-')} | {100 * e['finetune']:.2f} | "
                     f"{100 * e['scratch']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = args.out.with_suffix(".png")
    lines += ["", f"![adaptation curve]({png.name})"]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    xs = [100 * e["fraction"] for e in results]
    ax.plot(xs, [100 * e["finetune"] for e in results], "o-", label="fine-tuned")
    ax.plot(xs, [100 * e["scratch"] for e in results], "s--", label="from scratch")
    ax.axhline(100 * zero_shot, color="grey", ls=":", label="no adaptation")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set_xlabel(f"share of {system} adaptation data (%)")
    ax.set_ylabel("test EER (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "adaptation_curve.py"))
