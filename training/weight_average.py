"""Exponential moving average of a model's weights (Polyak averaging), for validation and best.pt.

Training steps move the raw weights; after every step the average follows them with
``decay`` (per optimiser step). Validation, the learning-rate schedule and ``best.pt`` use the
averaged weights, which wander less between epochs than the raw ones: the checkpoint is
chosen from a smoother trajectory. BatchNorm buffers are not averaged: the loop recomputes
them for the averaged weights before each validation (``precise_bn_batches``).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


class WeightAverage:
    """``avg ← d·avg + (1 − d)·w`` after each step, with ``d = min(decay, (1 + n) / (10 + n))``
    for the n-th update, so the first steps are not dominated by the random initialisation."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def rate(self) -> float:
        """The decay the next update uses."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.rate()
        for name, p in model.named_parameters():
            if name in self.params:
                self.params[name].mul_(d).add_(p.detach(), alpha=1.0 - d)
        self.updates += 1

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Swap the averaged weights into ``model`` for the duration; the raw ones come back after."""
        named = dict(model.named_parameters())
        raw = {name: named[name].detach().clone() for name in self.params}
        with torch.no_grad():
            for name, avg in self.params.items():
                named[name].copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, w in raw.items():
                    named[name].copy_(w)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "params": {k: v.clone() for k, v in self.params.items()}}

    def load_state_dict(self, state: dict) -> None:
        if set(state["params"]) != set(self.params):
            raise KeyError("the saved weight average is of another model")
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        for name, value in state["params"].items():
            self.params[name].copy_(value)
