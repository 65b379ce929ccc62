"""One post-processing chain for every clip of the corpus, bona fide and spoof alike.

A detector must not be able to tell the classes apart by level, leading/trailing silence,
background noise or sample-rate history (issue 3, "no shortcuts"), so both classes go through
exactly this chain. "Active" and "silence" are decided by :func:`training.activity.detect`, the
detector the shortcut check (:mod:`training.shortcuts`) measures with.

1. resample to 16 kHz with soxr VHQ (the resampler the shared bona fide corpus was made with),
   remove DC;
2. trim: cut everything more than ``margin_s`` (0.05 s) before the first / after the last active
   frame;
3. scale so the RMS over active samples is ``target_dbfs`` (-26 dBFS);
4. background: every clip gets the background of one real recording, its *donor*. A bona fide
   clip is its own donor; a copy-synthesis spoof has its source utterance; a TTS spoof has the
   bona fide clip of its split whose channel it was given. The donor is trimmed and scaled by
   steps 1 and 3 (not trimmed), then its background-only frames (not active, within 4 dB of its
   background level, two frames cut from each end of every run) are cut out
   and chained with 5 ms equal-power crossfades into a noise bed, looped to the clip's length
   from a seeded offset. This keeps the donor's own noise level relative to its speech;
5. silence policy (same for both classes): pad ``lead`` and ``trail`` seconds, each drawn
   uniformly from ``pad_s`` (0.05-0.45 s, seeded per clip), filled with the noise bed. Inside
   the clip the bed is added only as far as the clip lacks it: gain
   ``sqrt(max(0, P_bed - P_own) / P_bed)``, where ``P_own`` is the clip's own background power,
   so bona fide clips (P_own = P_bed) keep their noise and clean TTS (P_own ~ 0) gets all of
   it; the gain changes over 10 ms ramps at the pad edges. Leading silence is therefore
   ``margin + lead`` for both classes (less only when a clip had less to begin with);
6. scale again to ``target_dbfs`` active RMS (measured by the shared detector on the final clip);
7. a look-ahead peak limiter holds peaks at ``ceiling_dbfs`` (smooth gain, no hard clipping),
   with one make-up pass;
8. 16-bit PCM FLAC (the writer quantises).

Durations are matched separately: the builder makes each TTS utterance about as long (active
span) as its donor (:func:`training.corpus.builder.make_audio`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from training.activity import ActivityConfig, active_mean_square, detect

SAMPLE_RATE = 16000
"""Sample rate (Hz) of every corpus file."""


@dataclass(frozen=True)
class NormalisationSpec:
    """Parameters of :func:`normalise` (levels in dBFS, times in seconds)."""

    target_dbfs: float = -26.0
    ceiling_dbfs: float = -1.0
    margin_s: float = 0.05
    pad_s: tuple[float, float] = (0.05, 0.45)
    quiet_margin_db: float = 4.0
    crossfade_s: float = 0.005
    ramp_s: float = 0.010
    limiter_window_s: float = 0.005
    limiter_release_s: float = 0.050
    activity: ActivityConfig = field(default_factory=ActivityConfig)

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


def _prescale(x: np.ndarray) -> np.ndarray:
    """Loudest frame at about -10 dBFS, as in a finished clip, so the detector's absolute floor
    (-60 dBFS) means the same for a quiet raw input as for the output."""
    from training.activity import frame_levels_db

    peak = float(frame_levels_db(x).max()) if len(x) else -120.0
    return x if peak <= -119.0 else x * 10.0 ** ((-10.0 - peak) / 20.0)


def trim_silence(x: np.ndarray, spec: NormalisationSpec = NormalisationSpec()) -> np.ndarray:
    """Cut everything more than ``spec.margin_s`` before the first / after the last active frame."""
    span = detect(_prescale(np.asarray(x, dtype=np.float64)), spec.activity).span_samples()
    if span is None:
        return x
    margin = int(round(spec.margin_s * SAMPLE_RATE))
    return x[max(0, span[0] - margin):min(len(x), span[1] + margin)]


def set_active_level(x: np.ndarray, spec: NormalisationSpec = NormalisationSpec()) -> np.ndarray:
    """Scale so the RMS over active samples is ``spec.target_dbfs`` (unchanged if nothing is active)."""
    x = np.asarray(x, dtype=np.float64)
    pre = _prescale(x)
    ms = active_mean_square(pre, spec.activity)
    if ms <= 0.0:
        return x
    return pre * (10.0 ** (spec.target_dbfs / 20.0) / np.sqrt(ms))


def _chain(pieces: list[np.ndarray], n_fade: int) -> np.ndarray:
    """Concatenate noise pieces with equal-power crossfades of ``n_fade`` samples (uncorrelated noise
    keeps its power through such a fade)."""
    out = pieces[0].copy()
    t = np.linspace(0.0, np.pi / 2, n_fade) if n_fade else np.zeros(0)
    for p in pieces[1:]:
        k = min(n_fade, len(out), len(p))
        if k:
            out[-k:] = out[-k:] * np.cos(t[:k] if k == n_fade else np.linspace(0, np.pi / 2, k)) + \
                p[:k] * np.sin(t[:k] if k == n_fade else np.linspace(0, np.pi / 2, k))
        out = np.concatenate([out, p[k:]])
    return out


def background_bed(donor: np.ndarray, spec: NormalisationSpec = NormalisationSpec()) -> np.ndarray:
    """The donor's background-only audio (at the donor's level), chained with crossfades; may be empty."""
    act = detect(donor, spec.activity)
    quiet = act.quiet_frames(spec.quiet_margin_db) & ~act.active
    hop, frame = spec.activity.hop_n, spec.activity.frame_n
    n_fade = int(round(spec.crossfade_s * SAMPLE_RATE))
    pieces = []
    idx = np.flatnonzero(quiet)
    # runs of consecutive quiet frames -> sample ranges
    if idx.size:
        breaks = np.flatnonzero(np.diff(idx) > 1)
        starts = np.concatenate([[idx[0]], idx[breaks + 1]])
        ends = np.concatenate([idx[breaks], [idx[-1]]])
        for s, e in zip(starts, ends):
            s, e = s + 2, e - 2  # run edges are where speech onsets and decays bleed in
            if e < s:
                continue
            seg = donor[s * hop:min(len(donor), e * hop + frame)]
            if len(seg) >= 3 * n_fade:
                pieces.append(np.asarray(seg, dtype=np.float64))
    return _chain(pieces, n_fade) if pieces else np.zeros(0)


def _loop(bed: np.ndarray, n: int, offset: int, n_fade: int) -> np.ndarray:
    bed = np.roll(bed, -offset)
    reps = int(np.ceil(n / max(1, len(bed) - n_fade))) + 1
    return _chain([bed] * reps, n_fade)[:n]


def _own_background_power(x: np.ndarray, spec: NormalisationSpec) -> float:
    act = detect(x, spec.activity)
    quiet = act.quiet_frames(spec.quiet_margin_db) & ~act.active
    if not quiet.any():
        return 0.0
    return float(np.mean(10.0 ** (act.levels_db[quiet] / 10.0)))


def prepare_donor(samples: np.ndarray, rate: int, spec: NormalisationSpec = NormalisationSpec()) -> np.ndarray:
    """Steps 1 and 3 of the chain on a recording: 16 kHz, at ``target_dbfs`` active RMS, *not*
    trimmed (its pauses are where its background is)."""
    x = resample_to_16k(samples, rate).astype(np.float64)
    return set_active_level(x - x.mean(), spec)


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


def normalise(samples: np.ndarray, rate: int, spec: NormalisationSpec = NormalisationSpec(), *,
              donor: np.ndarray | None = None, seed: int | None = None) -> np.ndarray:
    """Apply the whole chain (module docstring) and return 16 kHz float32.

    ``donor``: the background recording, already through :func:`prepare_donor` (None: the clip is
    its own donor). ``seed``: draws the pads and the bed offset; None adds no pads (steps 4-5 only
    top up the background).
    """
    full = prepare_donor(samples, rate, spec)
    if not np.any(full):
        return full.astype(np.float32)
    x = trim_silence(full, spec)
    bed = background_bed(full if donor is None else np.asarray(donor, dtype=np.float64), spec)
    rng = np.random.default_rng(seed if seed is not None else 0)
    lead = trail = 0
    if seed is not None:
        lo, hi = spec.pad_s
        lead, trail = (int(round(v * SAMPLE_RATE)) for v in rng.uniform(lo, hi, size=2))
    out = np.zeros(lead + len(x) + trail)
    out[lead:lead + len(x)] = x
    bed_power = float(np.mean(bed**2)) if bed.size else 0.0
    if bed_power > 0.0:
        n_fade = int(round(spec.crossfade_s * SAMPLE_RATE))
        noise = _loop(bed, len(out), int(rng.integers(len(bed))), n_fade)
        inside = float(np.sqrt(max(0.0, bed_power - _own_background_power(full, spec)) / bed_power))
        gain = np.full(len(out), inside)
        gain[:lead] = 1.0
        gain[lead + len(x):] = 1.0
        ramp = max(1, int(round(spec.ramp_s * SAMPLE_RATE)))
        from scipy.ndimage import uniform_filter1d

        gain = uniform_filter1d(gain, size=ramp, mode="nearest")
        out = out + gain * noise
    out = set_active_level(out, spec)
    out = peak_limit(out, spec)
    # the limiter lowers loud peaks, and with them the active RMS; one make-up pass (limited
    # again) brings it back near the target without clipping
    after = active_rms_dbfs(out, spec)
    if after < spec.target_dbfs - 0.5:
        out = peak_limit(out * 10.0 ** ((spec.target_dbfs - after) / 20.0), spec)
    return np.asarray(out, dtype=np.float32)


def active_rms_dbfs(x: np.ndarray, spec: NormalisationSpec = NormalisationSpec()) -> float:
    """RMS level (dBFS) over the active samples of a 16 kHz clip (the shared detector)."""
    from training.activity import active_rms_dbfs as level

    return level(x, spec.activity)
