"""RawBoost-style channel and device distortion of the waveform (Tak et al., ICASSP 2022).

RawBoost trains a countermeasure on speech that went through random, data-independent
distortions, so that it cannot lean on the channel of its training spoofs. Three kinds:

* ``lnl`` - linear and nonlinear convolutive noise: ``sum_j h_j * x**j`` for orders
  j = 1..``orders``, each ``h_j`` a random cascade of FIR band-stop filters and each
  order above 1 attenuated by a random bias (dB); the result keeps the input's RMS.
* ``isd`` - impulsive signal-dependent noise: a random share (at most ``max_share``)
  of the samples is multiplied by ``1 + g*u``, u uniform in [-1, 1].
* ``ssi`` - stationary signal-independent noise: white noise through a random
  band-stop cascade, added at an SNR (dB) drawn from ``snr_db``.

``lnl+isd`` runs the first two in series, the combination the paper found best on
ASVspoof 2019 LA. Filter band edges are in Hz for 16 kHz audio.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft, signal

from edge_cm.errors import DataError

from ._common import SAMPLE_RATE, as_generator, avoid_clipping, check_audio, check_range, draw, power
from .noise import mix_at_snr

RAWBOOST_MODES = ("lnl", "isd", "ssi", "lnl+isd")
RAWBOOST_LABELS = tuple(f"rawboost_{m}" for m in RAWBOOST_MODES)


def band_stop_filter(bands: list[tuple[float, float]], taps: list[int]) -> np.ndarray:
    """FIR taps of a cascade of Hamming-window band-stop filters, one per ``(low_hz, high_hz)``
    band with its own (odd) tap count, scaled so the largest gain is 1."""
    kernel = np.ones(1)
    for (low, high), n in zip(bands, taps):
        if not 0 < low < high < SAMPLE_RATE / 2 or n % 2 == 0:
            raise DataError(f"band ({low}, {high}) Hz with {n} taps is not a valid band-stop filter",
                            hint=f"use 0 < low < high < {SAMPLE_RATE // 2} Hz and an odd tap count")
        kernel = np.convolve(kernel, signal.firwin(n, [low, high], window="hamming", fs=SAMPLE_RATE))
    peak = np.max(np.abs(np.fft.rfft(kernel, 4096)))
    return kernel / peak


@dataclass(frozen=True)
class FilterRanges:
    """How random band-stop cascades are drawn: band count, centre (Hz), width (Hz), taps."""

    bands: tuple[int, int] = (1, 5)
    centre_hz: tuple[float, float] = (20.0, 8000.0)
    width_hz: tuple[float, float] = (100.0, 1000.0)
    taps: tuple[int, int] = (11, 101)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        nyquist = SAMPLE_RATE / 2
        bands, taps = [], []
        for _ in range(int(rng.integers(self.bands[0], self.bands[1] + 1))):
            centre, width = draw(self.centre_hz, rng), draw(self.width_hz, rng)
            low, high = max(centre - width / 2, 10.0), min(centre + width / 2, nyquist - 10.0)
            if high - low < 20.0:  # a band squeezed against 0 Hz or Nyquist: shift it inside
                low, high = (10.0, 10.0 + width) if centre < nyquist / 2 else (nyquist - 10.0 - width, nyquist - 10.0)
            bands.append((low, high))
            taps.append(int(rng.integers(self.taps[0], self.taps[1] + 1)) | 1)
        return band_stop_filter(bands, taps)


def _filtered_sum(signals: list[np.ndarray], kernels: list[np.ndarray], gains: list[float]) -> np.ndarray:
    """``sum_i gains[i] * convolve(signals[i], kernels[i], "same")``, in one batch of FFTs."""
    width = max(k.size for k in kernels)
    # odd lengths, so padding both sides equally aligns the centres; float32 halves the FFT time
    centred = np.stack([np.pad(k, (width - k.size) // 2) for k in kernels]).astype(np.float32)
    n = signals[0].size
    size = fft.next_fast_len(n + width - 1, real=True)
    spectrum = fft.rfft(np.stack(signals).astype(np.float32), size) * fft.rfft(centred, size)
    full = fft.irfft(np.asarray(gains) @ spectrum, size)
    return full[(width - 1) // 2:(width - 1) // 2 + n]


def convolutive_noise(x: np.ndarray, rng: np.random.Generator, orders: int = 5,
                      bias_db: tuple[float, float] = (5.0, 20.0), ranges: FilterRanges = FilterRanges()) -> np.ndarray:
    """``lnl``: linear + nonlinear convolutive distortion, at the input's RMS."""
    top = float(np.max(np.abs(x)))
    if top == 0.0:
        return x.copy()
    unit = x.astype(np.float64) / top
    powers = [unit]
    for _ in range(orders - 1):
        powers.append(powers[-1] * unit)
    gains = [1.0] + [10.0 ** (-draw(bias_db, rng) / 20.0) for _ in range(orders - 1)]
    out = _filtered_sum(powers, [ranges.draw(rng) for _ in range(orders)], gains)
    rms = np.sqrt(power(out))
    if rms == 0.0:
        return x.copy()
    return avoid_clipping(out * np.sqrt(power(x)) / rms)


