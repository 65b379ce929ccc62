"""WaveCNN: a raw-waveform detector under 50,000 parameters (RawNet2's front half, shrunk).

Why it exists: the spectrogram models here miss many vocoded copies of their own training speech
(the shipped default's training-split EER is 32 % on Griffin-Lim and 15 % on WORLD-Harvest,
``benchmarks/results/error_sources_spec_mel_cnn_mt_freqmask.md``). A Griffin-Lim copy keeps the
original's STFT magnitude by construction; what differs is in the phase and the waveform's fine
structure, which a log-magnitude front end throws away. The raw-waveform detectors of the
literature (RawNet2, AASIST) learn their filterbank on the samples instead; this is the smallest
such model, not a reproduction of either.

Layout, on the instance-normalised 4-s window (B, 64000) at 16 kHz:

* stem - a learned filterbank: 1-D conv, 40 filters of 129 taps (8 ms), stride 8 (0.5 ms),
  then |.| (RawNet2's rectification of its sinc filters), 3x max-pool, BatchNorm, LeakyReLU;
* five blocks - 1-D conv, 3 taps -> BatchNorm -> LeakyReLU -> 3x max-pool, widths 40, 48, 48,
  64, 64 (2,666 frames after the stem, 10 after the last block);
* head - mean and maximum over time (128-d), dropout 0.2, linear 128 -> 2 logits (class 0 =
  bona fide);
* fixed-filter variant (``wave_cnn_sinc``, ``_mt``) - the stem's 40 filters are not learned but
  fixed Hamming-windowed sinc band-passes of 200 Hz each, tiling 0-8 kHz (:func:`sinc_filterbank`),
  as RawNet2's sinc layer (whose authors fixed its filters); 39,842 trained parameters;
* multi-task variant (``wave_cnn_mt``) - a second head on the same 128-d vector, linear 128 ->
  n_sources, trained with the summed cross-entropies and dropped at export, as SpecMelCNN's.

45,002 trained parameters, 62.5 M MACs per 4-s window, two thirds of them in the stem
(``edge-cm-train describe wave_cnn``).

Trained with the default's recipe (one seed each), both stems did much worse than the shipped
SpecMelCNN (pooled dev EER 17.9 and 18.7 % against 8.0 %), with the Lyra codecs and HiFi-GAN at
38-56 % EER, so neither is a default (benchmarks/experiments.md).
"""
from __future__ import annotations

import copy
from functools import partial

import numpy as np
import torch
from torch import nn

from edge_cm.features import waveform_spec

STEM_FILTERS = 40
STEM_TAPS = 129
STEM_STRIDE = 8
WIDTHS = (40, 48, 48, 64, 64)
POOL = 3
WINDOW_SAMPLES = 64000
STEMS = ("learned", "sinc")


def sinc_filterbank(n_filters: int, taps: int, sample_rate: int = 16000) -> np.ndarray:
    """(n_filters, taps) Hamming-windowed sinc band-pass filters whose pass bands tile 0 Hz to
    sample_rate / 2 in equal widths (linear scale; 200 Hz each for 40 filters at 16 kHz), each
    scaled to unit gain at its band centre."""
    edges = np.linspace(0.0, sample_rate / 2, n_filters + 1) / sample_rate  # cycles per sample
    n = np.arange(taps) - (taps - 1) / 2
    window = np.hamming(taps)
    bank = np.stack([(2 * hi * np.sinc(2 * hi * n) - 2 * lo * np.sinc(2 * lo * n)) * window
                     for lo, hi in zip(edges[:-1], edges[1:])])
    centres = (edges[:-1] + edges[1:]) / 2
    gain = np.abs((bank * np.exp(-2j * np.pi * centres[:, None] * n[None, :])).sum(axis=1))
    return (bank / gain[:, None]).astype(np.float32)


