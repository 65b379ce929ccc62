"""SpecMelCNN: two views of one 257-bin log spectrogram in one model under 50,000 parameters.

Why it exists: the two earlier small defaults fail in opposite places. LogMelCNN (40 mel
bands, per-window normalisation) catches unseen TTS voices but not vocoded copies;
LogSpecCNN (all 257 bins, training-set normalisation) catches vocoders and codecs but
loses some TTS voices. Averaging the two bundles' clip log-odds lowered test pooled EER
from 18.7 % (LogSpecCNN) to 15.4 % on the developer corpus (``benchmarks/score_fusion.py``),
so this model learns both views jointly instead of shipping two models.

Layout, on the globally normalised log spectrogram (B, 1, 257, frames):

* fine branch - 5x5 conv stride 2, then three 3x3 conv -> BatchNorm -> ReLU -> 2x2 max-pool
  blocks, widths 12, 24, 36, 48, global average pooling;
* band branch - a fixed (not trained) projection onto 40 mel bands (each band the
  weighted mean of its bins), normalised per band over the window (as front end (b)
  does), then four 3x3 blocks, widths 8, 16, 32, 48, global average pooling;
* head - both 48-d vectors concatenated, dropout 0.2, linear 96 -> 2 logits (class 0 =
  bona fide);
* frequency-position variant (``spec_mel_cnn_fp``, ``pooling="time"``) - each branch's last
  block averages over time only, so the head sees which frequency rows (16 of the fine branch,
  5 of the band branch) hold a cue instead of their global mean; head 1,008 -> 2 (48,566
  parameters). Why: the global-pool model cannot fit its own training vocoders (train EER
  6.5 %, ``benchmarks/results/error_sources_spec_mel_cnn_mt.md``), and vocoder and codec
  traces sit in particular bands, which a global average over frequency blurs together;
  LCNN-style anti-spoofing models likewise keep the frequency axis up to the classifier.
  With the default's recipe it fit the training split and dev better but unseen test vocoders
  worse (HiFi-GAN, LPC), so it is not the default (benchmarks/experiments.md);
* frequency-max variant (``spec_mel_cnn_fmax``, ``pooling="freq_max"``) - each branch's last
  block averages over time and then takes the largest frequency row: a cue confined to one
  band keeps its strength, as in the fp variant, but the head cannot learn its position; same
  46,742 parameters as the default. With the default's recipe (one seed) it lost unseen systems
  even more than the fp variant (test HiFi-GAN 42.5 %), so it is not the default either
  (benchmarks/experiments.md);
* statistics variant (``spec_mel_cnn_stats``, ``pooling="stats"``) - each branch's last block
  averages over frequency rows, then keeps each channel's mean and standard deviation over time
  (:class:`TimeStats`, as x-vector speaker models pool), so the head also sees how a cue varies in
  time; head 192 -> 2 (46,934 parameters). Why: the default's worst dev systems (WORLD-DIO, Lyra
  6k) leave traces that come and go, which a global mean averages away. With the default's recipe
  (one seed) it did worse on dev and test, WORLD-DIO included, so it is not the default
  (benchmarks/experiments.md);
* one-class head (``head="one_class"``) - the 2-logit linear head replaced by OC-Softmax's
  learned bona fide direction (:mod:`training.models.one_class`): 96 instead of 194 head
  parameters (46,644 at export), same export and runtime. With the default's recipe (two seeds)
  it caught TTS voices better and vocoders and codecs worse, dev 11.3 % against 8.6 %, so it is
  not the default (benchmarks/experiments.md);
* high-resolution variant (``spec_mel_cnn_hires``, ``_mt``) - the same model on a 1,024-point
  log spectrogram (:func:`hires_spec`, 513 bins): the same 46,742 exported parameters (both
  branches end in global pooling) at about twice the fine branch's MACs. With the default's recipe
  (one seed) it did worse on dev and test, WORLD-DIO included, so it is not the default
  (benchmarks/experiments.md);
* separable variant (``spec_mel_cnn_sep``, ``_mt``) - each branch's blocks after the first are
  depthwise-separable (:func:`~training.models.logmel_cnn.conv_blocks`), which pays for widths
  16, 48, 96, 160 and 16, 48, 96, 144 within the budget: 46,802 parameters, 48.7 M MACs, head 304 -> 2.
  Why: doubling every width gained about a point of pooled EER at four times the parameters. With
  the default's recipe (one seed) it did not: dev 8.6 %, test 11.8 %, training vocoders fitted no
  better, so it is not the default (benchmarks/experiments.md);
* squeeze-excitation variant (``spec_mel_cnn_se``, ``_mt``) - every block of both branches ends in a
  channel gate computed from its mean activations (``se_reduction`` 8, :func:`conv_blocks`): 49,178
  parameters, the same 60.0 M conv and linear MACs. Why: the same recipe at twice every width (four
  times the parameters) lowered the default's worst dev systems, WORLD-DIO and Lyra 6k, by 8-9 points
  with one seed, and a gate lets a few channels weigh differently for each input instead of adding
  channels. With the default's recipe (one seed) it did worse on dev (9.9 % against 7.3 %), those two
  systems unchanged, so it is not the default (benchmarks/experiments.md);
* multi-task variant (``spec_mel_cnn_mt``) - a second head on the same 96-d vector, dropout 0.2,
  linear 96 -> n_sources (each training spoofing system and ``none``), trained with the summed
  cross-entropies as in EfficientCNN's multi-task variants and dropped at export, so the
  exported model is the single-task one: 97 x n_sources parameters in training only.

46,742 trained parameters plus the 10,280 fixed projection weights (not counted, as
BatchNorm statistics are not); 60.0 M MACs per 4-s window. One front end
(``logspec_spec``) feeds both branches, so the bundle still carries a single ``FeatureSpec``.
"""
from __future__ import annotations

