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


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 x KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch; no
    gradient reaches the teacher."""
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    return t * t * F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            config: KDConfig = KDConfig(), weight: torch.Tensor | None = None) -> torch.Tensor:
    """Distillation loss (a scalar) of logits (B, C) and class indices (B,).

    ``weight`` (C,) optionally weights the NLL term per class (as ``F.cross_entropy``).
    """
    nll = F.cross_entropy(student_logits, targets, weight=weight)
    if config.gamma == 0.0:
        return nll
    soft = soft_target_loss(student_logits, teacher_logits, config.temperature)
    return config.gamma * soft + (1.0 - config.gamma) * nll
