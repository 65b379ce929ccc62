"""Basic iterative method (BIM) in the waveform domain.

Sign convention: every step moves *down* the objective,
``D <- clip(D - alpha * sign(grad_D objective(W + D)))``. For the speaker attack the
objective is ``cos(embed(W1), embed(W2 + D))`` for two bona fide utterances of one
speaker: the perturbation pushes W2 away from its own speaker, and ``W2 + D`` is
kept as an ``adversarial`` example only when the final similarity is <= the
threshold (0.4). For the robustness test the objective is the spoof score
``logsumexp(logits[1:]) - logits[0]`` of a spoofed utterance (evasion).

Scale: samples are float in [-1, 1]; the paper's step of 3 on the 16-bit scale
is ``alpha = 3 / 32768``. Clip: ``||D||_inf <= epsilon`` with ``epsilon = steps *
alpha`` by default (the most BIM can move anyway, i.e. 15 / 32768, about -67 dBFS),
and ``W + D`` stays inside [-1, 1].
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

INT16_SCALE = 32768.0


@dataclass(frozen=True)
class BIMConfig:
    """BIM parameters on the 16-bit sample scale (converted to float samples by the properties)."""

    alpha_int16: float = 3.0
    steps: int = 5
    epsilon_int16: float | None = None
    """Bound of ||D||_inf; None means steps * alpha."""
    threshold: float = 0.4
    """Speaker attack: keep W2 + D only if cos(X1, embed(W2 + D)) <= threshold."""

    @property
    def alpha(self) -> float:
        return self.alpha_int16 / INT16_SCALE

    @property
    def epsilon(self) -> float:
        eps = self.steps * self.alpha_int16 if self.epsilon_int16 is None else self.epsilon_int16
        return eps / INT16_SCALE


def bim(objective: Callable[[torch.Tensor], torch.Tensor], wave: torch.Tensor, config: BIMConfig) -> torch.Tensor:
    """Perturbation D (same shape as ``wave`` (B, samples)) that lowers ``objective`` (one value per item)."""
    wave = wave.detach()
    delta = torch.zeros_like(wave)
    for _ in range(config.steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(wave + delta).sum(), delta)
        delta = delta.detach() - config.alpha * grad.sign()
        delta = delta.clamp(-config.epsilon, config.epsilon)
        delta = (wave + delta).clamp(-1.0, 1.0) - wave
    return delta.detach()


class _EvalMode:
    """Batch norm must use running statistics while attacking, so one item cannot leak into another."""

    def __init__(self, *modules: nn.Module):
        self.modules = modules
        self.states: list[bool] = []

    def __enter__(self) -> None:
        self.states = [m.training for m in self.modules]
        for m in self.modules:
            m.eval()

    def __exit__(self, *exc) -> None:
        for m, state in zip(self.modules, self.states):
            m.train(state)


@dataclass
class SpeakerAttack:
    """Result of :func:`speaker_adversarial`: perturbed waves, final similarities, which to keep."""

    waves: torch.Tensor
    similarity: torch.Tensor
    keep: torch.Tensor

    @property
    def kept(self) -> torch.Tensor:
        return self.waves[self.keep]


def speaker_adversarial(embed: Callable[[torch.Tensor], torch.Tensor], w1: torch.Tensor, w2: torch.Tensor,
                        config: BIMConfig = BIMConfig(), modules: tuple[nn.Module, ...] = ()) -> SpeakerAttack:
    """BIM on W2 (B, samples) against X1 = embed(W1); ``modules`` are put in eval mode meanwhile."""
    with _EvalMode(*modules):
        with torch.no_grad():
            x1 = embed(w1)
        delta = bim(lambda w: F.cosine_similarity(x1, embed(w), dim=-1), w2, config)
        adv = (w2 + delta).detach()
        with torch.no_grad():
            sim = F.cosine_similarity(x1, embed(adv), dim=-1)
    return SpeakerAttack(waves=adv, similarity=sim, keep=sim <= config.threshold)


def spoof_score(logits: torch.Tensor) -> torch.Tensor:
    """Spoof log-odds of logits (B, C): logsumexp(logits[:, 1:]) - logits[:, 0]; higher = more spoof."""
    return torch.logsumexp(logits[:, 1:], dim=-1) - logits[:, 0]


def evasion_adversarial(logits_of: Callable[[torch.Tensor], torch.Tensor], wave: torch.Tensor,
                        config: BIMConfig = BIMConfig(), modules: tuple[nn.Module, ...] = ()) -> torch.Tensor:
    """Spoofed waves (B, samples) perturbed by BIM to lower their spoof score under the attacked model."""
    with _EvalMode(*modules):
        delta = bim(lambda w: spoof_score(logits_of(w)), wave, config)
    return (wave.detach() + delta).detach()