import copy
from functools import partial

import numpy as np
import torch
from torch import nn

from edge_cm.features import FeatureSpec, mel_filterbank
from training.models.logmel_cnn import conv_blocks
from training.models.logspec_cnn import logspec_spec
from training.models.one_class import OneClassHead

FINE_WIDTHS = (12, 24, 36, 48)
BAND_WIDTHS = (8, 16, 32, 48)
SEP_FINE_WIDTHS = (16, 48, 96, 160)  # separable variant: the default's budget, 3.3 times its last width
SEP_BAND_WIDTHS = (16, 48, 96, 144)
N_BANDS = 40
SE_REDUCTION = 8  # the widest gates under 50,000 parameters: 49,178 (4 gives 51,065; tests/test_logmel_cnn.py)


def hires_spec() -> FeatureSpec:
    """Log-magnitude STFT with twice the frequency resolution: Hamming 1,024 (64 ms), n_fft 1,024
    (513 bins, 15.6 Hz apart), hop 160 (10 ms). A Hamming main lobe is 4 bins wide: 62.5 Hz here,
    125 Hz at 512 points, so only this front end resolves the harmonics of voices whose F0 is under
    125 Hz, where a vocoder's F0 errors (WORLD-DIO, the worst dev system) would show."""
    return FeatureSpec(kind="log_spectrogram", win_length=1024, hop_length=160, n_fft=1024,
                       window="hamming", power=1.0, log_offset=1e-7)


def band_projection(spec: FeatureSpec, n_bands: int = N_BANDS) -> np.ndarray:
    """(n_bands, n_bins) mel triangles over the spec's bins, each row summing to 1 (a weighted mean)."""
    mel_spec = FeatureSpec(kind="log_mel", win_length=spec.win_length, hop_length=spec.hop_length,
                           n_fft=spec.n_fft, n_mels=n_bands, f_min=20.0, f_max=7600.0)
    fb = mel_filterbank(mel_spec)
    return (fb / fb.sum(axis=1, keepdims=True)).astype(np.float32)


