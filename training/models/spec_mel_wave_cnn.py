"""SpecMelWaveCNN: SpecMelCNN with a third, raw-waveform branch, in one model under 50,000 parameters.

Why it exists: the spectrogram model and the raw-waveform model err on different systems
(benchmarks/experiments.md, "a raw-waveform model"). WaveCNN's learned filterbank fits the
Griffin-Lim and WORLD copies the log-magnitude front end cannot see (a Griffin-Lim copy keeps
the original's STFT magnitude; what differs is in the phase), while SpecMelCNN keeps the neural
codecs, HiFi-GAN and band-limited real speech apart. Averaging the two bundles' scores did not
help (the waveform model's codec errors came along), so this model learns one head on all three
branches, which can weigh the waveform cue where it holds and ignore it where it does not.

Input: the ``log_spec_wave`` front end (:func:`spec_wave_spec`): 257 globally normalised
log-magnitude rows, then 160 rows of raw samples, column ``i`` holding samples
``[160 i, 160 (i + 1))``; (B, 1, 417, frames). One FeatureSpec, one input tensor, so bundles,
export and streaming work as for any spectrogram model.

* fine and band branches - SpecMelCNN's, narrower: widths 12, 24, 32, 40 and 8, 16, 28, 40;
* waveform branch - the columns laid end to end (the first 63,520 samples of a 4-s window),
  instance-normalised as WaveCNN's input, then :class:`WaveEncoder`: 16 learned filters of 129
  taps, stride 8, |.|, 3x max-pool, then four 1-D blocks of widths 16, 24, 32, 32, mean and max
  over time (64-d);
* head - the 40 + 40 + 64 = 144-d vector, dropout 0.2, linear -> 2 logits; the multi-task
  variant (``_mt``) adds the training-only source head, dropped at export, as SpecMelCNN's.

The frequency mask of the default's recipe (``freq_mask_bins``) hides spectrogram rows only.
47,150 trained parameters, 76.0 M MACs per 4-s window (``edge-cm-train describe spec_mel_wave_cnn``).

Trained with the default's recipe (one seed), it did worse than SpecMelCNN (pooled dev EER 11.6 %
against 8.0 %): better on WORLD-DIO, worse on the Lyra codecs and HiFi-GAN, and more false alarms on
band-limited real speech, so it is not the default (benchmarks/experiments.md).
"""
from __future__ import annotations

import torch
from torch import nn

from edge_cm.features import FeatureSpec
from training.models.spec_mel_cnn import SpecMelCNN, register_with_source_head
from training.models.wave_cnn import WaveEncoder

FINE_WIDTHS = (12, 24, 32, 40)
BAND_WIDTHS = (8, 16, 28, 40)
WAVE_STEM_FILTERS = 16
WAVE_STEM_TAPS = 129
WAVE_STEM_STRIDE = 8
WAVE_WIDTHS = (16, 24, 32, 32)


def spec_wave_spec() -> FeatureSpec:
    """The default's 512-point log spectrogram (Hamming 512, hop 160) with the raw samples of each
    10-ms hop as 160 more rows; global stats of the spectrogram rows come from training."""
    return FeatureSpec(kind="log_spec_wave", win_length=512, hop_length=160, n_fft=512,
                       window="hamming", power=1.0, log_offset=1e-7)


class SpecMelWaveCNN(SpecMelCNN):
    """(B, 1, 417, frames) log spectrogram over raw samples -> logits (B, n_classes), or
    ``(logits, source_logits)`` when ``n_sources`` > 0."""

    def __init__(self, fine_widths: tuple[int, ...] = FINE_WIDTHS, band_widths: tuple[int, ...] = BAND_WIDTHS,
                 wave_stem_filters: int = WAVE_STEM_FILTERS, wave_stem_taps: int = WAVE_STEM_TAPS,
                 wave_stem_stride: int = WAVE_STEM_STRIDE, wave_widths: tuple[int, ...] = WAVE_WIDTHS,
                 **kwargs):
        if kwargs.get("pooling", "global") != "global" or kwargs.get("head", "linear") != "linear":
            raise ValueError("SpecMelWaveCNN has global pooling and a linear head only")
        if "spec" in kwargs:
            raise ValueError("SpecMelWaveCNN's front end is fixed (spec_wave_spec); do not set spec in model_args")
        wave = WaveEncoder(wave_stem_filters, wave_stem_taps, wave_stem_stride, wave_widths)
        super().__init__(fine_widths=fine_widths, band_widths=band_widths, extra_features=wave.out_features,
                         **kwargs)
        self.wave = wave
        self.n_spec_rows = spec_wave_spec().n_fft // 2 + 1
        for m in self.wave.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.xavier_normal_(m.weight)

    def forward(self, x):
        if x.dim() == 3:
            x = x.unsqueeze(1)
        spec, samples = x[:, :, :self.n_spec_rows], x[:, :, self.n_spec_rows:]
        wave = samples.transpose(2, 3).reshape(x.shape[0], 1, -1)  # columns end to end: (B, 1, samples)
        mean = wave.mean(dim=2, keepdim=True)
        var = ((wave - mean) ** 2).mean(dim=2, keepdim=True)
        wave = (wave - mean) / torch.sqrt(var + self.eps)
        spec = self.mask(spec)
        return self.classify(spec, spec, extra=self.wave(wave))


def _register() -> None:
    spec = spec_wave_spec()
    shape = (1, spec.n_bins, spec.n_frames(64000))
    register_with_source_head("spec_mel_wave_cnn", SpecMelWaveCNN, spec_wave_spec, shape,
                              "SpecMelCNN's two spectrogram branches plus a learned raw-waveform branch")


_register()
