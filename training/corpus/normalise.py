"""One post-processing chain for every clip of the corpus, bona fide and spoof alike.

A detector must not be able to tell the classes apart by level, by leading silence or by
sample-rate history (issue 3, "no shortcuts"), so both classes go through exactly this chain:

1. resample to 16 kHz with soxr VHQ (the resampler the shared bona fide corpus was made with);
2. trim leading and trailing silence: 10 ms frames are "active" when their RMS is within
   ``activity_range_db`` of the loudest frame and above ``floor_dbfs`` (-100 dBFS: only digital
   silence, so the decision does not depend on the clip's level); everything before the first
   and after the last active frame is cut, keeping ``margin_s`` seconds on each side;
3. scale so the RMS over active frames is ``target_dbfs`` (default -26 dBFS);
4. a look-ahead peak limiter holds peaks at ``ceiling_dbfs`` (smooth gain, no hard clipping);
5. 16-bit PCM FLAC (the writer quantises).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SAMPLE_RATE = 16000
"""Sample rate (Hz) of every corpus file."""


@dataclass(frozen=True)
class NormalisationSpec:
    """Parameters of :func:`normalise` (levels in dBFS, times in seconds)."""

    target_dbfs: float = -26.0
    ceiling_dbfs: float = -1.0
    frame_s: float = 0.010
    activity_range_db: float = 40.0
    floor_dbfs: float = -100.0
    margin_s: float = 0.10
    limiter_window_s: float = 0.005
    limiter_release_s: float = 0.050

    def to_dict(self) -> dict:
        return asdict(self)


def resample_to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz; soxr VHQ, the same resampler the bona fide corpus used."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32)
    if int(rate) == SAMPLE_RATE:
        return x
    import soxr

    return soxr.resample(x, int(rate), SAMPLE_RATE, quality="VHQ").astype(np.float32)


def _frame_rms_db(x: np.ndarray, hop: int) -> np.ndarray:
    n = max(1, int(np.ceil(len(x) / hop)))
    padded = np.zeros(n * hop, dtype=np.float64)
    padded[: len(x)] = x
    power = (padded.reshape(n, hop) ** 2).mean(axis=1)
    return 10.0 * np.log10(power + 1e-20)


def active_frames(x: np.ndarray, spec: NormalisationSpec, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Boolean mask of active (speech) frames of ``spec.frame_s`` seconds."""
    hop = max(1, int(round(spec.frame_s * rate)))
    db = _frame_rms_db(x, hop)
    threshold = max(float(db.max()) - spec.activity_range_db, spec.floor_dbfs)
    return db > threshold


def trim_silence(x: np.ndarray, spec: NormalisationSpec, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Cut leading/trailing inactive audio, keeping ``spec.margin_s`` on each side."""
    mask = active_frames(x, spec, rate)
    if not mask.any():
        return x
    hop = max(1, int(round(spec.frame_s * rate)))
    idx = np.flatnonzero(mask)
    margin = int(round(spec.margin_s * rate))
    start = max(0, idx[0] * hop - margin)
    stop = min(len(x), (idx[-1] + 1) * hop + margin)
    return x[start:stop]


def peak_limit(x: np.ndarray, spec: NormalisationSpec, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Smooth look-ahead limiter: gain follows the windowed peak, so no sample exceeds the ceiling."""
    from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d

    ceiling = 10.0 ** (spec.ceiling_dbfs / 20.0)
    peak = maximum_filter1d(np.abs(x), size=max(1, int(spec.limiter_window_s * rate)))
    if peak.max() <= ceiling:
        return x
    gain = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    release = max(1, int(spec.limiter_release_s * rate))
    # min-filter first so the smoothed gain is never above the gain a peak needs
    gain = minimum_filter1d(gain, size=2 * release + 1)
    gain = uniform_filter1d(gain, size=release)
    out = x * gain
    return np.clip(out, -ceiling, ceiling).astype(np.float32)


def normalise(samples: np.ndarray, rate: int, spec: NormalisationSpec = NormalisationSpec()) -> np.ndarray:
    """Apply the whole chain (resample, trim, loudness, limiter) and return 16 kHz float32."""
    x = resample_to_16k(samples, rate).astype(np.float64)
    x = x - x.mean()
    x = trim_silence(x, spec)
    mask = active_frames(x, spec)
    hop = max(1, int(round(spec.frame_s * SAMPLE_RATE)))
    n = len(mask) * hop
    padded = np.zeros(n)
    padded[: len(x)] = x
    frames = padded.reshape(len(mask), hop)[mask]
    rms = float(np.sqrt((frames**2).mean())) if frames.size else 0.0
    if rms <= 0.0:
        return x.astype(np.float32)
    x = x * (10.0 ** (spec.target_dbfs / 20.0) / rms)
    x = peak_limit(x, spec)
    # the limiter lowers loud peaks, and with them the active RMS; one make-up pass (limited
    # again) brings it back near the target without clipping
    after = active_rms_dbfs(x, spec)
    if after < spec.target_dbfs - 0.5:
        x = peak_limit(x * 10.0 ** ((spec.target_dbfs - after) / 20.0), spec)
    return np.asarray(x, dtype=np.float32)


def active_rms_dbfs(x: np.ndarray, spec: NormalisationSpec = NormalisationSpec()) -> float:
    """RMS level (dBFS) over the active frames of a 16 kHz clip."""
    mask = active_frames(x, spec)
    hop = max(1, int(round(spec.frame_s * SAMPLE_RATE)))
    padded = np.zeros(len(mask) * hop)
    padded[: len(x)] = x
    frames = padded.reshape(len(mask), hop)[mask]
    return float(10.0 * np.log10((frames**2).mean() + 1e-20))
