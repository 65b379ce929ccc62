"""ResNetSE: residual CNN with squeeze-excitation blocks and self-attentive pooling.

Two members of the family, after the ResNetSE34 models of voxceleb_trainer:

* ``G-ResNetSE`` (teacher): channels (32, 64, 128, 256), blocks (3, 4, 6, 3), a 3x3 stem
  at full resolution, strides (1, 2, 2, 2); attention over time on the flattened
  channel x frequency map (one softmax weight per feature and frame).
* ``L-ResNetSE`` (student): channels (16, 32, 64, 128), same blocks, a 7x7 stem with
  stride 2 in frequency, strides (1, 2, 2, 1); frequency averaged away, then a
  single attention weight per frame.

Input: the 40-band log-mel features of :func:`edge_cm.features.resnetse_spec`, shape
(batch, 1, 40, frames) as the exporter feeds them, or (batch, 40, frames); any number
of frames (398 for a 4-s window). Output: logits over :data:`CLASSES` (``bonafide``
first, the runtime's score convention). Every op here (conv, batch norm, mean, softmax,
sum) exports to ONNX and TFLite (``tests/test_resnetse.py`` runs both exports).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from edge_cm.features import resnetse_spec
from training.resnetse.families import CLASSES  # bonafide, six spoofing families, adversarial

# Reported in the paper; ours are measured by ``edge-cm-train describe`` on a 4-s input
# (40 x 398 log-mel). The paper's input length for its MACs is assumed to be the same 4 s.
# ``mflops`` = 2 x MACs, the unit ``describe`` prints.
PAPER_FIGURES = {
    "resnetse_teacher": {"params": 6.39e6, "macs": 4.62e9, "mflops": 2 * 4.62e3,
                         "input": "40 x 398 log-mel (4 s), assumed"},
    "resnetse_student": {"params": 1.44e6, "macs": 0.90e9, "mflops": 2 * 0.90e3,
                         "input": "40 x 398 log-mel (4 s), assumed",
                         "params_vs_teacher": 0.225, "macs_vs_teacher": 0.211},
}

# Channels of the quarter-width stand-ins (``resnetse_*_quarter``) the ablation can run with.
QUARTER_CHANNELS = {"teacher": (8, 16, 32, 64), "student": (4, 8, 16, 32)}


@dataclass(frozen=True)
class ResNetSEConfig:
    """Architecture of one ResNetSE (frequency and time sizes in feature bins / frames)."""

    channels: tuple[int, int, int, int] = (32, 64, 128, 256)
    blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    strides: tuple[int, int, int, int] = (1, 2, 2, 2)
    stem: str = "3x3"
    """``3x3`` (stride 1) or ``7x7s2`` (7x7, stride 2 in frequency only)."""
    pooling: str = "channel_freq"
    """``channel_freq``: attention per (channel, bin) feature; ``channel``: average over bins first."""
    n_mels: int = 40
    embed_dim: int = 512
    attention_dim: int = 128
    se_reduction: int = 8
    n_classes: int = len(CLASSES)
    classes: tuple[str, ...] = field(default=CLASSES)

    def __post_init__(self) -> None:
        if self.stem not in ("3x3", "7x7s2"):
            raise ValueError(f"stem must be '3x3' or '7x7s2', got {self.stem!r}")
        if self.pooling not in ("channel_freq", "channel"):
            raise ValueError(f"pooling must be 'channel_freq' or 'channel', got {self.pooling!r}")
        if len(self.classes) != self.n_classes or self.classes[0] != "bonafide":
            raise ValueError("classes must have n_classes entries and start with 'bonafide'")

    @property
    def out_bins(self) -> int:
        """Frequency bins left after the stem and the strided stages."""
        bins = self.n_mels
        for s in ((2 if self.stem == "7x7s2" else 1),) + tuple(self.strides):
            bins = (bins + s - 1) // s
        return bins


def teacher_config(**overrides) -> ResNetSEConfig:
    """G-ResNetSE, the teacher."""
    return ResNetSEConfig(**overrides)


def student_config(**overrides) -> ResNetSEConfig:
    """L-ResNetSE, the lightweight student."""
    base = dict(channels=(16, 32, 64, 128), strides=(1, 2, 2, 1), stem="7x7s2", pooling="channel")
    base.update(overrides)
    return ResNetSEConfig(**base)


class SqueezeExcite(nn.Module):
    """Channel gating from the mean over frequency and time."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean(dim=(2, 3)))
        return x * gate[:, :, None, None]


