"""Choose a detector threshold from real speech recorded where the device listens.

A bundle's threshold was chosen on its dev set, clean speech. In a noisy or reverberant room real
speech scores higher (``benchmarks/channel_robustness.py``: babble at 15 dB SNR made 26.7 % of the
developer corpus's real dev clips false alarms at the shipped threshold), so a threshold set on real
speech recorded in that room keeps false alarms where you want them. Only the false-alarm side can be
set this way: how many spoofs then pass in that room is unknown unless spoofs are played there too.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import EdgeCMError

THRESHOLD_DECIMALS = 6
"""A threshold is rounded up to this many decimals, so the printed value is the one measured."""


def false_alarm_rate(scores: Sequence[float], threshold: float) -> float:
    """Share of real-speech clip scores at or above ``threshold`` (judged spoof)."""
    return float(np.mean(np.asarray(scores, dtype=np.float64) >= threshold))


def check_target(target: float) -> float:
    """``target`` (a false-alarm fraction) if it lies in (0, 1), else an :class:`EdgeCMError`."""
    if not 0.0 < target < 1.0:  # also refuses NaN
        raise EdgeCMError(f"false-alarm target must be a fraction in (0, 1), got {target!r}",
                          hint="e.g. --false-alarms 5 for 5 %")
    return target


def threshold_for(scores: Sequence[float], target: float) -> float:
    """The lowest threshold (rounded up to :data:`THRESHOLD_DECIMALS`) at which at most ``target`` (a
    fraction in (0, 1)) of the real-speech clip ``scores`` are false alarms.

    The threshold lies strictly above the score it must exceed. Raises :class:`EdgeCMError` when too
    few clips are given to resolve ``target``, or when more clips than it allows score 1.0."""
    check_target(target)
    s = np.sort(np.asarray(scores, dtype=np.float64))
    needed = math.ceil(1.0 / target - 1e-9)
    if s.size < needed:
        raise EdgeCMError(f"{s.size} clips with speech cannot resolve a {100 * target:g} % false-alarm rate",
                          hint=f"record at least {needed} clips of real speech (more gives a steadier threshold)")
    allowed = int(math.floor(target * s.size + 1e-9))  # clips that may stay at or above the threshold
    must_exceed = float(s[s.size - allowed - 1])
    scale = 10 ** THRESHOLD_DECIMALS
    # The lowest m / scale strictly above must_exceed; counted up from just below, because
    # ceil(x * scale) / scale can round back down onto x itself (x = 0.30004 does).
    m = math.floor(must_exceed * scale) - 1
    while m / scale <= must_exceed:
        m += 1
    if m > scale:  # scores saturated at 1.0: no probability threshold lies above them
        top = int(np.count_nonzero(s >= must_exceed))
        raise EdgeCMError(f"{top} of {s.size} clips with speech score {must_exceed:g}, more than the {allowed} a "
                          f"{100 * target:g} % false-alarm rate allows, and no threshold up to 1.0 lies above them",
                          hint="check that the files are real speech recorded where the device listens, "
                               "or allow more false alarms")
    return m / scale


@dataclass(frozen=True)
class Calibration:
    """A threshold chosen on real speech; rates are fractions of the clips with speech."""

    threshold: float
    target_false_alarms: float
    false_alarms: float
    """At :attr:`threshold`, on the same clips (at most the target)."""
    bundle_threshold: float
    bundle_false_alarms: float
    """At the bundle's own threshold, on the same clips."""
    clips: int
    no_speech: tuple[str, ...]
    """Files without speech: left out, and listed so nothing is dropped unseen."""

    def to_dict(self) -> dict:
        return {**asdict(self), "no_speech": list(self.no_speech)}


def calibrate(detector, files: Iterable[str | Path], target: float) -> Calibration:
    """Score ``files`` (real speech only) with ``detector`` and choose the threshold for ``target``.

    A file that cannot be read raises its typed error: a threshold from fewer clips than given
    would be silently weaker."""
    check_target(target)  # before any scoring
    scores, no_speech = [], []
    for path in files:
        clip = detector.detect_file(path)
        if clip.score is None:
            no_speech.append(str(path))
        else:
            scores.append(clip.score)
    if not scores:
        raise EdgeCMError("no file holds speech to calibrate on", hint="record real speech where the device listens")
    threshold = threshold_for(scores, target)
    bundle_threshold = float(detector.bundle.meta.threshold)
    return Calibration(threshold=threshold, target_false_alarms=target,
                       false_alarms=false_alarm_rate(scores, threshold), bundle_threshold=bundle_threshold,
                       bundle_false_alarms=false_alarm_rate(scores, bundle_threshold), clips=len(scores),
                       no_speech=tuple(no_speech))
