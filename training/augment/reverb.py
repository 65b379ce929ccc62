"""Reverberation with simulated room impulse responses (RIRs).

The RIR model is exponentially decaying Gaussian noise: a reverberant tail
``n(t) * exp(-3*ln(10)*t/RT60)`` (its energy falls by 60 dB in RT60 seconds),
optionally with a shorter RT60 in each higher octave band (high frequencies die
out first, as in real rooms), plus a direct-path impulse at sample 0 whose energy is ``drr_db`` dB above the
tail's. Because the direct path is at sample 0, convolving and keeping the first
``len(audio)`` samples leaves the speech aligned with the dry input; the tail
that rings past the end is dropped, and the output is scaled to the input's RMS.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from edge_cm.errors import DataError

from ._common import SAMPLE_RATE, as_generator, check_audio, check_range, draw, power

REVERB_LABEL = "reverb"


BAND_EDGES_HZ = (0.0, 707.0, 1414.0, 2828.0, 5657.0)
"""Lower edges (Hz) of the octave bands of a frequency-dependent tail (the last band runs to Nyquist)."""


def band_split(signal: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[np.ndarray]:
    """``signal`` split into the bands of :data:`BAND_EDGES_HZ` by FFT masks; the bands sum to ``signal``."""
    spectrum = np.fft.rfft(np.asarray(signal, dtype=np.float64))
    freqs = np.fft.rfftfreq(len(signal), 1.0 / sample_rate)
    uppers = BAND_EDGES_HZ[1:] + (np.inf,)
    return [np.fft.irfft(np.where((freqs >= lo) & (freqs < hi), spectrum, 0.0), n=len(signal))
            for lo, hi in zip(BAND_EDGES_HZ, uppers)]


def band_rt60s(rt60_s: float, hf_rt60_ratio: float) -> list[float]:
    """RT60 (s) of each band: ``rt60_s`` in the lowest, ``rt60_s * hf_rt60_ratio`` in the highest, geometric between."""
    last = len(BAND_EDGES_HZ) - 1
    return [rt60_s * hf_rt60_ratio ** (k / last) for k in range(len(BAND_EDGES_HZ))]


def simulate_rir(rt60_s: float, rng: np.random.Generator | int | None = None, *,
                 drr_db: float | None = 0.0, hf_rt60_ratio: float = 1.0, sample_rate: int = SAMPLE_RATE,
                 length_s: float | None = None) -> np.ndarray:
    """A synthetic RIR (float32, peak-normalised) with reverberation time ``rt60_s`` seconds.

    Args:
        rt60_s: time (s) for the tail's energy to decay by 60 dB (below 707 Hz when
            ``hf_rt60_ratio`` != 1).
        drr_db: direct-to-reverberant energy ratio (dB) of the impulse at sample 0;
            None for a tail alone.
        hf_rt60_ratio: RT60 of the top octave band (5.7-8 kHz) over ``rt60_s``; real rooms
            and air absorb high frequencies faster, so values of 0.3-1.0 are realistic.
            1.0 gives one broadband decay.
        length_s: RIR length (s); default 1.5 * the longest band RT60 (90 dB of decay).
    """
    if not 0.01 <= rt60_s <= 10.0:
        raise DataError(f"rt60_s={rt60_s} is outside [0.01, 10] s")
    if not 0.05 <= hf_rt60_ratio <= 2.0:
        raise DataError(f"hf_rt60_ratio={hf_rt60_ratio} is outside [0.05, 2]")
    rng = as_generator(rng)
    rt60s = band_rt60s(rt60_s, hf_rt60_ratio)
    length = int(round((length_s if length_s is not None else 1.5 * max(rt60s)) * sample_rate))
    length = max(length, 16)
    t = np.arange(length, dtype=np.float64) / sample_rate
    noise = rng.standard_normal(length)

    def envelope(rt60: float) -> np.ndarray:
        # Amplitude envelope: energy decays 60 dB (amplitude 10**-3) over rt60 seconds.
        return np.exp(-3.0 * np.log(10.0) * t / rt60)

    if hf_rt60_ratio == 1.0:
        tail = noise * envelope(rt60_s)
    else:
        tail = sum(band * envelope(rt60) for band, rt60 in zip(band_split(noise, sample_rate), rt60s))
    rir = tail
    if drr_db is not None:
        tail[0] = 0.0
        rir = tail.copy()
        rir[0] = np.sqrt(np.sum(tail**2) * 10.0 ** (drr_db / 10.0))
    peak = np.max(np.abs(rir))
    return (rir / peak).astype(np.float32)


def schroeder_rt60(rir: np.ndarray, sample_rate: int = SAMPLE_RATE,
                   fit_db: tuple[float, float] = (-5.0, -35.0)) -> float:
    """RT60 (s) of ``rir`` by Schroeder backward integration and a line fit over ``fit_db`` (default T30)."""
    energy = np.asarray(rir, dtype=np.float64) ** 2
    edc = np.cumsum(energy[::-1])[::-1]
    if edc[0] <= 0:
        raise DataError("impulse response is silent")
    edc_db = 10.0 * np.log10(np.maximum(edc / edc[0], 1e-30))
    hi, lo = fit_db
    mask = (edc_db <= hi) & (edc_db >= lo)
    if np.count_nonzero(mask) < 2:
        raise DataError(f"impulse response does not decay through {hi}..{lo} dB", hint="use a longer RIR")
    t = np.flatnonzero(mask) / sample_rate
    slope, _ = np.polyfit(t, edc_db[mask], 1)  # dB per second, negative
    return float(-60.0 / slope)


def apply_rir(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve ``audio`` with ``rir``; same length and RMS as ``audio``, aligned to the RIR's sample 0."""
    audio = check_audio(audio)
    wet = fftconvolve(audio.astype(np.float64), np.asarray(rir, dtype=np.float64), mode="full")[:audio.size]
    p_dry, p_wet = power(audio), power(wet)
    if p_wet > 0:
        wet *= np.sqrt(p_dry / p_wet)
    peak = np.max(np.abs(wet))
    if peak > 0.999:  # keep the level unless it would clip
        wet *= 0.999 / peak
    return wet.astype(np.float32)


