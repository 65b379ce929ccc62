"""The training loop every model family shares, and ``edge-cm-train train --config CFG --out DIR``.

* Adam (lr 1e-3), batches of 128, cross-entropy weighted by inverse class frequency
  (multi-task models: plus the source cross-entropy), ReduceLROnPlateau halving the
  learning rate on the validation loss; training stops when the rate falls below
  ``min_lr`` (1e-5) or after ``max_epochs``; ``lr_hold_epochs`` keeps the rate for that many
  epochs before the plateau rule starts. Optionally (``lr_schedule: cosine``) the rate
  follows a cosine from ``lr`` to ``min_lr`` over ``max_epochs`` instead.
* The run folder holds ``config.yaml`` (a copy of the config), ``metrics.csv`` (one row
  per epoch), ``last.pt`` (resume point) and ``best.pt`` (lowest validation loss).
* Optional weight averaging (``ema_decay``): validation and ``best.pt`` use an exponential
  moving average of the weights; ``last.pt`` keeps the raw weights and the average.
* Optional sharpness-aware minimisation (``sam_rho``, :mod:`training.sharpness`).
* Resumable to the step: a checkpoint holds model, optimiser, scheduler, RNG states and
  the position (epoch, batch within the epoch); data randomness is a function of
  (seed, epoch, index) (see :mod:`training.dataset`), so a resumed run takes exactly the
  step an uninterrupted one would.

Other families plug in through :class:`Trainer`: any ``nn.Module`` whose forward returns
logits (or a tuple starting with them) and any ``loss_fn(outputs, batch) -> (loss, parts)``.
Checkpoint format (``torch.load(..., weights_only=True)`` reads it): a dict with
``config``, ``model_state``, ``architecture``, ``model_args``, ``feature_spec``
(``FeatureSpec.to_dict()``, with the global normalisation stats), ``classes``, ``systems``,
``metrics`` and ``train_state``. :func:`load_checkpoint` rebuilds the model.
"""
from __future__ import annotations

import argparse
import csv
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_cm.errors import DataError
from edge_cm.features import FeatureSpec
from training import babble
from training import dataset as ds
from training.config import CLASSES, TrainConfig, load_config
from training.mixup import mix_batch
from training.models import registry
from training.models.one_class import OneClassLoss, one_class_head_of
from training.sharpness import sam_step
from training.system_tilt import SystemTilt
from training.weight_average import WeightAverage

CHECKPOINT_VERSION = 1
METRIC_FIELDS = ("epoch", "global_step", "lr", "train_loss", "val_loss", "val_eer", "val_acc", "seconds")

LossFn = Callable[[Any, dict], tuple[torch.Tensor, dict]]


def logits_of(outputs: Any) -> torch.Tensor:
    """The veracity logits of a model's output (the first item of a tuple)."""
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def bonafide_score(logits: torch.Tensor) -> torch.Tensor:
    """Higher = more bona fide: ``logits[:, 0] - logsumexp(logits[:, 1:])`` (the runtime's
    spoof score before its sigmoid, negated)."""
    return logits[:, 0] - torch.logsumexp(logits[:, 1:], dim=1)