class SEBasicBlock(nn.Module):
    """Two 3x3 convolutions, squeeze-excitation, residual connection."""

    def __init__(self, c_in: int, c_out: int, stride: int, reduction: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.se = SqueezeExcite(c_out, reduction)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.se(self.bn2(self.conv2(y)))
        return self.relu(y + self.shortcut(x))


class SelfAttentivePooling(nn.Module):
    """Attention-weighted mean over time: (B, D, T) -> (B, D).

    ``per_feature=True`` learns one softmax over time for every feature (a 1x1 conv
    bottleneck, as ResNetSE34V2); otherwise a single weight per frame (tanh
    projection scored against a learned context vector, as ResNetSE34L).
    """

    def __init__(self, dim: int, attention_dim: int, per_feature: bool):
        super().__init__()
        self.per_feature = per_feature
        if per_feature:
            self.score = nn.Sequential(nn.Conv1d(dim, attention_dim, 1), nn.ReLU(inplace=True),
                                       nn.BatchNorm1d(attention_dim), nn.Conv1d(attention_dim, dim, 1))
        else:
            self.score = nn.Sequential(nn.Conv1d(dim, dim, 1), nn.Tanh(), nn.Conv1d(dim, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(x), dim=2)
        return (x * weights).sum(dim=2)


class ResNetSE(nn.Module):
    """Features (B, 1, n_mels, frames) or (B, n_mels, frames) -> logits (B, n_classes).

    :meth:`embed` gives the pooled, projected utterance embedding (B, embed_dim).
    """

    def __init__(self, config: ResNetSEConfig | None = None):
        super().__init__()
        self.config = cfg = config or teacher_config()
        c0 = cfg.channels[0]
        if cfg.stem == "3x3":
            stem_conv = nn.Conv2d(1, c0, 3, padding=1, bias=False)
        else:
            stem_conv = nn.Conv2d(1, c0, 7, stride=(2, 1), padding=3, bias=False)
        self.stem = nn.Sequential(stem_conv, nn.BatchNorm2d(c0), nn.ReLU(inplace=True))
        stages = []
        c_in = c0
        for c_out, n_blocks, stride in zip(cfg.channels, cfg.blocks, cfg.strides):
            blocks = [SEBasicBlock(c_in, c_out, stride, cfg.se_reduction)]
            blocks += [SEBasicBlock(c_out, c_out, 1, cfg.se_reduction) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        per_feature = cfg.pooling == "channel_freq"
        pooled_dim = c_in * cfg.out_bins if per_feature else c_in
        self.pool = SelfAttentivePooling(pooled_dim, cfg.attention_dim, per_feature)
        self.project = nn.Linear(pooled_dim, cfg.embed_dim)
        self.classifier = nn.Linear(cfg.embed_dim, cfg.n_classes)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Utterance embedding (B, embed_dim): the pooled map, projected (the GE2E embedding)."""
        if features.dim() == 3:
            features = features.unsqueeze(1)
        x = self.stages(self.stem(features))  # (B, C, F', T')
        if self.config.pooling == "channel_freq":
            x = x.flatten(1, 2)
        else:
            x = x.mean(dim=2)
        return self.project(self.pool(x))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(features))


def build_teacher(**overrides) -> ResNetSE:
    return ResNetSE(teacher_config(**overrides))


def build_student(**overrides) -> ResNetSE:
    return ResNetSE(student_config(**overrides))


def default_input_shape() -> tuple[int, int, int]:
    """(1, bins, frames) of a 4-s window through :func:`resnetse_spec`: (1, 40, 398)."""
    spec = resnetse_spec()
    return (1,) + spec.output_shape(4 * spec.sample_rate)


def _register() -> None:
    from training.models.registry import Architecture, register

    from training.resnetse.families import CLASSES

    shape = default_input_shape()
    register(Architecture(name="resnetse_teacher", builder=build_teacher, feature_spec=resnetse_spec,
                          input_shape=shape, description="G-ResNetSE teacher: SE-ResNet34, channels 32-256, "
                          "self-attentive pooling, 8 classes", classes=tuple(CLASSES),
                          paper=PAPER_FIGURES["resnetse_teacher"]))
    register(Architecture(name="resnetse_student", builder=build_student, feature_spec=resnetse_spec,
                          input_shape=shape, description="L-ResNetSE student: SE-ResNet34, channels 16-128, "
                          "self-attentive pooling, 8 classes", classes=tuple(CLASSES),
                          paper=PAPER_FIGURES["resnetse_student"]))
    # Same blocks, strides, stems and pooling at a quarter of the channels: the ablation's
    # stand-in when the paper widths cannot be trained to convergence on a 2-core CPU.
    for name, builder, channels in (("resnetse_teacher_quarter", build_teacher, QUARTER_CHANNELS["teacher"]),
                                    ("resnetse_student_quarter", build_student, QUARTER_CHANNELS["student"])):
        register(Architecture(name=name, builder=partial(builder, channels=channels), feature_spec=resnetse_spec,
                              input_shape=shape, classes=tuple(CLASSES),
                              description=f"{name.split('_')[1]} layout at a quarter of the channels, "
                              f"{channels[0]}-{channels[-1]}, 8 classes"))


_register()