@dataclass
class RoomReverb:
    """Reverberate with a fresh simulated RIR per call.

    Attributes:
        rt60_s: reverberation time (s), fixed or a (low, high) range drawn uniformly.
        drr_db: direct-to-reverberant ratio (dB), fixed or a range; None for no direct path.
        hf_rt60_ratio: top-band RT60 over ``rt60_s`` (see :func:`simulate_rir`), fixed or a range.
    """

    rt60_s: float | tuple[float, float] = (0.2, 0.8)
    drr_db: float | tuple[float, float] | None = (0.0, 10.0)
    hf_rt60_ratio: float | tuple[float, float] = (0.5, 1.0)

    def __post_init__(self) -> None:
        check_range("rt60_s", self.rt60_s, 0.01, 10.0)
        check_range("hf_rt60_ratio", self.hf_rt60_ratio, 0.05, 2.0)
        if self.drr_db is not None:
            check_range("drr_db", self.drr_db, -30.0, 40.0)

    def __call__(self, audio: np.ndarray, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, str]:
        """Return ``(reverberant audio, "reverb")``; same length and RMS as ``audio``."""
        audio = check_audio(audio)
        rng = as_generator(rng)
        rt60 = draw(self.rt60_s, rng)
        drr = None if self.drr_db is None else draw(self.drr_db, rng)
        ratio = draw(self.hf_rt60_ratio, rng)
        return apply_rir(audio, simulate_rir(rt60, rng, drr_db=drr, hf_rt60_ratio=ratio)), REVERB_LABEL
