"""Interpolate the weights of a fine-tuned detector and the model it started from (WiSE-FT), or average
several fine-tunes of one start (a model soup).

``edge-cm-train interpolate --start bundles/default_nolevel --end runs/ft/best.pt --alpha 0.5 --out runs/ft/mid.pt``

Wortsman et al. (2022, "Robust fine-tuning of zero-shot models") found that the weight-space
mix ``(1 - alpha) * start + alpha * end`` of a model and its fine-tuned copy often keeps what the
start did well under distribution shift while gaining what fine-tuning taught. It only makes
sense along one fine-tuning path: two models trained apart from different random weights do
not share a basin, and their mix is noise. So both must be the same architecture with the same
front end and source classes (the fine-tuned run's ``init_from`` gives that).

With several ``--end`` checkpoints the end is their uniform weight mean, a "model soup" (Wortsman et
al. 2022, "Model soups"): fine-tunes of one start with different seeds stay in its basin, and their
mean cancels part of each one's seed noise at no cost in parameters. ``--alpha 1`` writes the soup
itself. Every end must record the same ``init_from``.

Every floating-point weight is mixed; BatchNorm statistics are then recomputed on the end
run's training batches (``precise_bn_batches`` of its config), because a mix of two sets of
running statistics does not describe the mixed weights' activations. The result is a
checkpoint that ``edge-cm-train release`` and ``eval`` accept; its ``metrics`` hold the
validation loss and EER of the mix, and ``alpha``, ``start`` and ``end`` (a list with several ends).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

import torch

from edge_cm.errors import DataError


def check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0 or not math.isfinite(alpha):
        raise DataError(f"alpha must be in [0, 1], got {alpha}", hint="0 = the start, 1 = the fine-tuned model")


def mix_states(start: dict, end: dict, alpha: float, source: str | Path) -> dict:
    """``(1 - alpha) * start + alpha * end`` for floating-point tensors; integer buffers (BatchNorm's
    batch counters) are taken from ``end``. Different keys or shapes are a :class:`DataError`."""
    check_alpha(alpha)
    if set(start) != set(end):
        diff = sorted(set(start) ^ set(end))[:5]
        raise DataError(f"the two models have different layers ({', '.join(diff)})", path=source,
                        hint="interpolate a fine-tuned model with the model it started from")
    mixed = {}
    for name, b in end.items():
        a = start[name]
        if a.shape != b.shape:
            raise DataError(f"layer {name} has shape {tuple(a.shape)} in the start and {tuple(b.shape)} in the end",
                            path=source, hint="interpolate a fine-tuned model with the model it started from")
        mixed[name] = torch.lerp(a.float(), b.float(), alpha).to(b.dtype) if b.is_floating_point() else b.clone()
    return mixed


def soup_states(states: list[dict], sources: list[str | Path]) -> dict:
    """The uniform mean of several state dicts, as a running mean of :func:`mix_states` (the k-th state
    weighs 1/k), so the same key and shape checks name the offending file."""
    mean = states[0]
    for k, (state, source) in enumerate(zip(states[1:], sources[1:]), start=2):
        mean = mix_states(mean, state, 1.0 / k, source)
    return mean


def same_start(ends: list[dict], paths: list[str | Path]) -> None:
    """Fine-tunes averaged into one soup must have started from the same weights (their ``init_from``)."""
    starts = [str(e.get("config", {}).get("init_from") or "") for e in ends]
    for path, init in zip(paths, starts):
        if not init:
            raise DataError("this end was not fine-tuned from a start (its config has no init_from)", path=path,
                            hint="average only runs trained with --init-from the same model")
        if Path(init).resolve() != Path(starts[0]).resolve():
            raise DataError(f"this end started from {init}, the first from {starts[0]}", path=path,
                            hint="average only fine-tunes of one start: runs of different starts share no basin")


def interpolate(start: str | Path, end: str | Path | list, alpha: float, out: str | Path, *,
                manifest: str | None = None, num_workers: int | None = None) -> dict:
    """Write the mix of ``start`` and ``end`` (one checkpoint, or a list whose weights are averaged first)
    to ``out`` with recomputed BatchNorm statistics; returns its validation metrics (on the first end
    run's validation split, with its config's BatchNorm batches)."""
    from training.train import Trainer, load_weights, prepare, read_checkpoint, require_keys

    from edge_cm.features import FeatureSpec
    from training.config import TrainConfig

    check_alpha(alpha)  # before any file is read
    out = Path(out)
    if out.exists():
        raise DataError("the output file already exists", path=out, hint="choose a new --out")
    ends = [Path(e) for e in end] if isinstance(end, (list, tuple)) else [Path(end)]
    if not ends:
        raise DataError("no end checkpoint given", hint="pass --end with the fine-tuned run's best.pt")
    if len({e.resolve() for e in ends}) < len(ends):
        raise DataError("the same end is given twice", path=ends[0], hint="pass each fine-tuned run once")
    a = read_checkpoint(start)
    require_keys(a, ("architecture", "model_state", "feature_spec"), start)
    bs = [read_checkpoint(e) for e in ends]
    for b, path in zip(bs, ends):
        require_keys(b, ("architecture", "model_state", "feature_spec", "config"), path)
        same = {"architecture": a.get("architecture") == b.get("architecture"),
                "systems": a.get("systems") == b.get("systems"),
                "feature_spec": FeatureSpec.from_dict(a["feature_spec"]) == FeatureSpec.from_dict(b["feature_spec"])}
        for key, equal in same.items():
            if not equal:
                raise DataError(f"the start and the end differ in {key}", path=path,
                                hint="interpolate a fine-tuned model with the model it started from (its init_from)")
    if len(bs) > 1:
        same_start(bs, ends)
    b, end = bs[0], ends[0]
    cfg = TrainConfig.from_dict(b["config"], source=end)
    if not manifest and not Path(cfg.manifest).is_file():
        raise DataError(f"the end's training manifest {cfg.manifest} is not on this machine", path=end,
                        hint="pass --manifest with the corpus the end was trained on (its BatchNorm batches)")
    cfg = replace(cfg, manifest=manifest or cfg.manifest, progress=False,
                  num_workers=cfg.num_workers if num_workers is None else num_workers)
    if cfg.precise_bn_batches <= 0:
        raise DataError("the end run's config keeps running BatchNorm averages (precise_bn_batches 0)", path=end,
                        hint="the mix needs its BatchNorm statistics recomputed; train with precise_bn_batches > 0")
    prepared = prepare(cfg, feature_spec=FeatureSpec.from_dict(b["feature_spec"]), systems=b.get("systems") or None)
    soup = soup_states([e["model_state"] for e in bs], ends)
    load_weights(prepared.model, mix_states(a["model_state"], soup, alpha, end), end)
    trainer = Trainer(cfg, prepared.model, prepared.train_set, prepared.val_set, out.parent, meta=prepared.meta)
    trainer.recalibrate_batchnorm(epoch=0)
    metrics = trainer.validate()
    ended = [str(e) for e in ends] if len(ends) > 1 else str(end)
    trainer.save(out, dict(metrics, alpha=alpha, start=str(start), end=ended))
    return metrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edge-cm-train interpolate", description=__doc__.splitlines()[0])
    p.add_argument("--start", required=True, help="the model fine-tuning started from (checkpoint or bundle)")
    p.add_argument("--end", required=True, nargs="+",
                   help="the fine-tuned checkpoint (its run's best.pt); several: their weight mean (a model soup)")
    p.add_argument("--alpha", type=float, required=True, help="0 = the start, 1 = the end (or soup); WiSE-FT: 0.5")
    p.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    p.add_argument("--manifest", help="override the end run's manifest (training batches for BatchNorm, validation)")
    p.add_argument("--workers", type=int)
    args = p.parse_args(argv)
    m = interpolate(args.start, args.end, args.alpha, args.out, manifest=args.manifest, num_workers=args.workers)
    print(f"alpha {args.alpha}: val loss {m['val_loss']:.4f}, EER {100 * m['val_eer']:.2f}%; {args.out}")
    return 0
