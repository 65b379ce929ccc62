"""Front ends: one :class:`FeatureSpec` describes how a 4-s window becomes a model input.

The spec travels inside every model bundle (``bundle.json``), so training, export
and runtime compute the same features. All front ends here are numpy only.

Kinds:

* ``log_spectrogram`` - log-magnitude STFT with global z-normalisation (EfficientCNN);
* ``log_mel`` - log mel power spectrogram with per-window instance normalisation (ResNetSE);
* ``log_stft`` - ``ln(|X| + 1e-7)`` STFT, no normalisation (dual-stream model);
* ``log_spec_mgd`` - the ``log_spectrogram`` rows followed by as many rows of the modified
  group delay of the same frames (phase; see :func:`modified_group_delay`);
* ``log_spec_wave`` - the ``log_spectrogram`` rows followed by ``hop_length`` rows of raw samples:
  column ``i`` also holds the samples ``[i * hop_length, (i + 1) * hop_length)``, so the columns
  laid end to end give back the window's waveform (one input tensor, two views; the model
  normalises the waveform part itself);
* ``waveform`` - the raw samples, optionally instance-normalised (SSL models).

Frames are not centred (no padding): frame ``i`` covers samples
``[i * hop_length, i * hop_length + win_length)``. Features have shape
``(bins, frames)`` - frequency first, time second.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from .errors import FeatureSpecError

KINDS = ("log_spectrogram", "log_mel", "log_stft", "log_spec_mgd", "log_spec_wave", "waveform")
NORMALIZATIONS = ("none", "global", "instance")
MGD_FIELDS = ("mgd_alpha", "mgd_gamma", "mgd_lifter")
"""FeatureSpec fields that only ``log_spec_mgd`` uses (left out of the other kinds' bundles)."""
LEVEL_KINDS = ("log_spectrogram", "log_stft", "log_mel")
"""Kinds whose every row is ``ln(value + log_offset)`` of a magnitude or power (see :func:`apply_gain`)."""
LEVEL_FRAME_SAMPLES = 320
"""Frame (20 ms at 16 kHz) over which :func:`window_level_dbfs` measures power."""
LEVEL_LOUDEST_SHARE = 0.2
"""Share of a window's frames, loudest first, whose mean power is its level: the speech gate
passes windows with at least 20 % active frames, so these are speech, not the pauses between."""
LEVEL_FLOOR_DBFS = -100.0
"""Level given to digital silence, so its gain stays finite (such windows hold no speech anyway)."""


@dataclass(frozen=True)
class FeatureSpec:
    """A front end and all its parameters (lengths in samples, frequencies in Hz)."""

    kind: str
    sample_rate: int = 16000
    win_length: int = 0
    hop_length: int = 0
    n_fft: int = 0
    window: str = "hamming"
    power: float = 1.0
    """1 = magnitude, 2 = power, applied before the mel filterbank and the log."""
    n_mels: int = 0
    f_min: float = 0.0
    f_max: float = 0.0
    """Upper mel edge in Hz; 0 means sample_rate / 2."""
    log_offset: float = 1e-7
    """Features are ln(value + log_offset)."""
    normalization: str = "none"
    norm_mean: tuple[float, ...] | None = None
    """Per-bin mean for ``global`` normalisation (length = n_bins)."""
    norm_std: tuple[float, ...] | None = None
    """Per-bin standard deviation for ``global`` normalisation (length = n_bins)."""
    norm_eps: float = 1e-5
    """Added to the variance in ``instance`` normalisation (as torch InstanceNorm)."""
    mgd_alpha: float = 0.4
    """``log_spec_mgd``: exponent that compresses the modified group delay, sign(t) |t|^alpha."""
    mgd_gamma: float = 0.9
    """``log_spec_mgd``: the smoothed magnitude is raised to 2 gamma in the group delay's denominator."""
    mgd_lifter: int = 30
    """``log_spec_mgd``: cepstral coefficients kept to smooth the magnitude (the spectral envelope)."""
    level_dbfs: float | None = None
    """If set, every window's features are those of the window scaled so that its
    :func:`window_level_dbfs` is this level (dBFS): the model then sees the same features whether the
    talker is near or far, the gain high or low. None (older bundles): features follow the level."""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FeatureSpecError(f"unknown front-end kind {self.kind!r}", hint=f"use one of {KINDS}")
        if self.normalization not in NORMALIZATIONS:
            raise FeatureSpecError(f"unknown normalization {self.normalization!r}",
                                   hint=f"use one of {NORMALIZATIONS}")
        if self.kind != "waveform":
            if self.win_length <= 0 or self.hop_length <= 0 or self.n_fft < self.win_length:
                raise FeatureSpecError(
                    f"{self.kind}: need win_length > 0, hop_length > 0 and n_fft >= win_length "
                    f"(got {self.win_length}, {self.hop_length}, {self.n_fft})")
            if self.window not in ("hamming", "hann", "rectangular"):
                raise FeatureSpecError(f"unknown window {self.window!r}", hint="hamming, hann or rectangular")
        if self.kind == "log_spec_wave" and self.hop_length > self.win_length:
            raise FeatureSpecError(
                f"log_spec_wave needs hop_length <= win_length (got {self.hop_length} > {self.win_length}): "
                "each column carries its hop's samples from its own frame")
        if self.kind == "log_mel" and self.n_mels <= 0:
            raise FeatureSpecError("log_mel needs n_mels > 0")
        if self.kind == "log_spec_mgd" and not (0 < self.mgd_alpha <= 1 and self.mgd_gamma > 0
                                                 and 0 < self.mgd_lifter <= self.n_fft // 2):
            raise FeatureSpecError(
                f"log_spec_mgd needs 0 < mgd_alpha <= 1, mgd_gamma > 0 and 0 < mgd_lifter <= n_fft / 2 "
                f"(got {self.mgd_alpha}, {self.mgd_gamma}, {self.mgd_lifter})")
        if self.normalization == "global":
            if self.norm_mean is None or self.norm_std is None:
                raise FeatureSpecError("global normalization needs norm_mean and norm_std",
                                       hint="compute them with FeatureSpec.with_global_stats on training data")
            if len(self.norm_mean) != self.n_bins or len(self.norm_std) != self.n_bins:
                raise FeatureSpecError(
                    f"norm_mean/norm_std have {len(self.norm_mean)}/{len(self.norm_std)} values, "
                    f"expected one per bin ({self.n_bins})")
            if min(self.norm_std) <= 0:
                raise FeatureSpecError("norm_std must be positive")
        if self.level_dbfs is not None:
            if self.kind not in LEVEL_KINDS:
                raise FeatureSpecError(f"level_dbfs is not supported for {self.kind!r} features",
                                       hint=f"use it with {LEVEL_KINDS}, or leave it unset")
            if isinstance(self.level_dbfs, bool) or not (isinstance(self.level_dbfs, (int, float, np.floating))
                                                          and -120.0 < float(self.level_dbfs) <= 0.0):
                raise FeatureSpecError(f"level_dbfs must be a level in (-120, 0] dBFS, got {self.level_dbfs!r}")
            object.__setattr__(self, "level_dbfs", float(self.level_dbfs))  # frozen: normalise once (JSON-safe)

    # -- geometry -------------------------------------------------------
    @property
    def n_bins(self) -> int:
        """Feature rows: n_fft // 2 + 1 for STFTs (twice that for log_spec_mgd, plus hop_length for
        log_spec_wave), n_mels for log_mel, 1 for waveform."""
        if self.kind == "log_mel":
            return self.n_mels
        if self.kind == "log_spec_mgd":
            return 2 * (self.n_fft // 2 + 1)
        if self.kind == "log_spec_wave":
            return self.n_fft // 2 + 1 + self.hop_length
        if self.kind == "waveform":
            return 1
        return self.n_fft // 2 + 1

    @property
    def frame_hop(self) -> int:
        """Samples between consecutive frames (1 for the waveform)."""
        return 1 if self.kind == "waveform" else self.hop_length

    def n_frames(self, n_samples: int) -> int:
        """Number of frames in ``n_samples`` samples (waveform: the samples themselves)."""
        if self.kind == "waveform":
            return n_samples
        if n_samples < self.win_length:
            return 0
        return 1 + (n_samples - self.win_length) // self.hop_length

    def output_shape(self, n_samples: int) -> tuple[int, ...]:
        """Shape of :func:`compute_features` for a window of ``n_samples`` samples."""
        if self.kind == "waveform":
            return (n_samples,)
        return (self.n_bins, self.n_frames(n_samples))

    # -- serialisation ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.kind != "log_spec_mgd":  # bundles of the other kinds stay readable by older runtimes
            for key in MGD_FIELDS:
                d.pop(key)
        if self.level_dbfs is None:  # likewise for bundles without level normalisation
            d.pop("level_dbfs")
        for key in ("norm_mean", "norm_std"):
            if d[key] is not None:
                d[key] = [float(v) for v in d[key]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise FeatureSpecError(f"unknown FeatureSpec field(s) {sorted(unknown)}",
                                   hint="the bundle was written by a newer edge-cm; upgrade")
        d = dict(d)
        for key in ("norm_mean", "norm_std"):
            if d.get(key) is not None:
                d[key] = tuple(float(v) for v in d[key])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def with_global_stats(self, mean: np.ndarray, std: np.ndarray) -> FeatureSpec:
        """A copy with ``global`` normalisation from per-bin ``mean`` and ``std``.

        ``log_spec_wave``: the waveform rows keep mean 0 and std 1 whatever is given. Separate
        statistics per row would scale each sample by its position within the hop, a modulation
        at sample_rate / hop_length Hz (100 Hz) that real speech does not have.
        """
        std = np.maximum(np.asarray(std, dtype=np.float64), 1e-6).copy()
        mean = np.asarray(mean, dtype=np.float64).copy()
        if self.kind == "log_spec_wave" and mean.size == std.size == self.n_bins:
            mean[-self.hop_length:], std[-self.hop_length:] = 0.0, 1.0
        return replace(self, normalization="global",
                       norm_mean=tuple(float(v) for v in np.asarray(mean, dtype=np.float64)),
                       norm_std=tuple(float(v) for v in std))


# -- the four front ends of the literature ------------------------------------

def efficientcnn_spec() -> FeatureSpec:
    """(a) log-magnitude STFT: Hamming 1,728 (108 ms), n_fft 1,728, hop 160 (10 ms).

    Global z-normalisation statistics are added by training (``with_global_stats``).
    """
    return FeatureSpec(kind="log_spectrogram", win_length=1728, hop_length=160, n_fft=1728,
                       window="hamming", power=1.0, log_offset=1e-7)


def resnetse_spec() -> FeatureSpec:
    """(b) 40-band log-mel: 25 ms (400) window, 10 ms (160) hop, 512-point FFT, instance norm."""
    return FeatureSpec(kind="log_mel", win_length=400, hop_length=160, n_fft=512, window="hamming",
                       power=2.0, n_mels=40, f_min=20.0, f_max=7600.0, log_offset=1e-6,
                       normalization="instance")


def dual_stream_spec() -> FeatureSpec:
    """(c) log STFT: window 512, hop 187, ln(|X| + 1e-7)."""
    return FeatureSpec(kind="log_stft", win_length=512, hop_length=187, n_fft=512, window="hann",
                       power=1.0, log_offset=1e-7)


def waveform_spec(normalize: bool = True) -> FeatureSpec:
    """(d) raw waveform; zero-mean unit-variance per window when ``normalize`` (wav2vec2 style)."""
    return FeatureSpec(kind="waveform", window="rectangular",
                       normalization="instance" if normalize else "none")


# -- numeric building blocks (shared with the torch front end in training/) ---

def window_function(spec: FeatureSpec) -> np.ndarray:
    """The analysis window (periodic=False, as numpy/scipy symmetric windows), float64."""
    n = spec.win_length
    if spec.window == "hamming":
        return np.hamming(n)
    if spec.window == "hann":
        return np.hanning(n)
    return np.ones(n)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(spec: FeatureSpec) -> np.ndarray:
    """Triangular HTK mel filterbank, shape (n_mels, n_fft // 2 + 1), no area normalisation."""
    n_freqs = spec.n_fft // 2 + 1
    f_max = spec.f_max or spec.sample_rate / 2
    fft_freqs = np.linspace(0.0, spec.sample_rate / 2, n_freqs)
    mel_pts = np.linspace(hz_to_mel(spec.f_min), hz_to_mel(f_max), spec.n_mels + 2)
    hz_pts = mel_to_hz(mel_pts)
    lower, centre, upper = hz_pts[:-2, None], hz_pts[1:-1, None], hz_pts[2:, None]
    up = (fft_freqs[None, :] - lower) / (centre - lower)
    down = (upper - fft_freqs[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(up, down))


def cepstral_smooth(log_mag: np.ndarray, n_fft: int, lifter: int) -> np.ndarray:
    """The spectral envelope of log magnitudes (frames, n_fft // 2 + 1): keep the first ``lifter``
    real-cepstrum coefficients (and their mirror), drop the rest."""
    cep = np.fft.irfft(log_mag, n=n_fft, axis=-1)
    cep[..., lifter:n_fft - lifter + 1] = 0.0
    return np.fft.rfft(cep, n=n_fft, axis=-1).real


def modified_group_delay(framed: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Modified group delay (Hegde, Murthy and Gadde 2007) of windowed frames (frames, win_length), float64.

    Group delay is the negative frequency derivative of the phase: with X the FFT of the frame
    and Y the FFT of the frame times its time index, it is Re(conj(X) Y) / |X|^2 (samples). Near
    spectral zeros |X|^2 is tiny and the ratio explodes, so the denominator is the cepstrally
    smoothed magnitude S to the power 2 gamma, and the result is compressed to sign(t) |t|^alpha.
    The time index runs from the frame centre, so the window's own delay of (win - 1) / 2
    samples does not turn the feature into a copy of the magnitude.
    """
    t = np.arange(spec.win_length) - (spec.win_length - 1) / 2.0
    x = np.fft.rfft(framed, n=spec.n_fft, axis=1)
    y = np.fft.rfft(framed * t[None, :], n=spec.n_fft, axis=1)
    envelope = cepstral_smooth(np.log(np.abs(x) + spec.log_offset), spec.n_fft, spec.mgd_lifter)
    tau = (x.real * y.real + x.imag * y.imag) * np.exp(-2.0 * spec.mgd_gamma * envelope)
    return np.sign(tau) * np.abs(tau) ** spec.mgd_alpha


class FrameAnalyzer:
    """Turns frames of samples into per-frame feature columns (before normalisation).

    Holds the window and filterbank once, so streaming calls stay cheap.
    """

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        if spec.kind != "waveform":
            self._window = window_function(spec)
            self._mel = mel_filterbank(spec) if spec.kind == "log_mel" else None

    def frames(self, samples: np.ndarray) -> np.ndarray:
        """Per-frame columns for every full frame in ``samples``: shape (bins, frames), float32."""
        spec = self.spec
        x = np.asarray(samples, dtype=np.float32)
        if spec.kind == "waveform":
            return x[None, :]
        n = spec.n_frames(x.size)
        if n == 0:
            return np.zeros((spec.n_bins, 0), dtype=np.float32)
        idx = np.arange(spec.win_length)[None, :] + spec.hop_length * np.arange(n)[:, None]
        # float64 until the log: near-silent bins sit close to log_offset, where float32 FFT
        # rounding would move ln(|X| + offset) by 1e-2 and training/runtime would disagree.
        framed = x[idx].astype(np.float64) * self._window[None, :]
        mag = np.abs(np.fft.rfft(framed, n=spec.n_fft, axis=1))
        if spec.kind == "log_spec_mgd":
            return np.concatenate([np.log(mag + spec.log_offset), modified_group_delay(framed, spec)],
                                  axis=1).T.astype(np.float32)
        if spec.kind == "log_spec_wave":
            return np.concatenate([np.log(mag + spec.log_offset), x[idx[:, :spec.hop_length]]],
                                  axis=1).T.astype(np.float32)
        if spec.power != 1.0:
            mag = mag ** spec.power
        if self._mel is not None:
            mag = mag @ self._mel.T
        return np.log(mag + spec.log_offset).T.astype(np.float32)


def window_level_dbfs(window: np.ndarray) -> float:
    """Level of a window in dBFS: 10 log10 of the mean power of its loudest 20 % of 20-ms frames.

    Scaling the window by ``g`` adds exactly ``20 log10(g)`` (down to :data:`LEVEL_FLOOR_DBFS`);
    :class:`training.frontend_torch.TorchFrontEnd` computes the same."""
    x = np.asarray(window, dtype=np.float64)
    n = x.size // LEVEL_FRAME_SAMPLES
    if n == 0:
        power = np.array([np.mean(x * x)]) if x.size else np.zeros(1)
    else:
        frames = x[:n * LEVEL_FRAME_SAMPLES].reshape(n, LEVEL_FRAME_SAMPLES)
        power = np.mean(frames * frames, axis=1)
    k = max(1, int(np.ceil(LEVEL_LOUDEST_SHARE * power.size)))
    loudest = np.sort(power)[-k:]
    return max(LEVEL_FLOOR_DBFS, 10.0 * np.log10(max(float(np.mean(loudest)), 1e-30)))


def level_gain(spec: FeatureSpec, window: np.ndarray) -> float:
    """The amplitude gain that brings ``window`` to ``spec.level_dbfs`` (1.0 when the spec has no level)."""
    if spec.level_dbfs is None:
        return 1.0
    return float(10.0 ** ((spec.level_dbfs - window_level_dbfs(window)) / 20.0))


def apply_gain(spec: FeatureSpec, columns: np.ndarray, gain: float) -> np.ndarray:
    """Log features (bins, frames) of the window scaled by ``gain``, from those of the window itself:
    ``ln(g^power * (e^c - log_offset) + log_offset)``. Exact, floor included, and it lets a stream keep
    the columns it has already computed."""
    offset = np.float32(spec.log_offset)
    value = np.maximum(np.exp(columns.astype(np.float32)) - offset, np.float32(0.0))
    return np.log(np.float32(gain ** spec.power) * value + offset).astype(np.float32)


def normalize(spec: FeatureSpec, columns: np.ndarray, window: np.ndarray | None = None) -> np.ndarray:
    """Apply the spec's level (from the window's samples) and normalisation to a whole window of
    columns (bins, frames)."""
    if spec.level_dbfs is not None:
        if window is None:
            raise FeatureSpecError("this front end sets level_dbfs: normalize needs the window's samples")
        columns = apply_gain(spec, columns, level_gain(spec, window))
    if spec.normalization == "global":
        mean = np.asarray(spec.norm_mean, dtype=np.float32)[:, None]
        std = np.asarray(spec.norm_std, dtype=np.float32)[:, None]
        return ((columns - mean) / std).astype(np.float32)
    if spec.normalization == "instance":
        mean = columns.mean(axis=1, keepdims=True)
        var = columns.var(axis=1, keepdims=True)
        return ((columns - mean) / np.sqrt(var + np.float32(spec.norm_eps))).astype(np.float32)
    return columns.astype(np.float32, copy=False)


def compute_features(spec: FeatureSpec, window: np.ndarray, analyzer: FrameAnalyzer | None = None) -> np.ndarray:
    """Features of one window of 16 kHz float32 samples: (bins, frames), or (samples,) for waveform."""
    analyzer = analyzer or FrameAnalyzer(spec)
    out = normalize(spec, analyzer.frames(window), window)
    return out[0] if spec.kind == "waveform" else out