def impulsive_noise(x: np.ndarray, rng: np.random.Generator, max_share: float = 0.1, gain: float = 2.0) -> np.ndarray:
    """``isd``: a random share (0..``max_share``) of samples scaled by ``1 + gain*u``, u in [-1, 1]."""
    out = x.astype(np.float64)
    count = int(round(rng.uniform(0.0, max_share) * x.size))
    where = rng.choice(x.size, size=count, replace=False)
    out[where] *= 1.0 + gain * rng.uniform(-1.0, 1.0, size=count)
    return avoid_clipping(out)


def coloured_noise(x: np.ndarray, rng: np.random.Generator, snr_db: tuple[float, float] = (10.0, 40.0),
                   ranges: FilterRanges = FilterRanges()) -> np.ndarray:
    """``ssi``: white noise shaped by a random band-stop cascade, added at an SNR (dB) from ``snr_db``."""
    noise = _filtered_sum([rng.standard_normal(x.size)], [ranges.draw(rng)], [1.0]).astype(np.float32)
    return mix_at_snr(x, noise, draw(snr_db, rng))


@dataclass
class RawBoost:
    """One RawBoost distortion (``mode``, see :data:`RAWBOOST_MODES`) with the paper's default ranges.

    Attributes:
        mode: ``lnl``, ``isd``, ``ssi`` or ``lnl+isd`` (series).
        orders: highest power of the signal in ``lnl``.
        bias_db: attenuation (dB) of each nonlinear order in ``lnl``, drawn per order.
        max_share: largest share of samples ``isd`` touches (0..1).
        impulse_gain: ``g`` of ``isd``.
        snr_db: SNR range (dB) of ``ssi``.
    """

    mode: str = "lnl+isd"
    orders: int = 5
    bias_db: tuple[float, float] = (5.0, 20.0)
    max_share: float = 0.1
    impulse_gain: float = 2.0
    snr_db: tuple[float, float] = (10.0, 40.0)

    def __post_init__(self) -> None:
        if self.mode not in RAWBOOST_MODES:
            raise DataError(f"unknown RawBoost mode {self.mode!r}", hint=f"use one of {RAWBOOST_MODES}")
        if not 1 <= self.orders <= 10:
            raise DataError(f"RawBoost orders={self.orders} must be in 1..10")
        check_range("bias_db", self.bias_db, 0.0, 60.0)
        check_range("max_share", self.max_share, 0.0, 1.0)
        check_range("impulse_gain", self.impulse_gain, 0.0, 10.0)
        check_range("snr_db", self.snr_db, -20.0, 80.0)

    def __call__(self, audio: np.ndarray, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, str]:
        x = check_audio(audio)
        rng = as_generator(rng)
        if "lnl" in self.mode:
            x = convolutive_noise(x, rng, self.orders, self.bias_db)
        if "isd" in self.mode:
            x = impulsive_noise(x, rng, self.max_share, self.impulse_gain)
        if self.mode == "ssi":
            x = coloured_noise(x, rng, self.snr_db)
        return x, f"rawboost_{self.mode}"
