"""Architecture registry: every model family registers its variants here by name.

A config names its architecture (``architecture: efficientcnn_small``); the training
loop, ``edge-cm-train describe`` and the exporter build it with :func:`build`. One
file per family under ``training/models/`` calls :func:`register` at import time;
:data:`FAMILY_MODULES` lists those files so that :func:`get` can find every name
without the caller importing the family first.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from edge_cm.errors import EdgeCMError
from edge_cm.features import FeatureSpec

FAMILY_MODULES: tuple[str, ...] = (
    "training.models.efficientcnn",
    "training.models.resnetse",
    "training.models.logmel_cnn",
    "training.models.logspec_cnn",
    "training.models.spec_mel_cnn",
    "training.models.spec_mel_mgd_cnn",
    "training.models.spec_mel_cep_cnn",
    "training.models.wave_cnn",
    "training.models.spec_mel_wave_cnn",
)
"""Modules imported on first lookup; each registers its architectures (a missing one is skipped)."""


class ArchitectureError(EdgeCMError):
    """An architecture name that is not registered, or build arguments it does not take."""


@dataclass(frozen=True)
class Architecture:
    """A registered model variant.

    Attributes:
        name: registry key, e.g. ``efficientcnn_small``.
        builder: ``builder(**kwargs) -> nn.Module``; the module's forward takes features
            ``(B, 1, bins, frames)`` (or what ``input_shape`` says) and returns logits over the
            classes (class 0 = bonafide), or a tuple whose first item is those logits.
        feature_spec: returns the front end the model expects (before normalisation stats).
        input_shape: the per-example input shape of a 4-s window, no batch dimension.
        needs_global_stats: training must compute per-bin mean/std on training data.
        classes: names of the logits, ``classes[0] == "bonafide"``.
        multitask: the model has a source head (forward returns ``(logits, source_logits)``)
            and needs ``n_sources`` at build time.
        paper: figures from the literature to print beside ours (``params``, ``flops``...).
    """

    name: str
    builder: Callable[..., nn.Module]
    feature_spec: Callable[[], FeatureSpec]
    input_shape: tuple[int, ...]
    description: str = ""
    needs_global_stats: bool = False
    classes: tuple[str, ...] = ("bonafide", "spoof")
    multitask: bool = False
    paper: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, Architecture] = {}
_loaded = False


def register(arch: Architecture) -> Architecture:
    """Add ``arch`` to the registry; a second registration of the same name is an error."""
    if arch.name in _REGISTRY and _REGISTRY[arch.name] is not arch:
        raise ArchitectureError(f"architecture {arch.name!r} is registered twice")
    _REGISTRY[arch.name] = arch
    return arch


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in FAMILY_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency inside the family
                raise


def names() -> list[str]:
    """All registered architecture names, in registration order."""
    _load_families()
    return list(_REGISTRY)


def get(name: str) -> Architecture:
    """The registered architecture ``name``; raises :class:`ArchitectureError` with the known names."""
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ArchitectureError(f"unknown architecture {name!r}",
                                hint=f"registered: {', '.join(_REGISTRY) or 'none'}") from None


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build a fresh (randomly initialised) model of architecture ``name``."""
    arch = get(name)
    try:
        return arch.builder(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ArchitectureError(f"cannot build {name!r} with {sorted(kwargs)}: {exc}") from exc


def count_params(model: nn.Module) -> int:
    """Trainable parameters (running BN statistics are buffers and are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass for one example of ``input_shape`` (no batch dim).

    Convention: conv and linear layers only, one MAC per weight use (``out_elements *
    in_channels/groups * kernel_area`` for a conv, ``out_features * in_features`` for a
    linear); biases, batch norm, activations, pooling and residual additions are left out.
    FLOPs = 2 * MACs, which is what ``torch.utils.flop_counter.FlopCounterMode`` counts.
    """
    import torch

    total = 0

    def hook(module: nn.Module, inputs, output) -> None:
        nonlocal total
        out = output[0] if isinstance(output, tuple) else output
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            per_out = module.in_channels // module.groups
            for k in module.kernel_size:
                per_out *= k
            total += out.numel() * per_out
        elif isinstance(module, nn.Linear):
            total += out.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1,) + tuple(input_shape)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def count_flops_torch(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass as ``torch.utils.flop_counter.FlopCounterMode`` counts them."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros((1,) + tuple(input_shape)))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
