"""Generalised end-to-end (GE2E) softmax loss for speaker embeddings.

A batch holds N speakers x M utterances. Each embedding is compared, by cosine,
with every speaker centroid; for its own speaker the centroid leaves the
utterance itself out (mean of the other M - 1). Similarities are scaled
``S = w * cos + b`` with a learned ``w`` (clamped to >= ``min_w`` so it stays
positive) and ``b``; the loss is the cross-entropy of each utterance against its
own speaker over the N similarities, averaged over the N * M utterances.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def ge2e_similarity(embeddings: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scaled similarity matrix (N, M, N) of embeddings (N, M, D); needs M >= 2."""
    n, m, _ = embeddings.shape
    if m < 2:
        raise ValueError(f"GE2E needs at least 2 utterances per speaker, got {m}")
    total = embeddings.sum(dim=1)  # (N, D)
    centroids = total / m
    exclusive = (total[:, None, :] - embeddings) / (m - 1)  # (N, M, D): own centroid without the utterance
    e = F.normalize(embeddings, dim=-1, eps=eps)
    cos_all = torch.einsum("nmd,kd->nmk", e, F.normalize(centroids, dim=-1, eps=eps))
    cos_own = (e * F.normalize(exclusive, dim=-1, eps=eps)).sum(dim=-1)  # (N, M)
    own = torch.eye(n, dtype=torch.bool, device=embeddings.device)[:, None, :].expand(n, m, n)
    cos = torch.where(own, cos_own[:, :, None].expand(n, m, n), cos_all)
    return w * cos + b


class GE2ELoss(nn.Module):
    """Softmax GE2E loss; ``w`` and ``b`` are learned (initial values as in the GE2E paper: 10, -5)."""

    def __init__(self, init_w: float = 10.0, init_b: float = -5.0, min_w: float = 1e-6):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(init_w)))
        self.b = nn.Parameter(torch.tensor(float(init_b)))
        self.min_w = min_w

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Mean loss of embeddings shaped (N speakers, M utterances, D)."""
        n, m, _ = embeddings.shape
        w = torch.clamp(self.w, min=self.min_w)
        sim = ge2e_similarity(embeddings, w, self.b)
        target = torch.arange(n, device=embeddings.device).repeat_interleave(m)
        return F.cross_entropy(sim.reshape(n * m, n), target)