class WaveEncoder(nn.Module):
    """Waveform (B, 1, samples) -> (B, 2 * widths[-1]): the stem, the 1-D blocks, then the mean
    and maximum over time. WaveCNN's body, also the waveform branch of SpecMelWaveCNN.

    Layers keep torch's default initialisation: the owning model initialises all its layers
    in one pass, so a seed gives the same weights as before the encoder was split out."""

    def __init__(self, stem_filters: int = STEM_FILTERS, stem_taps: int = STEM_TAPS,
                 stem_stride: int = STEM_STRIDE, widths: tuple[int, ...] = WIDTHS,
                 negative_slope: float = 0.3):
        super().__init__()
        if stem_taps % 2 == 0 or stem_stride < 1 or not widths:
            raise ValueError(f"need an odd stem_taps, stem_stride >= 1 and at least one block, got "
                             f"{stem_taps}, {stem_stride}, {widths}")
        self.stem = nn.Conv1d(1, stem_filters, stem_taps, stride=stem_stride, padding=stem_taps // 2,
                              bias=False)
        self.stem_post = nn.Sequential(nn.MaxPool1d(POOL), nn.BatchNorm1d(stem_filters),
                                       nn.LeakyReLU(negative_slope))
        layers: list[nn.Module] = []
        in_ch = stem_filters
        for width in widths:
            layers += [nn.Conv1d(in_ch, width, 3, padding=1, bias=False), nn.BatchNorm1d(width),
                       nn.LeakyReLU(negative_slope), nn.MaxPool1d(POOL)]
            in_ch = width
        self.blocks = nn.Sequential(*layers)
        self.out_features = 2 * in_ch

    def fix_sinc_stem(self) -> None:
        """Replace the stem by :func:`sinc_filterbank` and stop training it."""
        # Fixed, as RawNet2's sinc layer: a filterbank learned on a few training vocoders may
        # fit their bands rather than what unseen systems share.
        n_filters, _, taps = self.stem.weight.shape
        self.stem.weight.data.copy_(torch.from_numpy(sinc_filterbank(n_filters, taps))[:, None])
        self.stem.weight.requires_grad_(False)

    def forward(self, x):
        h = self.blocks(self.stem_post(self.stem(x).abs()))
        return torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)


class WaveCNN(nn.Module):
    """Waveform (B, samples) or (B, 1, samples) -> logits (B, n_classes), or ``(logits,
    source_logits)`` when ``n_sources`` > 0."""

    def __init__(self, stem_filters: int = STEM_FILTERS, stem_taps: int = STEM_TAPS,
                 stem_stride: int = STEM_STRIDE, widths: tuple[int, ...] = WIDTHS, n_classes: int = 2,
                 dropout: float = 0.2, n_sources: int = 0, negative_slope: float = 0.3, stem: str = "learned"):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        self.encoder = WaveEncoder(stem_filters, stem_taps, stem_stride, widths, negative_slope)
        hidden = self.encoder.out_features
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        self.source_head = (nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_sources))
                            if n_sources > 0 else None)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if stem == "sinc":
            self.encoder.fix_sinc_stem()

    def forward(self, x):
        if x.dim() == 2:
            x = x.unsqueeze(1)
        h = self.encoder(x)
        if self.source_head is None:
            return self.head(h)
        return self.head(h), self.source_head(h)

    def export_module(self) -> WaveCNN:
        """A copy without the source head: forward returns only the (B, 2) logits."""
        out = copy.deepcopy(self)
        out.source_head = None
        return out


def _register() -> None:
    from training.models.registry import Architecture, register

    def multitask_builder(n_sources: int = 0, **kw) -> WaveCNN:
        if n_sources < 2:
            raise ValueError("a multi-task model needs n_sources >= 2 (systems + 'none')")
        return WaveCNN(n_sources=n_sources, **kw)

    register(Architecture(name="wave_cnn", builder=WaveCNN, feature_spec=waveform_spec,
                          input_shape=(WINDOW_SAMPLES,),
                          description="raw-waveform CNN: learned 129-tap filterbank, five 1-D conv blocks"))
    register(Architecture(name="wave_cnn_mt", builder=multitask_builder, feature_spec=waveform_spec,
                          input_shape=(WINDOW_SAMPLES,), multitask=True,
                          description="WaveCNN with a training-only source head (spoofing system or none)"))
    register(Architecture(name="wave_cnn_sinc", builder=partial(WaveCNN, stem="sinc"), feature_spec=waveform_spec,
                          input_shape=(WINDOW_SAMPLES,),
                          description="WaveCNN whose stem is a fixed bank of 40 linear-scale sinc band-pass filters"))
    register(Architecture(name="wave_cnn_sinc_mt", builder=partial(multitask_builder, stem="sinc"),
                          feature_spec=waveform_spec, input_shape=(WINDOW_SAMPLES,), multitask=True,
                          description="wave_cnn_sinc with a training-only source head (spoofing system or none)"))


_register()
