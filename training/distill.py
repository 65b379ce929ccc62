"""Knowledge distillation from trained teachers inside the shared training loop.

Why: averaging the clip log-odds of two seeds of the default recipe lowered test pooled EER
from 12.65 / 13.26 % to 11.18 % (``benchmarks/results/score_fusion_mt_seeds.md``; README,
"Training"), but two models do not fit the 50,000-parameter budget. Distillation trains one
model of the budget to match the teachers' mean logits as well as the labels:

``loss = gamma x T^2 x KL(softmax(teachers / T) || softmax(model / T)) + (1 - gamma) x label loss``

(:func:`training.resnetse.kd.soft_target_loss`, the ResNetSE student's soft term; the label
loss keeps the source head of multi-task models). Teachers are checkpoints or bundles with
training weights of the same front end; each gets the batch in its own normalisation, since
global statistics differ by seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from edge_cm.errors import DataError
from edge_cm.features import FeatureSpec
from training.resnetse.kd import KDConfig, soft_target_loss

NORM_STATS = ("norm_mean", "norm_std")  # may differ: each teacher gets its own (renormalisation)


@dataclass
class Teacher:
    """A frozen model and the per-bin affine map from the student's normalised features to its own."""

    model: nn.Module
    scale: torch.Tensor  # (bins, 1): multiplies the student's features
    shift: torch.Tensor  # (bins, 1)

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        from training.train import logits_of

        return logits_of(self.model(features * self.scale + self.shift))


def renormalisation(student: FeatureSpec, teacher: FeatureSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``teacher_features = student_features * scale + shift`` per bin."""
    n = student.n_bins

    def stats(spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
        if spec.normalization != "global":
            return np.zeros(n), np.ones(n)
        return np.asarray(spec.norm_mean, np.float64), np.asarray(spec.norm_std, np.float64)

    (ms, ss), (mt, st) = stats(student), stats(teacher)
    as_column = lambda v: torch.tensor(v, dtype=torch.float32).view(n, 1)  # noqa: E731
    return as_column(ss / st), as_column((ms - mt) / st)


def load_teachers(paths: list[str], student_spec: FeatureSpec) -> list[Teacher]:
    """Teachers from run checkpoints or bundle folders; each must share the student's front end
    apart from its normalisation statistics."""
    from training.train import load_checkpoint

    want = {k: v for k, v in student_spec.to_dict().items() if k not in NORM_STATS}
    teachers = []
    for path in paths:
        model, meta = load_checkpoint(path)
        spec = meta["feature_spec"]
        have = {k: v for k, v in spec.to_dict().items() if k not in NORM_STATS}
        if have != want:
            diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            raise DataError(f"teacher front end differs from the student's in {diff}", path=path,
                            hint="distil only from teachers trained on the same FeatureSpec "
                                 "(the same front end of the registry)")
        for p in model.parameters():
            p.requires_grad_(False)
        teachers.append(Teacher(model.eval(), *renormalisation(student_spec, spec)))
    return teachers


@dataclass
class DistillationLoss:
    """``loss_fn(outputs, batch)`` of the loop: the label loss blended with the teachers' soft targets."""

    label_loss: Callable[[Any, dict], tuple[torch.Tensor, dict]]
    teachers: list[Teacher]
    kd: KDConfig = KDConfig()

    def __call__(self, outputs: Any, batch: dict) -> tuple[torch.Tensor, dict]:
        from training.train import logits_of

        label, parts = self.label_loss(outputs, batch)
        student = logits_of(outputs)
        teacher = torch.stack([t.logits(batch["features"]) for t in self.teachers]).mean(dim=0)
        soft = soft_target_loss(student, teacher, self.kd.temperature)
        parts["kd"] = float(soft.detach())
        return self.kd.gamma * soft + (1.0 - self.kd.gamma) * label, parts

