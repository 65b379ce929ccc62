"""Window policy: how audio of any length becomes fixed 4-second windows, and which windows hold speech.

* Audio shorter than a window is looped (repeated) to the window length and scored once,
  unless it is shorter than ``MIN_AUDIO_SECONDS`` (0.25 s): too little to judge, looped or
  not, so its one window is reported as ``no_speech`` and not scored, as a silent clip is.
* Longer audio is cut into windows starting every ``hop`` samples (default 2 s: 50 % overlap,
  so any event up to 2 s long lies whole inside at least one window, at half the
  compute of a 1-s hop); if the last regular window ends before the audio does, one
  more window covers the last 4 s, so no sample goes unscored.
* A window whose share of 20-ms frames above the speech gate's level is below
  ``min_speech_fraction`` is reported as ``no_speech`` and not scored.
* The clip verdict is the mean score over the windows that hold speech, compared
  with the bundle's threshold (the mean is less swayed by one odd window than the
  max, and every window counts once whatever the hop).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import EdgeCMError

MIN_AUDIO_SECONDS = 0.25
"""Shortest audio (s) that is scored; shorter clips and streams give one ``no_speech`` window. (A 1-sample
clip looped to 4 s would otherwise get a confident verdict; the developer corpus's shortest clip is 0.36 s.)"""


def min_audio_samples(sample_rate: int) -> int:
    """``MIN_AUDIO_SECONDS`` in samples at ``sample_rate`` Hz (4,000 at 16 kHz)."""
    return int(math.ceil(MIN_AUDIO_SECONDS * sample_rate))


@dataclass(frozen=True)
class SpeechGate:
    """Energy gate: a 20-ms frame is active when its RMS is at least ``level_dbfs``."""

    level_dbfs: float = -50.0
    frame_samples: int = 320
    min_speech_fraction: float = 0.2

    def speech_fraction(self, window: np.ndarray) -> float:
        """Share (0..1) of whole frames in ``window`` whose RMS reaches ``level_dbfs``."""
        n = window.size // self.frame_samples
        if n == 0:
            return 0.0
        frames = window[: n * self.frame_samples].reshape(n, self.frame_samples).astype(np.float64)
        rms = np.sqrt(np.mean(frames * frames, axis=1))
        level = 20.0 * np.log10(np.maximum(rms, 1e-10))
        return float(np.mean(level >= self.level_dbfs))

    def has_speech(self, fraction: float) -> bool:
        return fraction >= self.min_speech_fraction


def loop_to_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Repeat ``samples`` end to end until ``length`` samples (the short-audio policy)."""
    if samples.size == 0:
        raise EdgeCMError("cannot loop zero samples to a window", hint="pass at least one sample")
    reps = -(-length // samples.size)
    return np.tile(samples, reps)[:length]


def align_hop(hop_samples: int, frame_hop: int) -> int:
    """Round a window hop to a whole number of feature frames, so streaming can reuse frames."""
    if hop_samples <= 0:
        raise EdgeCMError(f"window hop must be positive, got {hop_samples} samples")
    return max(frame_hop, int(round(hop_samples / frame_hop)) * frame_hop)


def window_starts(n_samples: int, window_samples: int, hop_samples: int) -> list[int]:
    """Start sample of every window for audio of ``n_samples`` samples (see module docstring).

    Audio shorter than a window gives ``[0]`` (that window is looped).
    """
    if n_samples <= 0:
        return []
    if n_samples <= window_samples:
        return [0]
    starts = list(range(0, n_samples - window_samples + 1, hop_samples))
    if starts[-1] + window_samples < n_samples:
        starts.append(n_samples - window_samples)
    return starts
