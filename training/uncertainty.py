"""Bootstrap intervals of EER: how much of a figure is the luck of the clips drawn.

Each draw redraws the data with replacement within each stratum (the bona fide clips, and each
spoofing system's clips), so every draw keeps the split's make-up, and recomputes every EER with
the audited :func:`edge_cm.metrics.compute_eer`. Intervals are percentiles of the draws. Several
models scored on the same clips share each draw, so the interval of their difference is paired.

The unit of a draw is a clip, or with ``clusters`` a group of clips that come in or stay out
together (a speaker): clips of one speaker are not independent, and drawing them one by one
understates the spread. Used by ``edge-cm-train eval`` and ``benchmarks/eer_uncertainty.py``.
"""
from __future__ import annotations

import numpy as np

from edge_cm import metrics as M

BONAFIDE = "bona fide"  # the stratum of real clips; spoof strata are named by their system
LEVEL = 0.95
MIN_RESAMPLES = 100  # fewer draws leave the 2.5th and 97.5th percentiles to two or three values
UNITS = ("clip", "speaker")  # what a draw redraws: single clips, or every clip of a speaker together


def speaker_unit(row) -> str:
    """The resampling unit of a manifest row under ``unit="speaker"``: its speaker, or where the
    manifest names none, its recording source (``source:NAME``; clips of one source share a
    microphone and often a speaker, e.g. Mycroft's one contributor per split, so drawing them one
    by one would understate the spread); empty when neither is known (then a unit of its own)."""
    if getattr(row, "speaker", ""):
        return str(row.speaker)
    source = getattr(row, "source", "")
    return f"source:{source}" if source else ""


def check_resamples(n: int) -> None:
    """Refuse too few draws (a typed error), before any scoring."""
    from edge_cm.errors import DataError

    if n < MIN_RESAMPLES:
        raise DataError(f"{n} bootstrap resamples are too few for 95 % intervals",
                        hint=f"use at least {MIN_RESAMPLES}")


def strata_of(is_bonafide: np.ndarray, systems: np.ndarray, clusters: np.ndarray | None = None
              ) -> dict[str, list[np.ndarray]]:
    """Per stratum (``BONAFIDE`` and each spoofing system), its resampling units: arrays of clip
    indices that are drawn together. ``clusters`` (one label per clip, e.g. the speaker) groups a
    stratum's clips by label; a clip with an empty label (speaker not known) is a unit of its own,
    and a stratum whose clips share one label (a TTS voice) falls back to single clips. Without
    ``clusters`` every clip is its own unit."""
    names = {BONAFIDE: is_bonafide}
    names.update({k: ~is_bonafide & (systems == k) for k in sorted(set(systems[~is_bonafide].tolist()))})
    out = {}
    for name, mask in names.items():
        idx = np.flatnonzero(mask)
        labels = None if clusters is None else clusters[idx]
        if labels is None or np.unique(labels).size < 2:
            out[name] = [idx[i:i + 1] for i in range(idx.size)]
        else:
            known = [c for c in np.unique(labels) if c != ""]
            out[name] = [idx[labels == c] for c in known] + [idx[i:i + 1] for i in np.flatnonzero(labels == "")]
    return out


def resample(strata: dict[str, list[np.ndarray]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One bootstrap draw: each stratum's units drawn with replacement (as many as it has), their
    clips concatenated."""
    return {k: np.concatenate([units[i] for i in rng.integers(0, len(units), len(units))])
            for k, units in strata.items()}


def eers(scores: np.ndarray, clips: dict[str, np.ndarray]) -> dict[str, float]:
    """Pooled EER (key ``pooled``) and each system's EER against all bona fide clips (fractions),
    of scores where higher = more bona fide; ``clips`` holds each stratum's clip indices."""
    bona = scores[clips[BONAFIDE]]
    systems = {k: v for k, v in clips.items() if k != BONAFIDE}
    out = {"pooled": M.compute_eer(bona, scores[np.concatenate(list(systems.values()))])[0]}
    out.update({k: M.compute_eer(bona, scores[v])[0] for k, v in systems.items()})
    return out


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap values."""
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap(scores: dict[str, np.ndarray], is_bonafide: np.ndarray, systems: np.ndarray,
              n_resamples: int, seed: int, clusters: np.ndarray | None = None) -> dict:
    """Point EER, interval, and (for each model after the first) the paired difference's interval
    and how often the model beat the first, per row (``pooled`` and each system). ``scores`` maps
    a model's name to its scores (higher = more bona fide) of the same clips; ``clusters`` as in
    :func:`strata_of`."""
    check_resamples(n_resamples)
    strata = strata_of(is_bonafide, systems, clusters)
    names = list(scores)
    everything = {k: np.concatenate(units) for k, units in strata.items()}
    point = {n: eers(s, everything) for n, s in scores.items()}
    rows = list(point[names[0]])
    draws = {n: {r: np.empty(n_resamples) for r in rows} for n in names}
    rng = np.random.default_rng(seed)
    for i in range(n_resamples):
        drawn = resample(strata, rng)
        for n in names:
            for r, v in eers(scores[n], drawn).items():
                draws[n][r][i] = v
    out: dict = {"clips": {k: int(v.size) for k, v in everything.items()},
                 "units": {k: len(units) for k, units in strata.items()}, "rows": {}}
    for r in rows:
        entry = {n: {"eer": point[n][r], "interval": interval(draws[n][r])} for n in names}
        for n in names[1:]:
            diff = draws[n][r] - draws[names[0]][r]
            entry[n]["minus_first"] = point[n][r] - point[names[0]][r]
            entry[n]["minus_first_interval"] = interval(diff)
            entry[n]["lower_than_first_share"] = float(np.mean(diff < 0))
        out["rows"][r] = entry
    return out
