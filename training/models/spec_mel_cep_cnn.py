"""SpecMelCepCNN: SpecMelCNN with a third, cepstral branch on the same log spectrogram, under 50,000 parameters.

Why it exists: the default SpecMelCNN cannot fit its own copy-synthesis training spoofs (train-split
EER Griffin-Lim 32 %, WORLD-Harvest 15 %, Lyra 3.2k 10 %), and its worst dev systems are their unseen
relatives (WORLD-DIO, Lyra 6k), whatever their weight in the loss, the pooling, the width or the
augmentation (README, "What else was tried"). What these systems get wrong is the excitation: an F0
tracker's slips (WORLD), a generated excitation (Lyra's decoder), harmonics smeared by an inconsistent
phase (Griffin-Lim). In a spectrogram the excitation is a comb of harmonics F0 apart across the whole
band; a 3x3 kernel on 31-Hz bins sees at most one or two of its teeth, and by the time the fine branch's
field of view spans the comb, pooling has blurred it. The cepstrum turns the comb into one peak at the
quefrency 1 / F0, whose height (how harmonic the frame is) and track over time (jitter, octave jumps,
voicing slips) small kernels can read. Cepstral front ends (LFCC, CQCC) are the classic anti-spoofing
inputs for vocoded speech.

Layout: SpecMelCNN's fine and band branches unchanged (widths 12-48 and 8-48), plus

* cepstral branch - a fixed (not trained) orthonormal DCT-II over the 257 normalised log-magnitude
  bins of each frame, keeping coefficients 1..256 (c0, the frame's mean level, is left out): the
  coefficient k has period 16,000 / k Hz along frequency, so the 256 rows hold every F0 down to
  62.5 Hz. Each coefficient is normalised over the window (as the band branch's bands), then a fixed
  2x2 max-pool (pairs of coefficients, 20-ms steps: a peak survives it, and the branch's activations
  and conv MACs are a quarter of what the full cepstrogram would cost), a 5x5 stride-2 stem and three
  3x3 blocks, widths 4, 8, 12, 16, global average pooling;
* head - the 48 + 48 + 16 = 112-d vector, dropout 0.2, linear -> 2 logits; the multi-task variant
  (``_mt``) adds the training-only source head, dropped at export, as SpecMelCNN's.

The training-time frequency mask hides spectrogram bins before the DCT, so all three branches see the
same masked frame. 49,874 trained parameters (3,132 more than SpecMelCNN) plus the 65,792 fixed DCT
weights, not counted, as the band projection's are not; 87.7 M MACs per 4-s window against 60.0 M, 26.1 M of
them the DCT (``edge-cm-train describe spec_mel_cep_cnn``). One front end (``logspec_spec``), so bundles,
export and streaming work as for SpecMelCNN.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.models.logmel_cnn import conv_blocks
from training.models.logspec_cnn import logspec_spec
from training.models.spec_mel_cnn import SpecMelCNN, register_with_source_head, window_norm

CEP_WIDTHS = (4, 8, 12, 16)


def cepstral_projection(n_bins: int) -> np.ndarray:
    """(n_bins - 1, n_bins) orthonormal DCT-II rows 1..n_bins-1: row k - 1 is
    sqrt(2 / n_bins) cos(pi k (n + 1/2) / n_bins) over bin n; c0 (the mean) is dropped."""
    n = np.arange(n_bins)
    k = np.arange(1, n_bins)[:, None]
    return (np.sqrt(2.0 / n_bins) * np.cos(np.pi * k * (n + 0.5) / n_bins)).astype(np.float32)


class SpecMelCepCNN(SpecMelCNN):
    """Globally normalised log spectrogram (B, 1, 257, frames) -> logits (B, n_classes), or
    ``(logits, source_logits)`` when ``n_sources`` > 0; ``cep_widths`` are the cepstral branch's."""

    def __init__(self, cep_widths: tuple[int, ...] = CEP_WIDTHS, **kwargs):
        if "spec" in kwargs:
            raise ValueError("SpecMelCepCNN's front end is fixed (logspec_spec); do not set spec in model_args")
        if not cep_widths or any(int(w) < 1 for w in cep_widths):
            raise ValueError(f"cep_widths must be one or more positive channel counts, got {cep_widths!r}")
        if kwargs.get("fine_in_channels", 1) != 1:
            raise ValueError("SpecMelCepCNN reads one log spectrogram: fine_in_channels must be 1")
        super().__init__(extra_features=cep_widths[-1], **kwargs)
        n_bins = logspec_spec().n_bins
        proj = torch.from_numpy(cepstral_projection(n_bins))
        # A frozen Linear, as the band projection: exporters and MAC counters see a plain MatMul.
        self.cepstra = nn.Linear(n_bins, proj.shape[0], bias=False)
        self.cepstra.weight.data.copy_(proj)
        self.cepstra.weight.requires_grad_(False)
        self.cep = nn.Sequential(nn.MaxPool2d(2), *conv_blocks(cep_widths, stem_stride=2))
        for m in self.cep.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def cepstrogram(self, spec):
        """(B, 1, 257, frames) normalised log spectrogram -> (B, 1, 256, frames) cepstra, each
        coefficient normalised over the window."""
        return window_norm(self.cepstra(spec.transpose(2, 3)).transpose(2, 3), self.eps)

    def forward(self, x):
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = self.mask(x)
        return self.classify(x, x, extra=self.cep(self.cepstrogram(x)).flatten(1))


def _register() -> None:
    spec = logspec_spec()
    shape = (1, spec.n_bins, spec.n_frames(64000))
    register_with_source_head("spec_mel_cep_cnn", SpecMelCepCNN, logspec_spec, shape,
                              "SpecMelCNN's two spectrogram branches plus a cepstral (DCT) branch")


_register()
