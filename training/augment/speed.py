"""Speed change by resampling: duration and pitch change together (like a tape played faster).

A factor ``f`` makes the clip ``f`` times faster: ``n`` samples become about
``n / f``, and every frequency is multiplied by ``f``. The factor is
approximated by a fraction ``p/q`` (denominator at most :data:`MAX_DENOMINATOR`)
and applied with ``scipy.signal.resample_poly(x, up=q, down=p)``.

Labels are buckets of the realised factor: the nearest (on a log scale) of
:data:`SPEED_BUCKETS`, written ``speed_<bucket>`` (see :data:`SPEED_LABELS`).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from edge_cm.errors import DataError

from ._common import as_generator, avoid_clipping, check_audio, check_range

MIN_FACTOR, MAX_FACTOR = 0.5, 2.0
MAX_DENOMINATOR = 50
SPEED_BUCKETS = (0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)
"""Bucket centres (speed factors); roughly symmetric about 1.0 on a log scale."""
SPEED_LABELS = tuple(f"speed_{b:g}" for b in SPEED_BUCKETS)
"""Speed pseudo-labels, ``speed_0.5`` .. ``speed_2``; ``speed_1`` is the label of unchanged speed."""
NO_SPEED_LABEL = "speed_1"


def speed_fraction(factor: float) -> Fraction:
    """The fraction ``p/q`` (q <= :data:`MAX_DENOMINATOR`) closest to ``factor``; raises DataError out of range."""
    if not MIN_FACTOR <= factor <= MAX_FACTOR:
        raise DataError(f"speed factor {factor} is outside [{MIN_FACTOR}, {MAX_FACTOR}]")
    return Fraction(factor).limit_denominator(MAX_DENOMINATOR)


def speed_label(factor: float) -> str:
    """The bucket label of a speed ``factor``: nearest of :data:`SPEED_BUCKETS` in log-factor."""
    if not MIN_FACTOR <= factor <= MAX_FACTOR:
        raise DataError(f"speed factor {factor} is outside [{MIN_FACTOR}, {MAX_FACTOR}]")
    distances = np.abs(np.log(np.asarray(SPEED_BUCKETS)) - np.log(factor))
    return SPEED_LABELS[int(np.argmin(distances))]


def change_speed(audio: np.ndarray, factor: float) -> tuple[np.ndarray, float]:
    """Play ``audio`` ``factor`` times faster; returns ``(audio, realised factor p/q)``."""
    audio = check_audio(audio)
    frac = speed_fraction(factor)
    if frac == 1:
        return audio.copy(), 1.0
    # Output rate/input rate = q/p, so n samples become ~ n*q/p = n/factor.
    out = resample_poly(audio.astype(np.float64), up=frac.denominator, down=frac.numerator, window=("kaiser", 5.0))
    return avoid_clipping(out), float(frac)


@dataclass
class SpeedChange:
    """Change speed by a factor drawn uniformly (on a log scale) from ``factor``, or fixed.

    Attributes:
        factor: speed factor in [0.5, 2.0] or a (low, high) range; > 1 is faster and shorter.
    """

    factor: float | tuple[float, float] = (0.8, 1.25)

    def __post_init__(self) -> None:
        check_range("factor", self.factor, MIN_FACTOR, MAX_FACTOR)

    def __call__(self, audio: np.ndarray, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, str]:
        """Return ``(resampled audio, speed label)``; the length is about ``len(audio) / factor``."""
        rng = as_generator(rng)
        if isinstance(self.factor, (tuple, list)):
            low, high = np.log(self.factor[0]), np.log(self.factor[1])
            factor = float(np.exp(rng.uniform(low, high))) if high > low else float(self.factor[0])
        else:
            factor = float(self.factor)
        out, realised = change_speed(audio, factor)
        return out, speed_label(realised)
