"""Which bona fide clips babble noise is made of, with the benchmark's talkers kept apart.

``benchmarks/channel_robustness.py`` mixes its babble condition from :data:`BENCHMARK_CLIPS`
train-split bona fide clips (:func:`benchmark_rows`). Training babble (``AugmentConfig.noise_kinds``
with ``babble``) comes from the other train-split speakers only (:func:`training_rows`), so a model
trained with babble is scored on that benchmark under talkers it never heard as babble.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from training.data.manifest import ManifestRow

BENCHMARK_CLIPS = 200
"""Train-split bona fide clips the benchmark's babble is drawn from."""


def every_kth(rows: Sequence[ManifestRow], limit: int) -> list[ManifestRow]:
    """At most ``limit`` rows taken at an even step through ``rows``, so every source takes part."""
    step = max(1, len(rows) // max(1, limit))
    return list(rows[::step][:limit])


def talker(row: ManifestRow) -> str:
    """The row's speaker; where a source names none, its source and language together, which may merge
    several people but never lets one voice count as two talkers."""
    return row.speaker or f"{row.source}:{row.language}"


def benchmark_rows(train_bonafide: Sequence[ManifestRow]) -> list[ManifestRow]:
    """The clips of the channel benchmark's babble, from a manifest's train-split bona fide rows in order."""
    return every_kth(train_bonafide, BENCHMARK_CLIPS)


def training_rows(train_bonafide: Sequence[ManifestRow], limit: int) -> list[ManifestRow]:
    """At most ``limit`` clips for training babble, none of a talker in :func:`benchmark_rows`."""
    held_out = {talker(r) for r in benchmark_rows(train_bonafide)}
    return every_kth([r for r in train_bonafide if talker(r) not in held_out], limit)


def load(rows: Sequence[ManifestRow]) -> tuple[np.ndarray, ...]:
    """The clips of ``rows`` as 16 kHz mono float32 arrays."""
    from edge_cm.audio import TARGET_SAMPLE_RATE, read_audio

    return tuple(read_audio(r.path, target_rate=TARGET_SAMPLE_RATE) for r in rows)
