"""Fine-tune a trained detector on a fraction of a new attack's data (transfer learning).

``edge-cm-train adapt --from RUN/best.pt --bonafide B.csv --spoof S.csv --fraction 0.25 --out DIR``

``--from`` takes a checkpoint or a bundle folder that carries training weights (every
bundle made by ``edge-cm-train release`` or ``edge-cm-export --checkpoint``, the bundled
default model included): ``--from edge_cm/assets/models/default``.

* Adaptation data: ``fraction`` of the ``train`` rows of each manifest (a deterministic,
  seeded choice, at least one file of each), validation on their ``dev`` rows.
* Starts from the checkpoint's weights, feature spec (normalisation stats included) and
  source classes; a new spoof system has no source class, so the source loss skips it.
* Same loop as training (:class:`training.train.Trainer`): Adam at ``--lr`` (default: the
  checkpoint's lr / 10), lr halved on plateaus, best checkpoint by validation loss.
* ``--scratch`` trains the same architecture from random weights on the same data
  instead (the baseline of the adaptation curve); it computes its own normalisation stats.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_cm.errors import DataError
from training import dataset as ds


def take_fraction(rows: list, fraction: float, seed: int) -> list:
    """A seeded ``fraction`` of ``rows`` (at least one), kept in manifest order."""
    if not 0 < fraction <= 1:
        raise DataError(f"fraction must be in (0, 1], got {fraction}")
    if not rows:
        return []
    n = max(1, math.ceil(fraction * len(rows) - 1e-9))
    keep = np.random.default_rng(seed).permutation(len(rows))[:n]
    return [rows[i] for i in sorted(keep.tolist())]


def adapt(checkpoint: str | Path, bonafide_rows: list, spoof_rows: list, fraction: float, out_dir: str | Path, *,
          lr: float | None = None, max_epochs: int | None = None, seed: int | None = None,
          batch_size: int | None = None, num_workers: int | None = None, scratch: bool = False,
          progress: bool = True):
    """Fine-tune (or with ``scratch`` train afresh) on ``fraction`` of the rows; returns the Trainer."""
    from training.train import Trainer, prepare, prepare_from, read_checkpoint, seed_everything
    from training.config import TrainConfig
    from edge_cm.features import FeatureSpec

    ckpt = read_checkpoint(checkpoint)
    base = TrainConfig.from_dict(ckpt["config"], source=checkpoint)
    seed = base.seed if seed is None else seed
    train_rows = (take_fraction([r for r in bonafide_rows if r.split == "train"], fraction, seed)
                  + take_fraction([r for r in spoof_rows if r.split == "train"], fraction, seed + 1))
    val_rows = [r for r in bonafide_rows + spoof_rows if r.split == "dev"]
    # a model trained with babble keeps it, mixed from all train-split bona fide clips, not the sample
    babble_rows = [r for r in bonafide_rows if r.split == "train"]
    spec = FeatureSpec.from_dict(ckpt["feature_spec"])
    # A levelled front end (from level_norm or release --level-dbfs) is part of the model: scratch keeps it too.
    cfg = replace(base, seed=seed, lr=lr if lr is not None else (base.lr if scratch else base.lr / 10),
                  max_epochs=max_epochs or base.max_epochs, batch_size=batch_size or base.batch_size,
                  num_workers=base.num_workers if num_workers is None else num_workers,
                  max_train_files=0, max_val_files=0, progress=progress,
                  level_norm=base.level_norm or spec.level_dbfs is not None,
                  init_from="" if scratch else str(checkpoint))
    if scratch:
        prepared = prepare(cfg, systems=ckpt.get("systems") or None, train_rows=train_rows, val_rows=val_rows,
                           babble_rows=babble_rows)
    else:
        prepared = prepare_from(cfg, checkpoint, train_rows=train_rows, val_rows=val_rows, babble_rows=babble_rows)
    out = Path(out_dir)
    if (out / "last.pt").exists():
        raise DataError("the output folder already holds a checkpoint", path=out, hint="choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    meta = dict(prepared.meta, adapted_from=str(checkpoint), fraction=fraction, scratch=scratch)
    trainer = Trainer(cfg, prepared.model, prepared.train_set, prepared.val_set, out, meta=meta)
    seed_everything(seed)
    trainer.fit()
    return trainer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edge-cm-train adapt", description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="checkpoint", required=True, help="trained checkpoint (best.pt) or bundle folder "
                   "with training weights")
    p.add_argument("--bonafide", required=True, help="manifest of bona fide speech (train/dev splits)")
    p.add_argument("--spoof", required=True, help="manifest of the new attack's speech (train/dev splits)")
    p.add_argument("--system", action="append", help="only these spoof systems of --spoof (repeatable)")
    p.add_argument("--fraction", type=float, required=True, help="share of the train rows to adapt on, (0, 1]")
    p.add_argument("--out", required=True, help="output run folder")
    p.add_argument("--lr", type=float, help="learning rate (default: checkpoint's / 10; --scratch: checkpoint's)")
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--scratch", action="store_true", help="train from random weights instead (baseline)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    bona = [r for r in ds.read_rows(args.bonafide) if r.is_bonafide]
    spoof = [r for r in ds.read_rows(args.spoof) if not r.is_bonafide]
    if args.system:
        spoof = [r for r in spoof if r.system in set(args.system)]
    if not bona or not spoof:
        raise DataError("need bona fide rows in --bonafide and spoof rows in --spoof",
                        path=args.spoof if bona else args.bonafide)
    trainer = adapt(args.checkpoint, bona, spoof, args.fraction, args.out, lr=args.lr, max_epochs=args.max_epochs,
                    seed=args.seed, batch_size=args.batch_size, num_workers=args.workers, scratch=args.scratch,
                    progress=not args.no_progress)
    best = min(trainer.state.history, key=lambda h: h["val_loss"])
    print(f"{'trained from scratch' if args.scratch else 'adapted'} on {len(trainer.train_set)} files: "
          f"best val loss {best['val_loss']:.4f}, EER {100 * best['val_eer']:.2f}% (epoch {best['epoch']}); "
          f"{args.out}/best.pt")
    return 0
