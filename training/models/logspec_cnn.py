"""LogSpecCNN: the LogMelCNN blocks on a 257-bin linear log spectrogram, under 50,000 parameters.

Why it exists: vocoded speech (WORLD, MLSA, Griffin-Lim, LPC, neural vocoders) keeps the
words, the speaker and the spectral envelope of the real recording it came from; what
changes is the fine structure - harmonics, aperiodicity, the 4-8 kHz band. A 40-band mel
front end with per-window normalisation blurs the first and removes the long-term level
of each band, and LogMelCNN could not even fit the training split's vocoders with it
(``edge-cm-train eval --split train``: Griffin-Lim 45 %, WORLD 47 % EER). This model keeps
every STFT bin (32 ms window, 31.25 Hz bins) and normalises each bin with statistics of
the training data, not of the window.

Layout: 5x5 conv stride 2, then LogMelCNN's blocks (3x3 conv -> BatchNorm -> ReLU ->
2x2 max-pool; global average pooling last), widths 16, 32, 48, 64; dropout 0.2;
linear 64 -> 2 logits (class 0 = bona fide). 47,090 parameters; about 72 M MACs per 4-s window.
"""
from __future__ import annotations

from edge_cm.features import FeatureSpec
from training.models.logmel_cnn import WIDTHS, LogMelCNN


def logspec_spec() -> FeatureSpec:
    """Log-magnitude STFT: Hamming 512 (32 ms), n_fft 512 (257 bins), hop 160 (10 ms); global stats from training."""
    return FeatureSpec(kind="log_spectrogram", win_length=512, hop_length=160, n_fft=512,
                       window="hamming", power=1.0, log_offset=1e-7)


def build(widths: tuple[int, ...] = WIDTHS, n_classes: int = 2, dropout: float = 0.2) -> LogMelCNN:
    return LogMelCNN(widths=widths, n_classes=n_classes, dropout=dropout, stem_stride=2)


def _register() -> None:
    from training.models.registry import Architecture, register

    spec = logspec_spec()
    register(Architecture(name="logspec_cnn", builder=build, feature_spec=logspec_spec,
                          input_shape=(1, spec.n_bins, spec.n_frames(64000)), needs_global_stats=True,
                          description="LogMelCNN blocks after a stride-2 stem on a 257-bin log spectrogram"))


_register()
