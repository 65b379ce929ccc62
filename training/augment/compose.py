"""Chaining transforms: apply all of them (:class:`Compose`) or a random subset (:class:`RandomAugment`).

A transform is any callable ``(audio, rng) -> (audio, label)``; the chains return
``(audio, labels)`` with the labels of the transforms that ran, in order.
:func:`pseudo_labels` turns those into the codec and speed classes the
dual-stream detector's auxiliary heads learn.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from edge_cm.errors import DataError

from ._common import as_generator, check_audio, spawn
from .codec import CODEC_LABELS, NO_CODEC_LABEL
from .speed import NO_SPEED_LABEL, SPEED_LABELS

Transform = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, str]]


@dataclass
class Step:
    """One transform and the probability (0..1) that :class:`RandomAugment` applies it."""

    transform: Transform
    probability: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise DataError(f"step probability {self.probability} is outside [0, 1]")


@dataclass
class Compose:
    """Apply every transform, in order."""

    transforms: Sequence[Transform]

    def __call__(self, audio: np.ndarray, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, list[str]]:
        audio = check_audio(audio)
        rngs = spawn(as_generator(rng), len(self.transforms))
        labels = []
        for transform, sub in zip(self.transforms, rngs):
            audio, label = transform(audio, sub)
            labels.append(label)
        return audio, labels


@dataclass
class RandomAugment:
    """Apply each step with its probability, in order, keeping at most ``max_steps`` of them.

    Each step draws from its own child generator of ``rng``, so a given seed makes the
    same choices and the same audio every time.
    """

    steps: Sequence[Step]
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.max_steps < 0:
            raise DataError(f"max_steps={self.max_steps} must be >= 0 or None")

    def __call__(self, audio: np.ndarray, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, list[str]]:
        audio = check_audio(audio)
        rng = as_generator(rng)
        chosen = [i for i, step in enumerate(self.steps) if rng.random() < step.probability]
        if self.max_steps is not None and len(chosen) > self.max_steps:
            chosen = sorted(rng.choice(chosen, size=self.max_steps, replace=False).tolist())
        rngs = spawn(rng, len(self.steps))
        labels = []
        for i in chosen:
            audio, label = self.steps[i].transform(audio, rngs[i])
            labels.append(label)
        return audio, labels


def pseudo_labels(labels: Sequence[str]) -> dict[str, str]:
    """The codec and speed classes of a chain's labels: ``{"codec": "mp3_32k"|"none", "speed": "speed_1"|...}``.

    If a chain ran several codecs (or speed changes), the last one is taken.
    """
    codec = [lab for lab in labels if lab in CODEC_LABELS]
    speed = [lab for lab in labels if lab in SPEED_LABELS]
    return {"codec": codec[-1] if codec else NO_CODEC_LABEL, "speed": speed[-1] if speed else NO_SPEED_LABEL}