class AxisMask(nn.Module):
    """In training only, each example loses one random run of 0..``max_width`` rows along
    ``dim`` of (B, 1, bins, frames), set to 0 (the training-set mean after global normalisation).
    Identity in eval mode, hence absent from exported models."""

    dim = 2

    def __init__(self, max_width: int):
        super().__init__()
        if int(max_width) < 0:
            raise ValueError(f"a mask width must be >= 0 (0 = off), got {max_width}")
        self.max_width = int(max_width)

    def forward(self, x):
        if not self.training or self.max_width <= 0:
            return x
        n, size = x.shape[0], x.shape[self.dim]
        shape = [n] + [1] * (x.dim() - 1)
        width = torch.randint(0, min(self.max_width, size) + 1, shape, device=x.device)
        start = (torch.rand(shape, device=x.device) * (size - width + 1)).floor()
        index_shape = [1] * x.dim()
        index_shape[self.dim] = size
        index = torch.arange(size, device=x.device).view(index_shape)
        return x * ((index < start) | (index >= start + width)).to(x.dtype)


class FreqMask(AxisMask):
    """SpecAugment's frequency mask (up to ``max_width`` bins): the detector cannot rely on one
    narrow band that an unseen spoofing system may not share."""

    dim = 2


class TimeMask(AxisMask):
    """SpecAugment's time mask (up to ``max_width`` frames): no single stretch of the window (an
    onset, the seam of a looped short clip) decides the score."""

    dim = 3


class TimeMean(nn.Module):
    """(B, C, rows, frames) -> (B, C, rows): the mean over frames, so any window length gives
    one vector per frequency row (ONNX ReduceMean, TFLite MEAN)."""

    def forward(self, x):
        return x.mean(dim=3)


class TimeMeanFreqMax(nn.Module):
    """(B, C, rows, frames) -> (B, C): the mean over frames, then the largest row. A cue that
    fills one band is kept at full strength instead of being averaged with the quiet rows, yet
    the head still cannot learn which row it came from (ONNX ReduceMean + ReduceMax)."""

    def forward(self, x):
        return x.mean(dim=3).amax(dim=2)