def inverse_frequency_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """``N / (C * n_c)`` per class (classes absent from the data get weight 0)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def family_weight_summary(rows, systems: list[str], weights: torch.Tensor) -> str:
    """One line per spoofing family of ``rows``: its example weight and clip count (the run prints it)."""
    counts: dict[str, int] = {}
    weight_of: dict[str, float] = {}
    for r in rows:
        if not r.is_bonafide:
            counts[r.family] = counts.get(r.family, 0) + 1
            weight_of[r.family] = float(weights[systems.index(r.system)]) if r.system in systems else 1.0
    return ", ".join(f"{family} {weight_of[family]:.2f} ({counts[family]:,} clips)" for family in sorted(counts))


def family_balanced_source_weights(rows, systems: list[str], power: float = 1.0) -> torch.Tensor:
    """Per-source weights (index into ``systems``) that rebalance the spoofing families of ``rows`` (the
    manifest's ``family``: tts, vocoder, codec, ...) within the spoof class: a system of family ``f`` with
    ``n_f`` clips weighs ``N_spoof * n_f ** -power / sum_g n_g ** (1 - power)``, so family ``f``'s share of
    the spoof class is proportional to ``n_f ** (1 - power)``: ``power`` 1 gives every family the same share,
    0.5 a share proportional to the square root of its clip count, 0 changes nothing. Bona fide (``none``)
    and systems not in ``rows`` weigh 1. The spoof class's total weight is unchanged. Spoofs whose family is
    ``unknown`` count as one more family."""
    spoofs = [r for r in rows if not r.is_bonafide]
    family_of = {r.system: r.family for r in spoofs}
    counts: dict[str, int] = {}
    for r in spoofs:
        counts[r.family] = counts.get(r.family, 0) + 1
    total = sum(n ** (1.0 - power) for n in counts.values())
    weights = [len(spoofs) * counts[family_of[name]] ** -power / total if name in family_of else 1.0
               for name in systems]
    return torch.tensor(weights, dtype=torch.float32)


def system_tilt(cfg: TrainConfig, train_set) -> SystemTilt:
    """The :class:`SystemTilt` of ``cfg.system_tilt`` over ``train_set``'s sources, each spoofing system's
    share its number of training clips."""
    shares = torch.zeros(len(train_set.systems))
    for row in train_set.rows:
        index = train_set.source_of(row)
        if not row.is_bonafide and index != ds.IGNORE_INDEX:
            shares[index] += 1
    return SystemTilt(shares, cfg.system_tilt, cfg.system_tilt_decay)


@dataclass
class ClassificationLoss:
    """Weighted cross-entropy on the veracity logits (or, with ``one_class_margin``, the
    weighted OC-Softmax loss of a one-class head, :mod:`training.models.one_class`), plus
    (multi-task) ``source_weight`` x the cross-entropy of the source logits (targets of -100
    are skipped). ``example_weights`` (per source index, :func:`family_balanced_source_weights`)
    further weight each example of the veracity term by its source; sources of -100 weigh 1.
    ``tilt`` (:class:`~training.system_tilt.SystemTilt`) takes their place with weights that follow each
    training system's recent loss; it learns from the batches of training steps only (gradients on),
    not from validation."""

    class_weights: torch.Tensor | None = None
    source_weight: float = 1.0
    one_class_margin: float | None = None
    example_weights: torch.Tensor | None = None
    tilt: SystemTilt | None = None

    def __call__(self, outputs: Any, batch: dict) -> tuple[torch.Tensor, dict]:
        logits = logits_of(outputs)
        if self.example_weights is not None or self.tilt is not None:
            loss = self._example_weighted_ce(logits, batch)
        elif self.one_class_margin is None:
            loss = F.cross_entropy(logits, batch["label"], weight=self.class_weights)
        else:
            loss = OneClassLoss(self.one_class_margin, self.class_weights)(logits, batch["label"])
        parts = {"ce": float(loss.detach())}
        if isinstance(outputs, (tuple, list)) and len(outputs) > 1 and self.source_weight > 0:
            target = batch["source"]
            if (target != ds.IGNORE_INDEX).any():
                src = F.cross_entropy(outputs[1], target, ignore_index=ds.IGNORE_INDEX)
                loss = loss + self.source_weight * src
                parts["source_ce"] = float(src.detach())
        return loss, parts

    def _example_weighted_ce(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        # The weighted mean of F.cross_entropy(weight=...), with each example's class weight
        # multiplied by its source's, so equal example weights give the class-weighted loss exactly.
        label, source = batch["label"], batch["source"]
        known = source != ds.IGNORE_INDEX
        by_source = self.tilt.weights() if self.tilt is not None else self.example_weights
        w = torch.where(known, by_source[source.clamp(min=0)], torch.ones_like(source, dtype=logits.dtype))
        if self.class_weights is not None:
            w = w * self.class_weights[label]
        ce = F.cross_entropy(logits, label, reduction="none")
        if self.tilt is not None and torch.is_grad_enabled():
            self.tilt.observe(ce, source)  # after use: a batch's weights never depend on its own losses
        return (w * ce).sum() / w.sum()


@dataclass
class TrainState:
    """Where training is: the next batch to train is ``batch`` of ``epoch`` (both from 0)."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    best_val_loss: float = math.inf
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    finished: bool = False
    history: list = field(default_factory=list)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """One training run: model, optimiser, scheduler, data and the run folder.

    Args:
        cfg: the run's config.
        model: the network (built from ``cfg.architecture`` by :func:`prepare` usually).
        train_set, val_set: :class:`training.dataset.WindowDataset` (or any dataset taking
            ``(index, epoch)`` keys and returning dicts with ``features``/``label``/``source``).
        out_dir: the run folder.
        loss_fn: ``loss_fn(outputs, batch) -> (loss, parts)``; default weighted CE.
        meta: extra checkpoint entries (``architecture``, ``model_args``, ``feature_spec``,
            ``classes``, ``systems``).
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, train_set, val_set, out_dir: str | Path, *,
                 loss_fn: LossFn | None = None, meta: dict | None = None):
        self.cfg = cfg
        self.model = model
        self.train_set, self.val_set = train_set, val_set
        self.out_dir = Path(out_dir)
        self.meta = dict(meta or {})
        self.tilt: SystemTilt | None = None
        if loss_fn is None:
            n_classes = len(self.meta.get("classes", CLASSES))
            weights = (inverse_frequency_weights(train_set.labels(), n_classes)
                       if cfg.class_weighting != "none" else None)
            example_weights = (family_balanced_source_weights(train_set.rows, train_set.systems,
                                                              cfg.family_power)
                               if cfg.class_weighting == "family_balanced" else None)
            # A one-class head brings its own loss: cross-entropy on its bounded logits would
            # ignore the margins that make it one-class.
            head = one_class_head_of(model)
            if head is not None and example_weights is not None:
                raise DataError("class_weighting: family_balanced weights the cross-entropy; a one-class head "
                                "has its own loss", hint="use class_weighting: inverse_frequency with a one-class head")
            if head is not None and cfg.system_tilt > 0:
                raise DataError("system_tilt weights the cross-entropy; a one-class head has its own loss",
                                hint="set system_tilt: 0 with a one-class head")
            self.tilt = system_tilt(cfg, train_set) if cfg.system_tilt > 0 else None
            loss_fn = ClassificationLoss(weights, cfg.source_loss_weight,
                                         one_class_margin=head.margin if head is not None else None,
                                         example_weights=example_weights, tilt=self.tilt)
            if cfg.teachers:
                from training.distill import DistillationLoss, load_teachers
                from training.resnetse.kd import KDConfig

                spec = FeatureSpec.from_dict(self.meta["feature_spec"])
                loss_fn = DistillationLoss(loss_fn, load_teachers(cfg.teachers, spec),
                                           KDConfig(cfg.kd_temperature, cfg.kd_weight))
        self.loss_fn = loss_fn
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience)
        self.state = TrainState()
        self.weight_average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        # channels_last runs the small-channel, large-map convolutions of these models ~1.7x
        # faster on CPU (measured on EfficientCNN SMALL, batch 32); numerics are unchanged.
        self.model.to(memory_format=torch.channels_last)

    def forward(self, features: torch.Tensor):
        if features.dim() == 4:
            features = features.contiguous(memory_format=torch.channels_last)
        return self.model(features)

    # -- one step ------------------------------------------------------------------
    def train_step(self, batch: dict) -> float:
        """One optimiser step on ``batch``; returns the loss before the step."""
        self.model.train()
        features, other, lam = batch["features"], None, 1.0
        if self.cfg.mixup_alpha > 0:  # drawn once, so SAM's two passes see the same mix
            features, other, lam = mix_batch(batch, self.cfg.mixup_alpha)

        def batch_loss() -> torch.Tensor:
            outputs = self.forward(features)
            loss = self.loss_fn(outputs, batch)[0]
            return loss if other is None else lam * loss + (1.0 - lam) * self.loss_fn(outputs, other)[0]

        if self.cfg.sam_rho > 0:
            loss = sam_step(self.model, self.optimizer, batch_loss, self.cfg.sam_rho, adaptive=self.cfg.sam_adaptive)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            loss = batch_loss()
            loss.backward()
            self.optimizer.step()
        if self.weight_average is not None:
            self.weight_average.update(self.model)
        self.state.global_step += 1
        return float(loss.detach())

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_epoch_lr(self, epoch: int) -> None:
        """Cosine schedule: the rate of 0-based ``epoch`` (a function of the epoch only, so a resumed
        run gets the same rate). Plateau schedule: nothing to do (the scheduler acts after validation)."""
        if self.cfg.lr_schedule != "cosine":
            return
        cfg = self.cfg
        rate = cfg.min_lr + (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * epoch / cfg.max_epochs)) / 2.0
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def train_loader(self, epoch: int, start_batch: int = 0):
        return ds.make_loader(self.train_set, self.cfg.batch_size, epoch=epoch, seed=self.cfg.seed, shuffle=True,
                              num_workers=self.cfg.num_workers, start_batch=start_batch,
                              max_batches=self.cfg.max_steps_per_epoch)

    @torch.no_grad()
    def recalibrate_batchnorm(self, epoch: int) -> None:
        """Replace BatchNorm running statistics by exact averages over training batches.

        The running averages lag behind weights that still move fast (lr 1e-3); with the
        EfficientCNN's BatchNorm-after-ReLU layers the lag alone took eval-mode accuracy to
        chance on a batch the model fits at 98 % in train mode. Dropout stays off and the
        batches come from their own seeded loader, so no RNG stream moves (resume stays exact).
        """
        n = self.cfg.precise_bn_batches
        bns = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if n <= 0 or not bns:
            return
        saved = [(m, m.momentum) for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        self.model.eval()
        for m in bns:
            m.train()
        loader = ds.make_loader(self.train_set, self.cfg.batch_size, epoch=epoch, seed=self.cfg.seed + 7919,
                                shuffle=True, num_workers=self.cfg.num_workers, max_batches=n)
        for batch in loader:
            self.forward(batch["features"])
        for m, momentum in saved:
            m.momentum = momentum
        self.model.eval()

    # -- validation --------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict:
        """Validation loss (same loss as training), pooled EER and accuracy."""
        from edge_cm.metrics import compute_eer

        self.model.eval()
        total, n, scores, labels, correct = 0.0, 0, [], [], 0
        loader = ds.make_loader(self.val_set, self.cfg.batch_size, shuffle=False, num_workers=self.cfg.num_workers)
        for batch in loader:
            out = self.forward(batch["features"])
            loss, _ = self.loss_fn(out, batch)
            b = batch["label"].numel()
            total += float(loss) * b
            n += b
            logits = logits_of(out)
            correct += int((logits.argmax(1) == batch["label"]).sum())
            scores.append(bonafide_score(logits).numpy())
            labels.append(batch["label"].numpy())
        s, y = np.concatenate(scores), np.concatenate(labels)
        eer = compute_eer(s[y == 0], s[y != 0])[0] if (y == 0).any() and (y != 0).any() else float("nan")
        return {"val_loss": total / n, "val_eer": eer, "val_acc": correct / n}

    # -- checkpoints ---------------------------------------------------------------
    def checkpoint(self, metrics: dict | None = None) -> dict:
        s = self.state
        return {
            "version": CHECKPOINT_VERSION,
            "config": self.cfg.to_dict(),
            "model_state": self.model.state_dict(),
            "architecture": self.meta.get("architecture", self.cfg.architecture),
            "model_args": self.meta.get("model_args", {}),
            "feature_spec": self.meta.get("feature_spec"),
            "classes": list(self.meta.get("classes", CLASSES)),
            "systems": list(self.meta.get("systems", [])),
            "metrics": dict(metrics or {}),
            "train_state": {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": _rng_state(),
                "epoch": s.epoch, "batch": s.batch, "global_step": s.global_step,
                "best_val_loss": s.best_val_loss, "epoch_loss_sum": s.epoch_loss_sum,
                "epoch_loss_count": s.epoch_loss_count, "finished": s.finished, "history": s.history,
                "weight_average": None if self.weight_average is None else self.weight_average.state_dict(),
                "tilt": None if self.tilt is None else self.tilt.state_dict(),
            },
        }

    def save(self, path: str | Path, metrics: dict | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.checkpoint(metrics), tmp)
        tmp.replace(path)  # atomic: a crash never leaves half a checkpoint
        return path

    def load(self, path: str | Path) -> None:
        """Restore model, optimiser, scheduler, RNG and position from a checkpoint written by :meth:`save`."""
        ckpt = read_checkpoint(path)
        self.model.load_state_dict(ckpt["model_state"])
        ts = ckpt["train_state"]
        self.optimizer.load_state_dict(ts["optimizer"])
        self.scheduler.load_state_dict(ts["scheduler"])
        _set_rng_state(ts["rng"])
        if self.weight_average is not None:
            if ts.get("weight_average"):
                try:
                    self.weight_average.load_state_dict(ts["weight_average"])
                except KeyError as exc:
                    raise DataError(str(exc), path=path, hint="resume with the run's own config") from exc
            else:  # a run made without averaging: start the average at the loaded weights
                self.weight_average = WeightAverage(self.model, self.cfg.ema_decay)
        if self.tilt is None and ts.get("tilt"):
            raise DataError("this run was trained with system_tilt, the config does not set it", path=path,
                            hint="resume with the run's own config (its config.yaml); to go on without the tilt, "
                                 "start a new run with --init-from")
        if self.tilt is not None:
            if not ts.get("tilt"):
                raise DataError("this run was not trained with system_tilt, the config sets it", path=path,
                                hint="resume with the run's own config (its config.yaml)")
            try:
                self.tilt.load_state_dict(ts["tilt"])
            except KeyError as exc:
                raise DataError(str(exc), path=path, hint="resume with the run's own config") from exc
        self.state = TrainState(epoch=ts["epoch"], batch=ts["batch"], global_step=ts["global_step"],
                                best_val_loss=ts["best_val_loss"], epoch_loss_sum=ts["epoch_loss_sum"],
                                epoch_loss_count=ts["epoch_loss_count"], finished=ts["finished"],
                                history=list(ts["history"]))
        # A run that stopped at max_epochs continues when resumed with a larger max_epochs.
        self.state.finished = self.state.finished and (
            self.lr < self.cfg.min_lr or self.state.epoch >= self.cfg.max_epochs)

    def _log_tilt(self, epoch: int) -> None:
        """One row per spoofing system in ``tilt.csv``: its share, recent loss and weight after ``epoch``."""
        path = self.out_dir / "tilt.csv"
        new = not path.exists()
        weights = self.tilt.weights()
        with open(path, "a", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["epoch", "system", "share", "mean_loss", "weight"])
            for i, name in enumerate(self.train_set.systems):
                if self.tilt.share[i] > 0:
                    w.writerow([epoch, name, f"{float(self.tilt.share[i]):.4f}",
                                f"{float(self.tilt.mean_loss[i]):.4f}", f"{float(weights[i]):.4f}"])
        if self.cfg.progress:
            print(f"system weights: {self.tilt.describe(self.train_set.systems)}", flush=True)

    # -- the loop -------------------------------------------------------------------
    def _log(self, row: dict) -> None:
        path = self.out_dir / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in METRIC_FIELDS})

    def fit(self, max_steps: int = 0) -> TrainState:
        """Train until ``min_lr`` or ``max_epochs``; ``max_steps`` > 0 stops (after saving
        ``last.pt``) once that many optimiser steps have been taken in total."""
        from tqdm import tqdm

        cfg, s = self.cfg, self.state
        self.out_dir.mkdir(parents=True, exist_ok=True)
        while not s.finished and s.epoch < cfg.max_epochs:
            started = time.perf_counter()
            self.set_epoch_lr(s.epoch)
            loader = self.train_loader(s.epoch, s.batch)
            bar = tqdm(loader, total=len(loader), desc=f"epoch {s.epoch + 1}/{cfg.max_epochs}",
                       disable=not cfg.progress, leave=False, dynamic_ncols=True)
            for batch in bar:
                loss = self.train_step(batch)
                s.batch += 1
                s.epoch_loss_sum += loss * batch["label"].numel()
                s.epoch_loss_count += batch["label"].numel()
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.lr:.2e}")
                if cfg.checkpoint_every_steps and s.global_step % cfg.checkpoint_every_steps == 0:
                    self.save(self.out_dir / "last.pt")
                if max_steps and s.global_step >= max_steps:
                    bar.close()
                    self.save(self.out_dir / "last.pt")
                    return s
            bar.close()
            # Validation and best.pt see the averaged weights (when on); last.pt keeps the raw ones to resume.
            with self.weight_average.applied(self.model) if self.weight_average else nullcontext():
                self.recalibrate_batchnorm(s.epoch)
                metrics = self.validate()
                metrics.update(epoch=s.epoch + 1, global_step=s.global_step, lr=self.lr,
                               train_loss=s.epoch_loss_sum / max(s.epoch_loss_count, 1),
                               seconds=round(time.perf_counter() - started, 3))
                if cfg.lr_schedule == "plateau" and metrics["epoch"] > cfg.lr_hold_epochs:
                    self.scheduler.step(metrics["val_loss"])
                s.history.append(metrics)
                self._log(metrics)
                if self.tilt is not None:
                    self._log_tilt(metrics["epoch"])
                improved = metrics["val_loss"] < s.best_val_loss
                if improved:
                    s.best_val_loss = metrics["val_loss"]
                s.epoch, s.batch, s.epoch_loss_sum, s.epoch_loss_count = s.epoch + 1, 0, 0.0, 0
                s.finished = self.lr < cfg.min_lr or s.epoch >= cfg.max_epochs
                if improved:
                    self.save(self.out_dir / "best.pt", metrics)
            self.save(self.out_dir / "last.pt", metrics)
            if cfg.progress:
                print(f"epoch {metrics['epoch']}: train {metrics['train_loss']:.4f} val {metrics['val_loss']:.4f} "
                      f"EER {100 * metrics['val_eer']:.2f}% lr {self.lr:.1e}{' *' if improved else ''}", flush=True)
        s.finished = True
        return s


# -- building a run from a config -------------------------------------------------------

@dataclass
class Prepared:
    """What :func:`prepare` builds from a config."""

    model: nn.Module
    train_set: ds.WindowDataset
    val_set: ds.WindowDataset
    meta: dict


def without_systems(rows: list, names: list[str], manifest: str) -> list:
    """``rows`` without the spoofing systems in ``names``; a name that is not a spoofing system of
    ``rows`` is a :class:`DataError` (a typo would otherwise train on everything)."""
    if not names:
        return rows
    present = {r.system for r in rows if not r.is_bonafide}
    unknown = sorted(set(names) - present)
    if unknown:
        raise DataError(f"exclude_systems names {unknown}, which are not spoofing systems of the training rows",
                        path=manifest, hint=f"spoofing systems there: {', '.join(sorted(present))}")
    return [r for r in rows if r.is_bonafide or r.system not in set(names)]


def training_babble(cfg: TrainConfig, train_rows: list) -> tuple:
    """The clips training babble is mixed from (``training.babble``), empty when the config adds no babble."""
    if not cfg.augment.needs_babble:
        return ()
    rows = babble.training_rows([r for r in train_rows if r.is_bonafide], cfg.augment.babble_clips)
    if not rows:
        raise DataError("no train-split bona fide clips of speakers outside the channel benchmark's babble "
                        "to make training babble from", path=cfg.manifest,
                        hint="add bona fide speakers to the train split, or drop babble from augment.noise_kinds")
    return babble.load(rows)


def prepare(cfg: TrainConfig, *, feature_spec: FeatureSpec | None = None, systems: list[str] | None = None,
            train_rows: list | None = None, val_rows: list | None = None,
            babble_rows: list | None = None) -> Prepared:
    """Model and datasets of ``cfg``: reads the manifest, computes normalisation stats if the
    architecture needs them (unless ``feature_spec`` is given, e.g. when fine-tuning) and
    fixes the source classes (``systems``) of multi-task models. Training babble, if the config adds
    it, is drawn from ``babble_rows`` (default: the training rows)."""
    arch = registry.get(cfg.architecture)
    if train_rows is None or val_rows is None:
        rows = ds.read_rows(cfg.manifest)
        train_rows = train_rows if train_rows is not None else [r for r in rows if r.split == cfg.train_split]
        val_rows = val_rows if val_rows is not None else [r for r in rows if r.split == cfg.val_split]
    train_rows = without_systems(train_rows, cfg.exclude_systems, cfg.manifest)
    babble_speech = training_babble(cfg, train_rows if babble_rows is None else babble_rows)
    train_rows = ds.subset(train_rows, cfg.max_train_files, cfg.seed)
    val_rows = ds.subset(val_rows, cfg.max_val_files, cfg.seed + 1)
    for name, part in (("train", train_rows), ("validation", val_rows)):
        if not part:
            raise DataError(f"no {name} rows in the manifest", path=cfg.manifest,
                            hint=f"check train_split={cfg.train_split!r} / val_split={cfg.val_split!r}")
        if len({r.is_bonafide for r in part}) < 2:
            raise DataError(f"the {name} rows hold only one class", path=cfg.manifest,
                            hint="both bona fide and spoof rows are needed")
    spec = feature_spec
    if spec is None:
        spec = arch.feature_spec()
        if cfg.level_norm:  # before the statistics, so they describe the levelled features
            from training.level import training_level_dbfs

            spec = replace(spec, level_dbfs=training_level_dbfs(
                train_rows, spec, n_windows=cfg.norm_stats_windows, seed=cfg.seed, window_seconds=cfg.window_seconds))
        if arch.needs_global_stats:
            mean, std = ds.global_stats(train_rows, spec, n_windows=cfg.norm_stats_windows, seed=cfg.seed,
                                        window_seconds=cfg.window_seconds, num_workers=cfg.num_workers)
            spec = spec.with_global_stats(mean, std)
    systems = systems if systems is not None else ds.source_names(train_rows)
    model_args = dict(cfg.model_args)
    if arch.multitask:
        model_args["n_sources"] = len(systems)
    seed_everything(cfg.seed)
    model = registry.build(cfg.architecture, **model_args)
    add_channel = len(arch.input_shape) == 3
    common = dict(spec=spec, seed=cfg.seed, window_seconds=cfg.window_seconds, systems=systems,
                  add_channel=add_channel)
    train_set = ds.WindowDataset(train_rows, train=True, augment=cfg.augment.build(babble_speech),
                                 paired_copies=cfg.paired_copies, **common)
    val_set = ds.WindowDataset(val_rows, train=False, **common)
    meta = {"architecture": cfg.architecture, "model_args": model_args, "feature_spec": spec.to_dict(),
            "classes": list(CLASSES), "systems": list(systems)}
    return Prepared(model, train_set, val_set, meta)


def prepare_from(cfg: TrainConfig, source: str | Path, **rows) -> Prepared:
    """:func:`prepare` for a model that starts from the weights of ``source`` (a checkpoint or a bundle
    with training weights): its front end and source classes are kept, its weights loaded. ``rows``:
    ``train_rows`` / ``val_rows`` / ``babble_rows`` as for :func:`prepare`."""
    ckpt = read_checkpoint(source)
    require_keys(ckpt, ("architecture", "model_state", "feature_spec"), source)
    if ckpt["architecture"] != cfg.architecture:
        raise DataError(f"the starting weights are of architecture {ckpt['architecture']}, the config's is "
                        f"{cfg.architecture}", path=source, hint=f"set architecture: {ckpt['architecture']}")
    spec = FeatureSpec.from_dict(ckpt["feature_spec"])
    if cfg.level_norm and spec.level_dbfs is None:
        raise DataError("level_norm is set, but the starting model's front end has no level", path=source,
                        hint="start from a model released with --level-dbfs, or set level_norm: false")
    prepared = prepare(cfg, feature_spec=spec, systems=ckpt.get("systems") or None, **rows)
    load_weights(prepared.model, ckpt["model_state"], source)
    return prepared


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint dict from a run's ``best.pt`` / ``last.pt``, or from a bundle folder (or its
    ``bundle.json``) that carries training weights (no optimiser state then)."""
    path = Path(path)
    if path.is_dir() or path.name == "bundle.json":
        from edge_cm.bundle import load_bundle

        from training.checkpoint_npz import load_checkpoint_npz

        return load_checkpoint_npz(load_bundle(path, verify=False).training_weights_path())
    if not path.is_file():
        raise DataError("checkpoint not found", path=path,
                        hint="pass the best.pt or last.pt of a run folder, or a bundle with training weights")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        kind = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise DataError(f"cannot read checkpoint ({kind})", path=path,
                        hint="pass a best.pt or last.pt written by edge-cm-train, or a bundle folder") from exc


def require_keys(ckpt: dict, keys: tuple, path: str | Path) -> None:
    """A :class:`DataError` naming the first of ``keys`` that the checkpoint dict lacks."""
    for key in keys:
        if key not in ckpt:
            raise DataError(f"checkpoint lacks {key!r}", path=path, hint="was it written by edge-cm-train?")


def load_weights(model: nn.Module, state: dict, source: str | Path) -> None:
    """``model.load_state_dict(state)``, with a typed error when the weights do not fit the model."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # missing/unexpected keys or shape mismatches
        raise DataError(f"the weights do not fit architecture {type(model).__name__}: "
                        f"{str(exc).splitlines()[0][:300]}", path=source,
                        hint="the checkpoint or bundle was written by a different model; re-export it") from None


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """The trained model (eval mode) and its metadata: ``architecture``, ``model_args``,
    ``feature_spec`` (a :class:`FeatureSpec`), ``classes``, ``systems``, ``config`` (a
    :class:`TrainConfig`), ``metrics``."""
    return model_from_checkpoint(read_checkpoint(path), path)


def model_from_checkpoint(ckpt: dict, path: str | Path) -> tuple[nn.Module, dict]:
    """:func:`load_checkpoint` of a checkpoint dict already read from ``path`` (named in errors)."""
    require_keys(ckpt, ("architecture", "model_state", "feature_spec", "classes", "config"), path)
    model = registry.build(ckpt["architecture"], **(ckpt.get("model_args") or {}))
    load_weights(model, ckpt["model_state"], path)
    model.eval()
    meta = {k: ckpt.get(k) for k in ("architecture", "model_args", "classes", "systems", "metrics")}
    meta["feature_spec"] = FeatureSpec.from_dict(ckpt["feature_spec"])
    meta["config"] = TrainConfig.from_dict(ckpt["config"], source=path)
    return model, meta


def run(cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False, max_steps: int = 0,
        prepared: Prepared | None = None, loss_fn: LossFn | None = None) -> Trainer:
    """Train ``cfg`` into ``out_dir`` (``resume`` continues from ``out_dir/last.pt``)."""
    out_dir = Path(out_dir)
    last = out_dir / "last.pt"
    if last.exists() and not resume:
        raise DataError("the run folder already holds a checkpoint", path=out_dir,
                        hint="pass --resume to continue it, or choose a new --out folder")
    if resume and last.exists():
        ckpt = read_checkpoint(last)
        spec = FeatureSpec.from_dict(ckpt["feature_spec"]) if ckpt.get("feature_spec") else None
        prepared = prepared or prepare(cfg, feature_spec=spec, systems=ckpt.get("systems") or None)
    elif cfg.init_from:
        prepared = prepared or prepare_from(cfg, cfg.init_from)
    else:
        prepared = prepared or prepare(cfg)
    # The trainer first, so a setting it refuses leaves no run folder behind.
    trainer = Trainer(cfg, prepared.model, prepared.train_set, prepared.val_set, out_dir,
                      loss_fn=loss_fn, meta=prepared.meta)
    example_weights = getattr(trainer.loss_fn, "example_weights", None)
    if example_weights is not None:
        print("family weights of spoof examples: "
              + family_weight_summary(prepared.train_set.rows, prepared.train_set.systems, example_weights))
    if resume and last.exists():
        trainer.load(last)  # before config.yaml: a resume the checkpoint refuses keeps the run's own config
    else:
        seed_everything(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(out_dir / "config.yaml")
    trainer.fit(max_steps=max_steps)
    return trainer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edge-cm-train train", description="Train a detector from a config.")
    p.add_argument("--config", required=True, help="YAML or JSON TrainConfig (see training/configs/)")
    p.add_argument("--out", required=True, help="run folder (config copy, metrics.csv, best.pt, last.pt)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--manifest", help="override the config's manifest")
    p.add_argument("--max-epochs", type=int, help="override max_epochs")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many optimiser steps in total")
    p.add_argument("--workers", type=int, help="override num_workers")
    p.add_argument("--seed", type=int, help="override seed")
    p.add_argument("--teacher", action="append", metavar="CKPT_OR_BUNDLE",
                   help="distil from this trained model too (repeat for an ensemble; sets teachers)")
    p.add_argument("--init-from", metavar="CKPT_OR_BUNDLE",
                   help="start from this trained model's weights and front end (fine-tuning; sets init_from)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    overrides = {"manifest": args.manifest, "max_epochs": args.max_epochs, "num_workers": args.workers,
                 "seed": args.seed, "teachers": args.teacher, "init_from": args.init_from}
    if args.no_progress:
        overrides["progress"] = False
    cfg = load_config(args.config, **overrides)
    trainer = run(cfg, args.out, resume=args.resume, max_steps=args.max_steps)
    s = trainer.state
    print(f"trained {cfg.architecture}: {s.global_step} steps, {s.epoch} epochs, "
          f"best val loss {s.best_val_loss:.4f}; run folder {args.out}")
    return 0
