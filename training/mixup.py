"""Mixup (Zhang et al., ICLR 2018) on a batch of features, for any loss of the training loop.

Each step draws one ``lam`` from Beta(alpha, alpha) and one permutation of the batch; the model
sees ``lam * x + (1 - lam) * x[perm]`` and the loss is ``lam * loss(labels) + (1 - lam) *
loss(labels[perm])``, which for cross-entropy equals training on the mixed soft labels. Why it
is tried here: the small detectors fit the training systems (train EER a few %) and miss unseen
ones; mixup keeps the decision function linear between training examples, a regulariser that
anti-spoofing systems have used against unseen attacks. A bona fide window mixed with a spoof
is a partly spoofed window, and its target says so. The draws use torch's generator, which the
checkpoints save, so a resumed run takes the same next step.
"""
from __future__ import annotations

import torch


def mix_batch(batch: dict, alpha: float) -> tuple[torch.Tensor, dict, float]:
    """``(mixed features, batch with its targets permuted, lam)`` for ``batch`` (dict with
    ``features`` and per-example targets such as ``label`` and ``source``); ``alpha`` > 0 is
    Beta's concentration (small = mostly near-pure examples). The loss of the mixed features is
    ``lam * loss(batch) + (1 - lam) * loss(permuted batch)``."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    features = batch["features"]
    perm = torch.randperm(features.shape[0])
    other = {k: (v[perm] if torch.is_tensor(v) and v.shape[:1] == features.shape[:1] else v)
             for k, v in batch.items()}
    return lam * features + (1.0 - lam) * other["features"], other, lam
