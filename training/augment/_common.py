"""Helpers shared by the augmentation transforms: seeding and input checks."""
from __future__ import annotations

import numpy as np

from edge_cm.errors import DataError, EmptyAudioError, InvalidSamplesError

SAMPLE_RATE = 16000
"""Every transform works on mono float32 audio at this rate (Hz)."""


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A numpy Generator from a Generator (used as is), an int seed, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise DataError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def spawn(rng: np.random.Generator, n: int) -> list[np.random.Generator]:
    """``n`` independent child generators drawn from ``rng`` (deterministic given its state).

    Works on every numpy this project supports (``Generator.spawn`` needs numpy >= 1.25).
    """
    seeds = rng.integers(0, 2**63 - 1, size=n, dtype=np.int64)
    return [np.random.default_rng(int(s)) for s in seeds]


def check_audio(audio: np.ndarray, what: str = "audio") -> np.ndarray:
    """Return ``audio`` as a 1-D float32 array, or raise a typed error naming ``what``."""
    arr = np.asarray(audio)
    if arr.ndim != 1:
        raise InvalidSamplesError(f"{what}: expected mono samples of shape (n,), got {arr.shape}",
                                  hint="mix down to mono first (edge_cm.audio.prepare)")
    if arr.size == 0:
        raise EmptyAudioError(f"{what}: no samples")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise InvalidSamplesError(f"{what}: holds NaN or Inf samples")
    return arr


def draw(value: float | tuple[float, float], rng: np.random.Generator) -> float:
    """A fixed value, or a uniform draw from the closed range ``(low, high)``."""
    if isinstance(value, (tuple, list)):
        low, high = value
        return float(rng.uniform(low, high)) if high > low else float(low)
    return float(value)


def check_range(name: str, value: float | tuple[float, float], low: float, high: float) -> None:
    """Raise :class:`DataError` unless ``value`` (or both ends of a range) lies in [low, high]."""
    ends = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(ends) != 2 or not all(isinstance(e, (int, float, np.number)) and np.isfinite(e) for e in ends) \
            or ends[0] > ends[1] or ends[0] < low or ends[1] > high:
        raise DataError(f"{name}={value!r} is outside [{low}, {high}]",
                        hint="give a number or a (low, high) tuple inside that range")


def power(x: np.ndarray) -> float:
    """Mean square of ``x`` (float64, so long clips do not lose precision)."""
    return float(np.mean(np.square(x, dtype=np.float64)))


def avoid_clipping(x: np.ndarray, peak: float = 0.999) -> np.ndarray:
    """Scale the whole clip down when its peak exceeds ``peak``, instead of clipping (keeps ratios)."""
    top = float(np.max(np.abs(x))) if x.size else 0.0
    if top > peak:
        x = x * (peak / top)
    return x.astype(np.float32, copy=False)
