"""LogMelCNN: a plain 4-stage CNN on the 40-band log-mel front end, under 50,000 parameters.

Why it exists: on a 2-core CPU the training budget is a few thousand optimiser steps.
A 4-s window is 40 x 398 log-mel values here against 865 x 390 for the EfficientCNN's
log spectrogram, so a step costs a fraction as much, and on the developer corpus this
model learned held-out systems several times faster per CPU minute (the two training
curves are in README, "The bundled default model").

Layout: four blocks of 3x3 conv (padding 1) -> BatchNorm -> ReLU -> 2x2 max-pool
(the last block pools globally by averaging), widths 16, 32, 48, 64; dropout 0.2;
linear 64 -> 2 logits (class 0 = bona fide). Global average pooling makes the
model independent of the window length. 46,834 parameters; 41 M MACs per 4-s window.
"""
from __future__ import annotations

from torch import nn

from edge_cm.features import resnetse_spec
from training.models.resnetse import SqueezeExcite

WIDTHS = (16, 32, 48, 64)
N_FRAMES_4S = resnetse_spec().n_frames(64000)


def conv_blocks(widths: tuple[int, ...], stem_stride: int = 1, in_channels: int = 1,
                separable: bool = False, se_reduction: int = 0) -> nn.Sequential:
    """3x3 conv -> BatchNorm -> ReLU -> 2x2 max-pool per width; the last block pools globally.

    ``stem_stride`` > 1 makes the first conv 5x5 with that stride, so the same blocks take
    inputs with many more bins. ``separable`` makes every conv after the first a depthwise 3x3
    conv -> BatchNorm -> ReLU -> 1x1 conv (MobileNet's block): up to 9 times fewer weights per
    block, so the same budget buys wider layers. ``se_reduction`` > 0 adds squeeze-excitation after
    every block's ReLU (:class:`~training.models.resnetse.SqueezeExcite`, bottleneck
    ``max(width // se_reduction, 4)``): each channel is scaled by a gate computed from the block's
    mean activations. Input (B, in_channels, bins, frames), output (B, widths[-1], 1, 1).
    """
    if se_reduction != int(se_reduction) or se_reduction < 0:
        raise ValueError(f"se_reduction must be a whole number >= 0 (0 = no squeeze-excitation), got {se_reduction}")
    layers: list[nn.Module] = []
    cin = in_channels
    for i, cout in enumerate(widths):
        if i == 0 and stem_stride > 1:
            convs = [nn.Conv2d(cin, cout, 5, stride=stem_stride, padding=2)]
        elif i > 0 and separable:
            convs = [nn.Conv2d(cin, cin, 3, padding=1, groups=cin), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                     nn.Conv2d(cin, cout, 1)]
        else:
            convs = [nn.Conv2d(cin, cout, 3, padding=1)]
        gate = [SqueezeExcite(cout, int(se_reduction))] if se_reduction else []
        layers += convs + [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)] + gate + [
            nn.AdaptiveAvgPool2d(1) if i == len(widths) - 1 else nn.MaxPool2d(2)]
        cin = cout
    return nn.Sequential(*layers)


class LogMelCNN(nn.Module):
    """Features (B, 1, 40, frames) -> logits (B, 2)."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS, n_classes: int = 2, dropout: float = 0.2,
                 stem_stride: int = 1):
        super().__init__()
        self.features = conv_blocks(widths, stem_stride)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(widths[-1], n_classes))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.head(self.features(x))


def _register() -> None:
    from training.models.registry import Architecture, register

    register(Architecture(name="logmel_cnn", builder=LogMelCNN, feature_spec=resnetse_spec,
                          input_shape=(1, 40, N_FRAMES_4S),
                          description="4-stage CNN on 40-band log-mel, 16-64 channels, global average pooling"))


_register()
