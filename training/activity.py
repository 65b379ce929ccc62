"""Speech activity: which 10 ms steps of a 16 kHz clip are speech, which are silence.

One detector for the whole project: the corpus builder trims and levels clips with it
(:mod:`training.corpus.normalise`) and the shortcut check (:mod:`training.shortcuts`) measures
leading/trailing silence and active-speech level with it, so "silence" and "active speech" mean
the same thing in both.

Frames of ``frame_s`` (20 ms) every ``hop_s`` (10 ms). A frame is *active* when its energy is

* within ``active_rel_db`` (35 dB) of the clip's loudest frame,
* at least ``floor_margin_db`` (12 dB) above the *background*: the ``floor_percentile`` (10th)
  percentile of the energies of frames that are not digital zero (this term never asks for more
  than ``max_background_rel_db``, 20 dB, below the peak, so a clip that is all speech keeps it), and
* above ``active_abs_dbfs`` (-60 dBFS).

The background term keeps stationary room noise from counting as speech: silence means "no
speech", not "digital zero". Frame energies are floored at ``floor_dbfs`` (-120 dBFS).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class ActivityConfig:
    """Thresholds of the activity detector (times in seconds, levels in dB / dBFS)."""

    frame_s: float = 0.020
    hop_s: float = 0.010
    active_rel_db: float = 35.0
    active_abs_dbfs: float = -60.0
    floor_percentile: float = 10.0
    floor_margin_db: float = 12.0
    max_background_rel_db: float = 20.0
    floor_dbfs: float = -120.0

    @property
    def frame_n(self) -> int:
        return int(round(self.frame_s * SAMPLE_RATE))

    @property
    def hop_n(self) -> int:
        return int(round(self.hop_s * SAMPLE_RATE))

    def to_dict(self) -> dict:
        return asdict(self)


def frame_levels_db(audio: np.ndarray, config: ActivityConfig = ActivityConfig()) -> np.ndarray:
    """Energy (dBFS, floored; a full-scale sine is -3 dBFS) of each frame; one frame for short clips."""
    frame, hop = config.frame_n, config.hop_n
    x = np.asarray(audio, dtype=np.float64)
    if x.size < frame:
        x = np.pad(x, (0, frame - x.size))
    count = 1 + (x.size - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(count)[:, None]
    ms = np.mean(x[idx] ** 2, axis=1)
    with np.errstate(divide="ignore"):
        return np.maximum(10.0 * np.log10(ms), config.floor_dbfs)


@dataclass
class Activity:
    """The detector's decision on one clip."""

    levels_db: np.ndarray      # energy per frame (dBFS)
    active: np.ndarray         # bool per frame
    background_db: float       # background estimate (dBFS), digital-zero frames ignored
    threshold_db: float        # a frame is active above this (dBFS)
    n_samples: int
    config: ActivityConfig

    def sample_mask(self) -> np.ndarray:
        """Bool per sample: covered by at least one active frame."""
        mask = np.zeros(self.n_samples, dtype=bool)
        frame, hop = self.config.frame_n, self.config.hop_n
        for i in np.flatnonzero(self.active):
            mask[i * hop:i * hop + frame] = True
        return mask

    def span_samples(self) -> tuple[int, int] | None:
        """(first, last + 1) sample covered by active frames, or None when nothing is active."""
        idx = np.flatnonzero(self.active)
        if not idx.size:
            return None
        hop, frame = self.config.hop_n, self.config.frame_n
        return int(idx[0] * hop), int(min(self.n_samples, idx[-1] * hop + frame))

    def quiet_frames(self, margin_db: float = 4.0) -> np.ndarray:
        """Bool per frame: background only (within ``margin_db`` of the background, or digital zero)."""
        return self.levels_db <= self.background_db + margin_db


def detect(audio: np.ndarray, config: ActivityConfig = ActivityConfig()) -> Activity:
    """Run the detector described in the module docstring on a 16 kHz clip."""
    x = np.asarray(audio, dtype=np.float64)
    levels = frame_levels_db(x, config)
    audible = levels[levels > config.floor_dbfs + 1.0]
    background = float(np.percentile(audible, config.floor_percentile)) if audible.size else config.floor_dbfs
    peak = float(levels.max())
    above_background = min(background + config.floor_margin_db, peak - config.max_background_rel_db)
    threshold = max(peak - config.active_rel_db, above_background, config.active_abs_dbfs)
    return Activity(levels, levels > threshold, background, threshold, int(x.size), config)


def active_mean_square(audio: np.ndarray, config: ActivityConfig = ActivityConfig(),
                       activity: Activity | None = None) -> float:
    """Mean square of the samples under active frames (0 when nothing is active)."""
    x = np.asarray(audio, dtype=np.float64)
    act = detect(x, config) if activity is None else activity
    mask = act.sample_mask()
    return float(np.mean(x[mask] ** 2)) if mask.any() else 0.0


def active_rms_dbfs(audio: np.ndarray, config: ActivityConfig = ActivityConfig()) -> float:
    """RMS level (dBFS) over the active samples; ``config.floor_dbfs`` when nothing is active."""
    ms = active_mean_square(audio, config)
    return float(max(10.0 * np.log10(ms), config.floor_dbfs)) if ms > 0 else config.floor_dbfs
