"""SpecMelMGDCNN: SpecMelCNN whose fine branch also sees the phase, as modified group delay.

Why it exists: the default SpecMelCNN misses the unseen vocoders and codecs most (dev WORLD-DIO
and Lyra 6k, test HiFi-GAN, LPC and Lyra 9.2k; README "The bundled default model"), and every
input it has is a magnitude. A vocoder rebuilds the phase from a model - Griffin-Lim iterates
towards a consistent one, WORLD and MLSA excite minimum-phase filters with pulses and noise, a
neural vocoder generates it - so the phase of vocoded speech differs from a recording's even
where the magnitude matches. Modified group delay (``edge_cm.features.modified_group_delay``)
is the phase feature of several ASVspoof systems; it comes from the same 32-ms frames.

Input: the ``log_spec_mgd`` front end, 257 log-magnitude rows then 257 group-delay rows,
globally normalised per row (B, 1, 514, frames). The magnitude rows feed the band branch as
in SpecMelCNN; the fine branch's 5x5 stride-2 stem takes magnitude and group delay as two
channels, so the only new parameters are the stem's second input channel (300 weights).

Result (benchmarks/experiments.md, "phase"): with the default's recipe it scored worse than
SpecMelCNN, on vocoders most, and still missed its own Griffin-Lim training spoofs.
"""
from __future__ import annotations

import torch

from edge_cm.features import FeatureSpec
from training.models.spec_mel_cnn import SpecMelCNN


def spec_mgd_spec() -> FeatureSpec:
    """Log magnitude and modified group delay: Hamming 512 (32 ms), n_fft 512, hop 160 (10 ms);
    alpha 0.4, gamma 0.9, 30 cepstral coefficients; global stats from training."""
    return FeatureSpec(kind="log_spec_mgd", win_length=512, hop_length=160, n_fft=512,
                       window="hamming", power=1.0, log_offset=1e-7)


class SpecMelMGDCNN(SpecMelCNN):
    """Normalised (B, 1, 514, frames) log magnitude over group delay -> logits (B, n_classes)."""

    def __init__(self, **kwargs):
        super().__init__(fine_in_channels=2, **kwargs)

    def forward(self, x):
        if x.dim() == 3:
            x = x.unsqueeze(1)
        half = x.shape[2] // 2
        spec, mgd = x[:, :, :half], x[:, :, half:]
        spec = self.mask(spec)
        return self.classify(spec, torch.cat([spec, mgd], dim=1))


def _register() -> None:
    from training.models.registry import Architecture, register

    spec = spec_mgd_spec()
    register(Architecture(name="spec_mel_mgd_cnn", builder=SpecMelMGDCNN, feature_spec=spec_mgd_spec,
                          input_shape=(1, spec.n_bins, spec.n_frames(64000)), needs_global_stats=True,
                          description="SpecMelCNN with modified group delay as a second channel of its fine branch"))


_register()
