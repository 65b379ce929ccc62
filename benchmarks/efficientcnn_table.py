"""Train every EfficientCNN variant on a corpus and write a markdown table.

    python benchmarks/efficientcnn_table.py --manifest /path/to/manifest.csv \
        --runs runs/efficientcnn --out benchmarks/results/efficientcnn.md

Columns: parameters (exported, i.e. without a multi-task head), MFLOPs of one 4-s window
(2 x conv+linear MACs), float32 weight size, EER on the dev split's spoof systems that
also occur in train ("seen") and on those that do not ("held-out"), and CPU training time
(sum of epoch wall times). Runs are resumed when their folder already holds last.pt, so an
interrupted benchmark picks up where it stopped.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_cm.metrics import compute_eer  # noqa: E402
from training import dataset as ds  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.evaluate import score_dataset  # noqa: E402
from training.models import registry  # noqa: E402
from training.train import load_checkpoint, run  # noqa: E402

VARIANTS = [f"{res}efficientcnn_{size}{mt}" for res in ("", "res_") for size in ("small", "medium", "large")
            for mt in ("", "_mt")]


def eer_of(scores: np.ndarray, labels: np.ndarray, systems: list[str], keep: set[str]) -> float | None:
    mask = np.array([s in keep for s in systems]) & (labels != 0)
    if not mask.any():
        return None
    return compute_eer(scores[labels == 0], scores[mask])[0]


def bench_variant(name: str, args, rows: list, seen: set[str], held: set[str]) -> dict:
    cfg = TrainConfig(architecture=name, manifest=str(args.manifest), batch_size=args.batch_size,
                      max_epochs=args.max_epochs, num_workers=args.workers, seed=args.seed,
                      max_train_files=args.max_train_files, max_val_files=args.max_val_files,
                      norm_stats_windows=args.norm_windows, progress=not args.quiet)
    out = Path(args.runs) / name
    started = time.perf_counter()
    trainer = run(cfg, out, resume=(out / "last.pt").exists())
    wall = time.perf_counter() - started
    train_seconds = sum(h["seconds"] for h in trainer.state.history) or wall
    model, meta = load_checkpoint(out / "best.pt")
    dev = [r for r in rows if r.split == args.eval_split]
    data = ds.WindowDataset(dev, meta["feature_spec"], train=False, systems=meta["systems"])
    scored = score_dataset(model, data, num_workers=args.workers)
    exported = model.export_module() if hasattr(model, "export_module") else model
    params = registry.count_params(exported)
    macs = registry.count_macs(exported, registry.get(name).input_shape)
    return {"name": name, "params": params, "mflops": 2 * macs / 1e6, "kb": params * 4 / 1024,
            "eer_seen": eer_of(scored.scores, scored.labels, scored.systems, seen),
            "eer_held": eer_of(scored.scores, scored.labels, scored.systems, held),
            "epochs": trainer.state.epoch, "train_s": train_seconds,
            "paper_params": registry.get(name).paper.get("params")}


def fmt_pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True, type=Path, help="corpus manifest (train and dev splits)")
    p.add_argument("--runs", required=True, type=Path, help="folder for one run folder per variant")
    p.add_argument("--out", required=True, type=Path, help="markdown table to write")
    p.add_argument("--variants", nargs="*", default=VARIANTS)
    p.add_argument("--eval-split", default="dev")
    p.add_argument("--max-epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-train-files", type=int, default=0, help="0 = all")
    p.add_argument("--max-val-files", type=int, default=0, help="0 = all")
    p.add_argument("--norm-windows", type=int, default=512)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = ds.read_rows(args.manifest)
    train_systems = {r.system for r in rows if r.split == "train" and not r.is_bonafide}
    eval_systems = {r.system for r in rows if r.split == args.eval_split and not r.is_bonafide}
    seen, held = eval_systems & train_systems, eval_systems - train_systems
    results = []
    for name in args.variants:
        print(f"== {name}", flush=True)
        results.append(bench_variant(name, args, rows, seen, held))
    lines = [
        f"# EfficientCNN family on `{args.manifest.name}`",
        "",
        f"Trained with `benchmarks/efficientcnn_table.py` (batch {args.batch_size}, at most {args.max_epochs} epochs, "
        f"training files {args.max_train_files or 'all'}, validation files {args.max_val_files or 'all'}, "
        f"seed {args.seed}, {torch.get_num_threads()} CPU threads; command: `{' '.join(sys.argv)}`). EER on the `{args.eval_split}` split: "
        f"seen systems {sorted(seen)}, held-out systems {sorted(held)}. Parameters and size are of the exported "
        "model (no multi-task head); MFLOPs = 2 x conv+linear MACs for one 4-s window.",
        "",
        "| variant | params | paper params | MFLOPs | size (KB, fp32) | EER seen (%) | EER held-out (%) "
        "| epochs | train wall time on CPU (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| `{r['name']}` | {r['params']:,} | {r['paper_params']:,} | {r['mflops']:.1f} | "
                     f"{r['kb']:.1f} | {fmt_pct(r['eer_seen'])} | {fmt_pct(r['eer_held'])} | {r['epochs']} | "
                     f"{r['train_s']:.0f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "efficientcnn_table.py"))
