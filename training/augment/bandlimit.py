"""Band limiting: the window as a narrower channel (a telephone line, an 8-kHz recorder) would pass it.

Why: the shipped detector flags about half of real full-band speech once it is low-passed at 4 kHz
(``benchmarks/bandwidth_sensitivity.py``), although it passes FSDD's 8-kHz recordings, a source it
was trained on. Applied to bona fide and spoof windows alike, a cut-off band carries no label.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import SAMPLE_RATE, as_generator, check_audio, check_range, draw

LOWPASS_LABEL = "lowpass"


def low_pass(samples: np.ndarray, cutoff_hz: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``samples`` with every FFT bin above ``cutoff_hz`` zeroed over the whole array: an ideal,
    zero-phase low-pass; float32, same length."""
    spectrum = np.fft.rfft(np.asarray(samples, dtype=np.float64))
    spectrum[np.fft.rfftfreq(len(samples), 1.0 / sample_rate) > cutoff_hz] = 0.0
    return np.fft.irfft(spectrum, n=len(samples)).astype(np.float32)


@dataclass(frozen=True)
class LowPass:
    """Ideal low-pass at a cut-off (Hz) drawn uniformly from ``cutoff_hz``; 3.4 kHz is the top of
    the classic telephone band, 7 kHz that of wideband (G.722) telephony."""

    cutoff_hz: float | tuple[float, float] = (3400.0, 7000.0)

    def __post_init__(self) -> None:
        check_range("cutoff_hz", self.cutoff_hz, 500.0, SAMPLE_RATE / 2)

    def __call__(self, audio: np.ndarray, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, str]:
        audio = check_audio(audio)
        return low_pass(audio, draw(self.cutoff_hz, as_generator(rng))), LOWPASS_LABEL
