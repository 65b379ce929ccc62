"""Graph preparation before int8 TFLite conversion.

A BatchNorm that directly follows a convolution is folded into it by PT2E. A "standalone"
BatchNorm (e.g. EfficientCNN's conv -> ReLU -> BN order) is not, and the PT2E quantizer has
no int8 pattern for it: it would stay float inside the int8 model (DEQUANTIZE / SUB / MUL /
QUANTIZE), costing 4 bytes per activation in the arena and breaking full-integer
deployment. In inference BN is the per-channel affine map ``x * s + t``; written as a
multiply and an add, both of which the quantizer annotates, it becomes int8 MUL / ADD.

The tensor before the MUL is quantised per tensor, so when ``s`` differs widely between
channels, the channels BN scales up most are tiny there and round to zero; RES-EfficientCNN
LARGE's classifier BN did this, and its int8 model agreed with float on half the windows.
Where the BN follows ``conv/linear -> ReLU`` and every ``s`` is positive,
``ReLU(z) * s = ReLU(z * s)`` moves ``s`` into the layer's weights, which are quantised per
output channel; only the ``+ t`` remains.
"""
from __future__ import annotations

import copy

_CONVS = ("Conv1d", "Conv2d", "Conv3d")
_WEIGHTED = _CONVS + ("Linear",)
_BNS = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")


def _affine_class():
    import torch
    from torch import nn

    class ChannelAffine(nn.Module):
        """Inference-mode BatchNorm as ``x * scale + shift`` (per channel, dim 1); with
        ``shift_only``, ``x + shift`` (the scale has been moved into the layer before)."""

        def __init__(self, bn: nn.Module, shift_only: bool = False):
            super().__init__()
            with torch.no_grad():
                var = bn.running_var if bn.running_var is not None else torch.ones(bn.num_features)
                mean = bn.running_mean if bn.running_mean is not None else torch.zeros(bn.num_features)
                weight = bn.weight if bn.weight is not None else torch.ones(bn.num_features)
                bias = bn.bias if bn.bias is not None else torch.zeros(bn.num_features)
                scale = weight / torch.sqrt(var + bn.eps)
                shift = bias - mean * scale
            self.register_buffer("scale", None if shift_only else scale.detach().clone())
            self.register_buffer("shift", shift.detach().clone())

        def forward(self, x):
            # channels on dim 1, as BatchNorm; the rank is static when the graph is traced
            view = (1, -1) + (1,) * (x.dim() - 2)
            if self.scale is None:
                return x + self.shift.reshape(view)
            return x * self.scale.reshape(view) + self.shift.reshape(view)

    return ChannelAffine


def _scale_into(layer, bn) -> bool:
    """Multiply ``layer``'s output channels by ``bn``'s inference scale ``s`` if every ``s`` > 0;
    returns whether it did (``layer`` is a conv or linear layer)."""
    import torch

    if bn.running_var is None or layer.weight.shape[0] != bn.num_features:
        return False
    with torch.no_grad():
        weight = bn.weight if bn.weight is not None else torch.ones(bn.num_features)
        s = weight / torch.sqrt(bn.running_var + bn.eps)
        if not bool((s > 0).all()):
            return False
        layer.weight.mul_(s.reshape((-1,) + (1,) * (layer.weight.dim() - 1)))
        if layer.bias is None:
            layer.bias = torch.nn.Parameter(torch.zeros_like(s))
        else:
            layer.bias.mul_(s)
    return True


def affine_standalone_batchnorm(model):
    """A copy of ``model`` whose BatchNorms not directly after a conv (in an nn.Sequential) are
    ``x * s + t`` modules, or ``x + t`` with ``s`` moved into the layer before a ReLU before them;
    returns (model, number replaced). The original is untouched."""
    from torch import nn

    affine = _affine_class()
    model = copy.deepcopy(model)
    replaced = 0

    def visit(module: nn.Module) -> None:
        nonlocal replaced
        names = list(module._modules)
        for i, name in enumerate(names):
            child = module._modules[name]
            if child is None:
                continue
            if type(child).__name__ in _BNS and not child.training:
                prev = module._modules[names[i - 1]] if (isinstance(module, nn.Sequential) and i > 0) else None
                if prev is None or type(prev).__name__ not in _CONVS:
                    layer = module._modules[names[i - 2]] if prev is not None and i > 1 else None
                    if (type(prev).__name__ == "ReLU" and type(layer).__name__ in _WEIGHTED
                            and _scale_into(layer, child)):
                        module._modules[name] = affine(child, shift_only=True)
                    else:
                        module._modules[name] = affine(child)
                    replaced += 1
                    continue
            visit(child)

    visit(model)
    return model, replaced