class TimeStats(nn.Module):
    """(B, C, rows, frames) -> (B, 2C): the mean over rows, then the mean and the standard deviation
    over frames (x-vector statistics pooling). Why: a global mean keeps how strong a cue is on
    average but not how it varies in time, and some vocoder traces come and go (an F0 tracker's
    octave jumps and voicing slips in WORLD-DIO) where real speech changes smoothly."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps  # keeps the square root's gradient finite on a constant channel

    def forward(self, x):
        x = x.mean(dim=2)
        mean = x.mean(dim=2)
        var = ((x - mean.unsqueeze(2)) ** 2).mean(dim=2)
        return torch.cat([mean, torch.sqrt(var + self.eps)], dim=1)


def window_norm(x, eps: float):
    """(B, C, rows, frames) -> each row normalised to zero mean and unit variance over the window's
    frames (``eps`` keeps a constant row finite)."""
    mean = x.mean(dim=3, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=3, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def multitask(builder):
    """``builder`` as a multi-task builder: ``n_sources`` (training systems and ``none``) must be >= 2."""
    def build(n_sources: int = 0, **kw):
        if n_sources < 2:
            raise ValueError("a multi-task model needs n_sources >= 2 (systems + 'none')")
        return builder(n_sources=n_sources, **kw)
    return build


def register_with_source_head(name: str, builder, feature_spec, input_shape: tuple[int, ...], description: str) -> None:
    """Register ``name`` and its multi-task twin ``name_mt`` (the training-only source head), both on
    ``feature_spec`` with global statistics."""
    from training.models.registry import Architecture, register

    register(Architecture(name=name, builder=builder, feature_spec=feature_spec, input_shape=input_shape,
                          needs_global_stats=True, description=description))
    register(Architecture(name=f"{name}_mt", builder=multitask(builder), feature_spec=feature_spec,
                          input_shape=input_shape, needs_global_stats=True, multitask=True,
                          description=f"{name} with a training-only source head (spoofing system or none)"))


POOLINGS = ("global", "time", "freq_max", "stats")
HEADS = ("linear", "one_class")


class SpecMelCNN(nn.Module):
    """Globally normalised log spectrogram (B, 1, 257, frames) -> logits (B, n_classes).

    ``freq_mask_bins`` > 0 adds a training-time :class:`FreqMask` on the input, ``time_mask_frames``
    > 0 a :class:`TimeMask` (neither has parameters).
    ``n_sources`` > 0 adds the source head; forward then returns ``(logits, source_logits)``.
    ``pooling`` is ``"global"`` (each branch's last block averages over frequency and time) or
    ``"time"`` (over time only: the head weighs each frequency row separately) or ``"freq_max"``
    (over time, then the maximum over rows: position-free, but a one-band cue is not diluted) or
    ``"stats"`` (:class:`TimeStats`: over frequency, then each channel's mean and standard deviation
    over time; head 192 -> 2).
    ``head`` is ``"linear"`` (96 -> 2 logits) or ``"one_class"`` (:class:`OneClassHead`, 96
    parameters, trained with the OC-Softmax loss; ``model_args: {head: one_class}``).
    ``spec`` is the front end whose bins the band branch projects (default :func:`logspec_spec`);
    the architecture's registered ``feature_spec`` must be the same. ``extra_features`` widens the
    heads for a subclass's own branch (see :meth:`classify`). ``separable`` makes each branch's
    blocks after the first depthwise-separable (:func:`conv_blocks`; ``spec_mel_cnn_sep``).
    ``se_reduction`` > 0 adds squeeze-excitation to every block of both branches (``spec_mel_cnn_se``).
    """

    def __init__(self, fine_widths: tuple[int, ...] = FINE_WIDTHS, band_widths: tuple[int, ...] = BAND_WIDTHS,
                 n_bands: int = N_BANDS, n_classes: int = 2, dropout: float = 0.2, eps: float = 1e-5,
                 freq_mask_bins: int = 0, fine_in_channels: int = 1, n_sources: int = 0,
                 pooling: str = "global", head: str = "linear", time_mask_frames: int = 0,
                 spec: FeatureSpec | None = None, extra_features: int = 0, separable: bool = False,
                 se_reduction: int = 0):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if spec is not None and not (isinstance(spec, FeatureSpec) and spec.kind == "log_spectrogram"):
            # The architecture fixes its front end (it travels in the bundle); a config cannot swap it.
            raise ValueError(f"spec must be a log_spectrogram FeatureSpec set by the architecture, got "
                             f"{type(spec).__name__}; choose spec_mel_cnn_hires(_mt) for the 1,024-point "
                             "front end instead of setting spec in model_args")
        # Parameter-free, so the state dict (and every saved checkpoint) is the same with or without it.
        self.mask = nn.Sequential(FreqMask(freq_mask_bins), TimeMask(time_mask_frames))
        proj = torch.from_numpy(band_projection(spec or logspec_spec(), n_bands))
        # A frozen Linear (not a buffer) so MAC counters and exporters see an ordinary MatMul.
        self.bands = nn.Linear(proj.shape[1], n_bands, bias=False)
        self.bands.weight.data.copy_(proj)
        self.bands.weight.requires_grad_(False)
        self.eps = eps
        self.fine = conv_blocks(fine_widths, stem_stride=2, in_channels=fine_in_channels, separable=separable,
                                se_reduction=se_reduction)
        self.band = conv_blocks(band_widths, separable=separable, se_reduction=se_reduction)
        if pooling != "global":
            last = {"time": TimeMean, "freq_max": TimeMeanFreqMax, "stats": TimeStats}[pooling]
            self.fine[-1], self.band[-1] = last(), last()
        with torch.no_grad():  # the head's width: rows are fixed by the bins, frames are pooled
            probe = torch.zeros(1, fine_in_channels, proj.shape[1], 16)
            hidden = (self.fine.eval()(probe).numel() + self.band.eval()(probe[:, :1, :n_bands]).numel()
                      + extra_features)
        self.fine.train(), self.band.train()
        if head == "one_class":
            if n_classes != 2:
                raise ValueError("a one-class head scores bona fide against the rest: n_classes must be 2")
            self.head = OneClassHead(hidden, dropout=dropout)
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        self.source_head = (nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_sources))
                            if n_sources > 0 else None)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not self.bands:
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = self.mask(x)
        return self.classify(x, x)

    def classify(self, spec, fine_input, extra=None):
        """Logits from the log spectrogram (B, 1, 257, frames), whose mel bands feed the band
        branch, and the fine branch's input (the same spectrogram, or more channels of it);
        ``extra`` (B, extra_features), a subclass's own branch, joins the heads' input."""
        bands = window_norm(self.bands(spec.transpose(2, 3)).transpose(2, 3), self.eps)  # (B, 1, n_bands, frames)
        parts = [self.fine(fine_input).flatten(1), self.band(bands).flatten(1)]
        h = torch.cat(parts if extra is None else parts + [extra], dim=1)
        if self.source_head is None:
            return self.head(h)
        return self.head(h), self.source_head(h)

    def export_module(self) -> SpecMelCNN:
        """A copy without the source head: forward returns only the (B, 2) logits."""
        out = copy.deepcopy(self)
        out.source_head = None
        return out


def _register() -> None:
    from training.models.registry import Architecture, register

    spec = logspec_spec()
    register(Architecture(name="spec_mel_cnn", builder=SpecMelCNN, feature_spec=logspec_spec,
                          input_shape=(1, spec.n_bins, spec.n_frames(64000)), needs_global_stats=True,
                          description="two-branch CNN: 257-bin log spectrogram and its 40 mel bands (per-window norm)"))

    multitask_builder = multitask(SpecMelCNN)

    register(Architecture(name="spec_mel_cnn_mt", builder=multitask_builder, feature_spec=logspec_spec,
                          input_shape=(1, spec.n_bins, spec.n_frames(64000)), needs_global_stats=True,
                          multitask=True,
                          description="SpecMelCNN with a training-only source head (spoofing system or none)"))
    pooled_variants = (
        ("spec_mel_cnn_fp", "time", "SpecMelCNN pooled over time only: the head weighs each frequency row"),
        ("spec_mel_cnn_fmax", "freq_max", "SpecMelCNN pooled by time mean, then max over frequency rows"),
        ("spec_mel_cnn_stats", "stats", "SpecMelCNN pooled by frequency mean, then time mean and std"),
    )
    for name, pooling, description in pooled_variants:
        register(Architecture(name=name, builder=partial(SpecMelCNN, pooling=pooling),
                              feature_spec=logspec_spec, input_shape=(1, spec.n_bins, spec.n_frames(64000)),
                              needs_global_stats=True, description=description))
        register(Architecture(name=f"{name}_mt", builder=partial(multitask_builder, pooling=pooling),
                              feature_spec=logspec_spec, input_shape=(1, spec.n_bins, spec.n_frames(64000)),
                              needs_global_stats=True, multitask=True,
                              description=f"{name} with a training-only source head (spoofing system or none)"))
    sep = dict(separable=True, fine_widths=SEP_FINE_WIDTHS, band_widths=SEP_BAND_WIDTHS)
    register(Architecture(name="spec_mel_cnn_sep", builder=partial(SpecMelCNN, **sep), feature_spec=logspec_spec,
                          input_shape=(1, spec.n_bins, spec.n_frames(64000)), needs_global_stats=True,
                          description="SpecMelCNN with depthwise-separable blocks, widths 16-160 and 16-144"))
    register(Architecture(name="spec_mel_cnn_sep_mt", builder=partial(multitask_builder, **sep),
                          feature_spec=logspec_spec, input_shape=(1, spec.n_bins, spec.n_frames(64000)),
                          needs_global_stats=True, multitask=True,
                          description="spec_mel_cnn_sep with a training-only source head (spoofing system or none)"))
    register_with_source_head("spec_mel_cnn_se", partial(SpecMelCNN, se_reduction=SE_REDUCTION), logspec_spec,
                              (1, spec.n_bins, spec.n_frames(64000)),
                              f"SpecMelCNN with squeeze-excitation (reduction {SE_REDUCTION}) after every block")
    hires = hires_spec()
    register(Architecture(name="spec_mel_cnn_hires", builder=partial(SpecMelCNN, spec=hires),
                          feature_spec=hires_spec, input_shape=(1, hires.n_bins, hires.n_frames(64000)),
                          needs_global_stats=True,
                          description="SpecMelCNN on a 1,024-point (513-bin) log spectrogram"))
    register(Architecture(name="spec_mel_cnn_hires_mt", builder=partial(multitask_builder, spec=hires),
                          feature_spec=hires_spec, input_shape=(1, hires.n_bins, hires.n_frames(64000)),
                          needs_global_stats=True, multitask=True,
                          description="spec_mel_cnn_hires with a training-only source head (spoofing system or none)"))

_register()
