"""Sharpness-aware minimisation (SAM, Foret et al., ICLR 2021) around any torch optimiser.

SAM looks for weights whose whole neighbourhood has a low loss, not only the point itself:
each step first moves the weights uphill by ``rho`` along the normalised gradient, takes the
gradient there, moves back and lets the base optimiser (Adam here) step with that gradient.
Flat minima are the usual explanation for SAM's better generalisation, and anti-spoofing
reported gains from it on unseen attacks and datasets (Shim et al., Interspeech 2023). The
adaptive variant (ASAM, Kwon et al., ICML 2021) scales the move per weight by ``|w|``, so it
does not depend on how each layer happens to be scaled; its ``rho`` is larger (about 10x).

A step costs two forward and backward passes. BatchNorm running statistics are updated by the
first pass only: the second sees perturbed weights, whose activation statistics are not the
model's.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn


@contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Inside, BatchNorm layers normalise with batch statistics as usual but leave their
    running mean, variance and batch counter untouched."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in layers]
    for m in layers:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, (momentum, count) in zip(layers, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


def sam_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_of: Callable[[], torch.Tensor],
             rho: float, adaptive: bool = False) -> torch.Tensor:
    """One SAM step. ``loss_of()`` runs the forward pass on the batch and returns the loss.

    Returns the loss at the unperturbed weights (before the step), detached.
    """
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}")
    optimizer.zero_grad(set_to_none=True)
    loss = loss_of()
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    with torch.no_grad():
        scaled = [(p.abs() * p.grad) if adaptive else p.grad for p in params]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in scaled]))
        scale = rho / (norm + 1e-12)
        originals = [p.detach().clone() for p in params]  # restored exactly, not by subtraction
        for p in params:
            p.add_((p.square() * p.grad if adaptive else p.grad) * scale)
    optimizer.zero_grad(set_to_none=True)
    with frozen_batchnorm_stats(model):
        loss_of().backward()
    with torch.no_grad():
        for p, w in zip(params, originals):
            p.copy_(w)
    optimizer.step()
    return loss.detach()
