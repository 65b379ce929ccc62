"""Knowledge-distillation loss for the student.

``loss = gamma * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - gamma) * NLL(student, y)``,
KL summed over classes and averaged over the batch; the T^2 keeps the soft-target
gradients on the same scale as the hard-label ones (Hinton et al.). Paper values:
T = 5, gamma = 0.5.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class KDConfig:
    temperature: float = 5.0
    gamma: float = 0.5


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            config: KDConfig = KDConfig(), weight: torch.Tensor | None = None) -> torch.Tensor:
    """Distillation loss (a scalar) of logits (B, C) and class indices (B,).

    ``weight`` (C,) optionally weights the NLL term per class (as ``F.cross_entropy``).
    """
    t = config.temperature
    nll = F.cross_entropy(student_logits, targets, weight=weight)
    if config.gamma == 0.0:
        return nll
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return config.gamma * t * t * kl + (1.0 - config.gamma) * nll
