"""One-class softmax (OC-Softmax; Zhang, Jiang and Duan, 2021) as a veracity head and its loss.

Why: a two-class softmax learns a boundary that fits the training spoofs and may leave an
unseen spoofing system on the bona fide side. OC-Softmax instead pulls bona fide embeddings
into a tight cone around one learned direction ``w`` (cosine at least ``m_real``) and only
pushes spoofs out of a wider one (cosine at most ``m_fake``), so anything unlike bona fide
speech scores as spoof; the paper reports it generalising better to the unseen attacks of
ASVspoof 2019 LA.

The head still emits two logits, so export and the runtime (``P(spoof) = softmax[1]``) do not
change: with ``cos`` the cosine between the embedding and ``w`` and ``c = (m_real + m_fake) / 2``,
the bona fide log-odds are ``d = alpha * (cos - c)`` and the logits ``(d / 2, -d / 2)``. The
paper's loss ``log(1 + exp(alpha * (m_y - cos) * (-1)^y))`` is then
``softplus(margin - sign_y * d)`` with ``margin = alpha * (m_real - m_fake) / 2`` and ``sign_y``
+1 for bona fide, -1 for spoof: :class:`OneClassLoss` computes exactly that from the logits.
"""
from __future__ import annotations

from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch import nn


class OneClassHead(nn.Module):
    """(B, in_features) -> (B, 2) logits ``(d / 2, -d / 2)``, ``d = alpha * (cos(x, w) - c)``.

    The paper's values: ``alpha`` 20, ``m_real`` 0.9, ``m_fake`` 0.2. Parameters: ``in_features``
    (the direction ``w``; its length does not matter, only its direction)."""

    def __init__(self, in_features: int, alpha: float = 20.0, m_real: float = 0.9, m_fake: float = 0.2,
                 dropout: float = 0.0, eps: float = 1e-6):
        super().__init__()
        if not m_fake < m_real:
            raise ValueError(f"m_fake ({m_fake}) must be below m_real ({m_real})")
        self.dropout = nn.Dropout(dropout)
        self.weight = nn.Parameter(torch.randn(in_features) / in_features ** 0.5)
        self.alpha, self.m_real, self.m_fake, self.eps = float(alpha), float(m_real), float(m_fake), eps

    @property
    def margin(self) -> float:
        """``alpha * (m_real - m_fake) / 2``: the log-odds margin each class must clear."""
        return self.alpha * (self.m_real - self.m_fake) / 2

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        # eps keeps an all-zero embedding (possible after ReLU) finite instead of NaN.
        x = x / torch.sqrt((x * x).sum(dim=1, keepdim=True) + self.eps)
        w = self.weight / torch.sqrt((self.weight * self.weight).sum() + self.eps)
        return x @ w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.alpha * (self.cosine(x) - (self.m_real + self.m_fake) / 2)
        return torch.stack([d / 2, -d / 2], dim=1)


@dataclass
class OneClassLoss:
    """The OC-Softmax loss on a :class:`OneClassHead`'s logits (labels: 0 bona fide, 1 spoof),
    averaged with per-class weights as weighted cross-entropy is (sum of w_i l_i / sum of w_i)."""

    margin: float
    class_weights: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        d = logits[:, 0] - logits[:, 1]
        sign = 1.0 - 2.0 * labels.to(d.dtype)  # +1 bona fide, -1 spoof
        per_item = F.softplus(self.margin - sign * d)
        if self.class_weights is None:
            return per_item.mean()
        w = self.class_weights.to(d.dtype)[labels]
        return (w * per_item).sum() / w.sum()


def one_class_head_of(model: nn.Module) -> OneClassHead | None:
    """The model's :class:`OneClassHead`, or None when it has an ordinary linear head."""
    heads = [m for m in model.modules() if isinstance(m, OneClassHead)]
    return heads[0] if heads else None
