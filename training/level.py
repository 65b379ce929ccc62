"""The level a level-normalised front end brings every window to (``FeatureSpec.level_dbfs``).

The corpus scales every clip to -26 dBFS active RMS (``training.corpus.normalise``), so a model
trained on it has only heard speech at about that level; a device hears whatever its gain and the
talker's distance give. With ``level_dbfs`` set, the front end shifts each window's log features to
one level (:func:`edge_cm.features.window_level_dbfs`). The level chosen is the median of the training
windows' own, so the training data's features barely move and a model trained without the shift can
take it on (``edge-cm-train release --level-dbfs auto``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_cm.features import FeatureSpec, window_level_dbfs


def training_level_dbfs(rows: Sequence, spec: FeatureSpec, *, n_windows: int, seed: int,
                        window_seconds: float = 4.0) -> float:
    """Median :func:`window_level_dbfs` (dBFS, rounded to 0.01 dB) of the centre windows of up to
    ``n_windows`` clips of ``rows`` (the deterministic sample ``global_stats`` takes)."""
    from training.dataset import WindowDataset, subset

    sample = subset(list(rows), n_windows, seed)
    ds = WindowDataset(sample, spec, train=False, window_seconds=window_seconds, add_channel=False)
    levels = [window_level_dbfs(ds.window(i)) for i in range(len(sample))]
    return round(float(np.median(levels)), 2)
