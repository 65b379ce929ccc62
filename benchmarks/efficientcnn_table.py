"""Train every EfficientCNN variant on a corpus and write a markdown table.

    python benchmarks/efficientcnn_table.py --manifest /path/to/manifest.csv \
        --runs runs/efficientcnn --out benchmarks/results/efficientcnn.md

Columns: parameters (exported, i.e. without a multi-task head), MFLOPs of one 4-s window
(2 x conv+linear MACs), float32 weight size, EER on seen and on held-out spoofing systems,
pooled EER on the test split, epochs run and the epoch whose checkpoint is scored (lowest
validation loss), and CPU training time (sum of epoch wall times).

"Seen" systems are those of the training split. A corpus that gives every system to one
split has none in dev, so ``--seen-share`` holds a share of the training split out of
training (:func:`seen_holdout`): its speakers and clips are unseen, its systems are not.
"Held-out" systems are the dev split's systems that training never saw.

Each finished variant writes ``RUNS/<variant>/table_row.json`` and is not trained again;
an unfinished run is resumed from its ``last.pt``. The table is rewritten after every
variant, so an interrupted benchmark leaves the rows it finished.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_cm.metrics import compute_eer  # noqa: E402
from edge_cm.errors import DataError  # noqa: E402
from training import dataset as ds  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.corpus.pairs import copy_sources  # noqa: E402
from training.evaluate import score_dataset  # noqa: E402
from training.models import registry  # noqa: E402
from training.train import load_checkpoint, prepare, run  # noqa: E402

VARIANTS = [f"{res}efficientcnn_{size}{mt}" for res in ("", "res_") for size in ("small", "medium", "large")
            for mt in ("", "_mt")]


def seen_holdout(rows: list, share: float, seed: int) -> tuple[list, list]:
    """``(training rows, seen-test rows)``: about ``share`` of ``rows`` held out by group.

    A group is one bona fide speaker (one clip when the speaker is unknown) together with every
    copy-synthesis spoof (vocoder, codec) made from its clips, so no held-out voice or
    utterance is trained on. A TTS spoof is a group of its own: its voice is its system, and
    holding out voices would make those systems unseen. Groups are taken in a seeded random
    order while they fit under the target count.
    """
    if share <= 0:
        return list(rows), []
    source_of = copy_sources(rows)
    group = {}
    for i, r in enumerate(rows):
        if r.is_bonafide:
            group[i] = f"speaker:{r.speaker}" if r.speaker else f"clip:{r.path}"
    for i, r in enumerate(rows):
        if not r.is_bonafide:
            group[i] = group[source_of[i]] if i in source_of else f"clip:{r.path}"
    members: dict[str, list[int]] = {}
    for i in range(len(rows)):
        members.setdefault(group[i], []).append(i)
    keys = sorted(members)
    np.random.default_rng(seed).shuffle(keys)
    target, held = round(share * len(rows)), []
    for key in keys:
        if len(held) + len(members[key]) <= target:
            held.extend(members[key])
    held_set = set(held)
    seen_rows = [rows[i] for i in sorted(held_set)]
    if len({r.is_bonafide for r in seen_rows}) < 2:
        raise DataError(f"a {share:.0%} hold-out of the training split has only one class",
                        hint="raise --seen-share, or pass --seen-share 0 to leave the seen column empty")
    return [r for i, r in enumerate(rows) if i not in held_set], seen_rows


def eer_of(scored, keep: set[str] | None = None) -> float | None:
    """EER of all bona fide against the spoofs of ``keep`` systems (None = every spoof)."""
    spoof = (scored.labels != 0) & np.array([keep is None or s in keep for s in scored.systems])
    if not spoof.any() or not (scored.labels == 0).any():
        return None
    return compute_eer(scored.scores[scored.labels == 0], scored.scores[spoof])[0]


def best_epoch(metrics_csv: Path) -> int:
    """The epoch the training loop kept as ``best.pt``: the first with the lowest validation loss."""
    try:
        with open(metrics_csv, newline="", encoding="utf-8") as f:
            rows = [(float(r["val_loss"]), int(r["epoch"])) for r in csv.DictReader(f)]
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"cannot read the epochs of a run: {e}", path=metrics_csv,
                        hint="rerun this variant in a new --runs folder") from e
    if not rows:
        raise DataError("the run logged no epoch", path=metrics_csv, hint="rerun this variant in a new --runs folder")
    return min(rows, key=lambda r: r[0])[1]


def bench_variant(name: str, args, parts: dict[str, list], held: set[str]) -> dict:
    out = Path(args.runs) / name
    row_file = out / "table_row.json"
    settings = {k: getattr(args, k) for k in ("max_epochs", "batch_size", "seed", "seen_share", "max_train_files",
                                              "max_val_files", "norm_windows")}
    if row_file.exists():
        row = json.loads(row_file.read_text(encoding="utf-8"))
        if row.get("settings") != settings:
            raise DataError(f"this run was made with other settings: {row.get('settings')}", path=row_file,
                            hint="pass the same settings, or a new --runs folder")
        return {**row, "best_epoch": best_epoch(out / "metrics.csv")}
    cfg = TrainConfig(architecture=name, manifest=str(args.manifest), batch_size=args.batch_size,
                      max_epochs=args.max_epochs, num_workers=args.workers, seed=args.seed,
                      max_train_files=args.max_train_files, max_val_files=args.max_val_files,
                      norm_stats_windows=args.norm_windows, progress=not args.quiet)
    prepared = prepare(cfg, train_rows=parts["train"], val_rows=parts["dev"])
    started = time.perf_counter()
    trainer = run(cfg, out, resume=(out / "last.pt").exists(), prepared=prepared)
    wall = time.perf_counter() - started
    train_seconds = sum(h["seconds"] for h in trainer.state.history) or wall
    model, meta = load_checkpoint(out / "best.pt")
    scored = {}
    for part in ("seen", "dev", "test"):
        if parts[part]:
            data = ds.WindowDataset(parts[part], meta["feature_spec"], train=False, systems=meta["systems"])
            scored[part] = score_dataset(model, data, num_workers=args.workers)
    exported = model.export_module() if hasattr(model, "export_module") else model
    params = registry.count_params(exported)
    macs = registry.count_macs(exported, registry.get(name).input_shape)
    result = {"name": name, "params": params, "mflops": 2 * macs / 1e6, "kb": params * 4 / 1024,
              "eer_seen": eer_of(scored["seen"]) if "seen" in scored else None,
              "eer_held": eer_of(scored["dev"], held) if "dev" in scored else None,
              "eer_test": eer_of(scored["test"]) if "test" in scored else None,
              "epochs": trainer.state.epoch, "best_epoch": best_epoch(out / "metrics.csv"), "train_s": train_seconds,
              "paper_params": registry.get(name).paper.get("params"), "settings": settings}
    row_file.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def fmt_pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def table(args, parts: dict[str, list], held: set[str], results: list[dict]) -> str:
    seen_bona = sum(r.is_bonafide for r in parts["seen"])
    seen_systems = sorted({r.system for r in parts["seen"] if not r.is_bonafide})
    lines = [
        f"# EfficientCNN family on `{args.manifest.name}`",
        "",
        f"Trained with `benchmarks/efficientcnn_table.py` (batch {args.batch_size}, at most {args.max_epochs} epochs, "
        f"{min(len(parts['train']), args.max_train_files or len(parts['train']))} training files, validation files {args.max_val_files or 'all'} of "
        f"`{args.eval_split}`, no augmentation, seed {args.seed}, {torch.get_num_threads()} CPU threads; "
        f"command: `{' '.join(sys.argv)}`). Parameters and size are of the exported model (no multi-task head); "
        "MFLOPs = 2 x conv+linear MACs for one 4-s window; one centred 4-s window per file is scored.",
        "",
        f"- EER seen: {seen_bona} bona fide and {len(parts['seen']) - seen_bona} spoof files of the training split "
        f"held out of training by speaker (`--seen-share {args.seen_share}`), spoofs of {len(seen_systems)} "
        f"training systems: {', '.join(seen_systems) or 'none'}.",
        f"- EER held-out: `{args.eval_split}` bona fide against its systems that training never saw: "
        f"{', '.join(sorted(held))}. The `{args.eval_split}` split also chose the best epoch and the "
        "learning-rate cuts, so this column is optimistic.",
        f"- EER test: every `{args.test_split}` file, pooled; its systems and speakers are in no other split.",
        "",
        "| variant | params | paper params | MFLOPs | size (KB, fp32) | EER seen (%) | EER held-out (%) "
        "| EER test (%) | epochs | best epoch | train wall time on CPU (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| `{r['name']}` | {r['params']:,} | {r['paper_params']:,} | {r['mflops']:.1f} | "
                     f"{r['kb']:.1f} | {fmt_pct(r['eer_seen'])} | {fmt_pct(r['eer_held'])} | "
                     f"{fmt_pct(r.get('eer_test'))} | {r['epochs']} | {r['best_epoch']} | {r['train_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True, type=Path, help="corpus manifest (train, dev and test splits)")
    p.add_argument("--runs", required=True, type=Path, help="folder for one run folder per variant")
    p.add_argument("--out", required=True, type=Path, help="markdown table to write")
    p.add_argument("--variants", nargs="*", default=VARIANTS)
    p.add_argument("--eval-split", default="dev", help="split of the held-out systems (also validation)")
    p.add_argument("--test-split", default="test", help="split scored pooled ('' = none)")
    p.add_argument("--seen-share", type=float, default=0.15,
                   help="share of the training split held out by speaker for the seen column (0 = none)")
    p.add_argument("--max-epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-train-files", type=int, default=0, help="0 = all")
    p.add_argument("--max-val-files", type=int, default=0, help="0 = all")
    p.add_argument("--norm-windows", type=int, default=512)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if not 0 <= args.seen_share < 1:
        raise DataError(f"--seen-share {args.seen_share} is not in [0, 1)", hint="e.g. --seen-share 0.15")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = ds.read_rows(args.manifest)
    if not any(r.split == "train" for r in rows):
        raise DataError("no train rows in the manifest", path=args.manifest, hint="build the corpus with a train split")
    train, seen_rows = seen_holdout([r for r in rows if r.split == "train"], args.seen_share, args.seed)
    parts = {"train": train, "seen": seen_rows, "dev": [r for r in rows if r.split == args.eval_split],
             "test": [r for r in rows if args.test_split and r.split == args.test_split]}
    train_systems = {r.system for r in rows if r.split == "train" and not r.is_bonafide}
    held = {r.system for r in parts["dev"] if not r.is_bonafide} - train_systems
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.variants:
        print(f"== {name}", flush=True)
        results.append(bench_variant(name, args, parts, held))
        args.out.write_text(table(args, parts, held, results), encoding="utf-8")
    print(args.out.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "efficientcnn_table.py"))
