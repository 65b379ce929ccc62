"""Fixed-length training windows from a manifest, featurised in DataLoader workers (numpy).

* A window is ``window_samples`` samples at 16 kHz (4 s = 64,000 by default).
* Audio shorter than a window is looped (tiled) until it fills one; longer audio is cropped
  at a random offset for training and at the centre for evaluation.
* Augmentation (optional, training only) runs on the window before the features, then
  the window is fitted to length again (a speed change alters it).
* Every random choice of item ``i`` in epoch ``e`` comes from a generator seeded with
  ``(seed, e, i)``, so a batch is the same whichever worker builds it and a resumed run sees
  the same data as an uninterrupted one. Items are addressed as ``(index, epoch)`` by
  :class:`EpochBatchSampler`.
* Paired copies (``paired_copies``): a copy-synthesis spoof draws from its bona fide source's
  generator, so both are cut at the same relative offset and get the same augmentation, and the
  sampler puts them in the same batch. The pair then differs only by the spoofing system, which
  leaves the model nothing else to learn from it (Wang & Yamagishi, ICASSP 2023, train on
  vocoded copies of bona fide speech).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from edge_cm.audio import TARGET_SAMPLE_RATE, read_audio
from edge_cm.errors import DataError
from edge_cm.features import FeatureSpec, FrameAnalyzer, compute_features
from training.corpus.pairs import copy_sources
from training.data.manifest import NO_SYSTEM, ManifestRow, read_manifest_csv

NONE_SOURCE = "none"
"""Source class of bona fide rows in multi-task training."""
IGNORE_INDEX = -100
"""Target of a source the model has no class for (its loss term is skipped)."""


def read_rows(path: str | Path) -> list[ManifestRow]:
    """Rows of a manifest CSV (``training.data.manifest`` schema), or of the shared bona fide
    manifest (no ``label`` column: every row is bona fide)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except OSError as exc:
        raise DataError(f"cannot open manifest: {exc.strerror}", path=path) from exc
    if "label" in header:
        return read_manifest_csv(path)
    from training.data.readers import read_bonafide_manifest

    return read_bonafide_manifest(path)


def subset(rows: Sequence[ManifestRow], limit: int, seed: int) -> list[ManifestRow]:
    """At most ``limit`` rows (0 = all), a deterministic class-stratified choice in manifest order."""
    rows = list(rows)
    if limit <= 0 or len(rows) <= limit:
        return rows
    rng = np.random.default_rng(seed)
    bona = [i for i, r in enumerate(rows) if r.is_bonafide]
    spoof = [i for i, r in enumerate(rows) if not r.is_bonafide]
    n_bona = min(len(bona), max(1, round(limit * len(bona) / len(rows)))) if bona else 0
    n_spoof = min(len(spoof), limit - n_bona)
    keep = set(rng.choice(bona, n_bona, replace=False).tolist()) if n_bona else set()
    keep |= set(rng.choice(spoof, n_spoof, replace=False).tolist()) if n_spoof else set()
    return [rows[i] for i in sorted(keep)]


def fit_window(audio: np.ndarray, n: int, rng: np.random.Generator | None) -> np.ndarray:
    """Exactly ``n`` samples: loop a short clip, crop a long one (random offset, or centre if no rng)."""
    if audio.size == 0:
        raise DataError("cannot make a window from empty audio")
    if audio.size < n:
        audio = np.tile(audio, math.ceil(n / audio.size))
        return np.ascontiguousarray(audio[:n])
    extra = audio.size - n
    offset = int(rng.integers(0, extra + 1)) if rng is not None else extra // 2
    return np.ascontiguousarray(audio[offset:offset + n])


def window_start(size: int, n: int, position: float) -> int:
    """First sample of an ``n``-sample window at ``position`` (0 = start, 1 = end) of the possible
    offsets into a clip of ``size`` samples; 0 for a clip no longer than the window (it is looped)."""
    return 0 if size <= n else min(size - n, int(position * (size - n + 1)))


def fit_window_from(audio: np.ndarray, n: int, start: int) -> np.ndarray:
    """Exactly ``n`` samples from ``start`` (may lie outside the clip): a short clip is looped
    (indices wrap), a long one is cropped at ``start`` moved inside it."""
    if audio.size == 0:
        raise DataError("cannot make a window from empty audio")
    if audio.size < n:
        return np.ascontiguousarray(audio[(start + np.arange(n)) % audio.size])
    start = min(max(start, 0), audio.size - n)
    return np.ascontiguousarray(audio[start:start + n])


ENVELOPE_HOP = 160
"""Hop (samples, 10 ms at 16 kHz) of the energy envelopes that align a copy with its source."""


def _log_envelope(audio: np.ndarray) -> np.ndarray:
    frames = audio[:audio.size // ENVELOPE_HOP * ENVELOPE_HOP].reshape(-1, ENVELOPE_HOP).astype(np.float64)
    env = np.log((frames * frames).mean(axis=1) + 1e-10)
    return env - env.mean() if env.size else env


def copy_lag(copy: np.ndarray, source: np.ndarray, max_lag_seconds: float = 1.0) -> int:
    """Samples by which ``copy`` lags ``source`` (``copy[t + lag]`` matches ``source[t]``): the lag,
    within +-``max_lag_seconds``, of the best correlation of their 10-ms log-energy envelopes. The
    corpus trims and pads every file on its own, so a copy's speech starts up to ~0.4 s off."""
    a, b = _log_envelope(copy), _log_envelope(source)
    max_lag = int(max_lag_seconds * TARGET_SAMPLE_RATE / ENVELOPE_HOP)
    best, best_lag = -np.inf, 0
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[lag:], b) if lag >= 0 else (a, b[-lag:])
        k = min(x.size, y.size)
        if k < 20:  # under 0.2 s of overlap says nothing
            continue
        x, y = x[:k] - x[:k].mean(), y[:k] - y[:k].mean()
        r = float(x @ y) / (float(np.sqrt((x @ x) * (y @ y))) + 1e-12)
        if r > best:
            best, best_lag = r, lag
    return best_lag * ENVELOPE_HOP


def copy_groups(n: int, sources: dict[int, int]) -> list[list[int]]:
    """Indices ``0..n-1`` grouped for batching: each bona fide source with its copies (``sources``
    maps copy -> source), every other index alone; in index order."""
    copies: dict[int, list[int]] = {}
    for copy, source in sources.items():
        copies.setdefault(source, []).append(copy)
    return [[i, *sorted(copies.get(i, ()))] for i in range(n) if i not in sources]


def binary_target(row: ManifestRow) -> int:
    """Class index of the binary task: 0 = bonafide, 1 = spoof."""
    return 0 if row.is_bonafide else 1


def source_names(rows: Sequence[ManifestRow]) -> list[str]:
    """Source classes of the multi-task head: ``none`` (bona fide) then the spoof systems, sorted."""
    return [NONE_SOURCE] + sorted({r.system for r in rows if not r.is_bonafide})


class WindowDataset(Dataset):
    """Featurised windows of manifest rows, addressed by ``index`` or ``(index, epoch)``.

    Returns dicts with ``features`` (float32, ``(1, bins, frames)`` with ``add_channel``),
    ``label`` (from ``target_fn``), ``source`` (index into ``systems``, or -100 if unknown)
    and ``index``.
    """

    def __init__(self, rows: Sequence[ManifestRow], spec: FeatureSpec, *, train: bool, seed: int = 0,
                 window_seconds: float = 4.0, systems: Sequence[str] = (NONE_SOURCE,),
                 augment: Callable | None = None, target_fn: Callable[[ManifestRow], int] = binary_target,
                 add_channel: bool = True, paired_copies: bool = False):
        if not rows:
            raise DataError("no rows to build a dataset from", hint="check the manifest and the split names")
        self.rows = list(rows)
        self._copy_source: dict[int, int] | None = None
        if paired_copies:
            self._copy_source = copy_sources(self.rows)
            if not self._copy_source:
                raise DataError("paired_copies is on, but no spoof is a copy of a bona fide clip of the same rows",
                                hint="build the corpus with copy-synthesis systems (vocoders, codecs) in this "
                                     "split, or set paired_copies: false")
        self.spec = spec
        self.train = train
        self.seed = int(seed)
        self.window_samples = int(round(window_seconds * TARGET_SAMPLE_RATE))
        self.systems = list(systems)
        self._source_index = {name: i for i, name in enumerate(self.systems)}
        self.augment = augment if train else None
        self.target_fn = target_fn
        self.add_channel = add_channel
        self._analyzer: FrameAnalyzer | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def groups(self) -> list[list[int]] | None:
        """Indices that must share a training batch (paired copies), or None."""
        if self._copy_source is None:
            return None
        return copy_groups(len(self.rows), self._copy_source)

    def labels(self) -> np.ndarray:
        return np.array([self.target_fn(r) for r in self.rows], dtype=np.int64)

    def source_of(self, row: ManifestRow) -> int:
        name = NONE_SOURCE if row.is_bonafide or row.system == NO_SYSTEM else row.system
        return self._source_index.get(name, IGNORE_INDEX)

    def window(self, index: int, epoch: int = 0) -> np.ndarray:
        """The (augmented, for training) window of row ``index`` in ``epoch``: float32 samples."""
        row = self.rows[index]
        audio = read_audio(row.path)
        if not self.train:
            return fit_window(audio, self.window_samples, None)
        if self._copy_source is None:
            rng = np.random.default_rng([self.seed, int(epoch), int(index)])
            win = fit_window(audio, self.window_samples, rng)
        else:
            source = self._copy_source.get(index)
            rng = np.random.default_rng([self.seed, int(epoch), index if source is None else source])
            position = float(rng.random())
            if source is not None:
                # Lay the copy over its source first (same length, speech at the same samples), so
                # looping a short pair repeats both with the same period.
                source_audio = read_audio(self.rows[source].path)
                lag = copy_lag(audio, source_audio)
                audio = audio[(lag + np.arange(source_audio.size)) % audio.size]
            win = fit_window_from(audio, self.window_samples, window_start(audio.size, self.window_samples, position))
        if self.augment is not None:
            out = self.augment(win, rng)
            win = fit_window(np.asarray(out[0] if isinstance(out, tuple) else out, dtype=np.float32),
                             self.window_samples, rng)
        return win

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if self._analyzer is None:
            self._analyzer = FrameAnalyzer(self.spec)
        feats = compute_features(self.spec, self.window(index, epoch), self._analyzer)
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
        if self.add_channel:
            x = x.unsqueeze(0)
        row = self.rows[index]
        return {"features": x, "label": self.target_fn(row), "source": self.source_of(row), "index": index}


class EpochBatchSampler(Sampler):
    """Batches of ``(index, epoch)`` keys for one epoch, shuffled by ``(seed, epoch)``.

    ``start_batch`` skips batches already trained (resume); ``max_batches`` caps the epoch.
    A final batch of a single example is dropped in training (BatchNorm cannot train on it).
    With ``groups`` (a partition of the indices) and ``shuffle``, whole groups are shuffled and
    packed into batches of at most ``batch_size``, never split (a larger group is a batch of its own).
    """

    def __init__(self, n: int, batch_size: int, *, epoch: int, seed: int, shuffle: bool,
                 start_batch: int = 0, max_batches: int = 0, groups: Sequence[Sequence[int]] | None = None):
        self.n, self.batch_size, self.epoch, self.seed, self.shuffle = n, batch_size, epoch, seed, shuffle
        self.start_batch, self.max_batches = start_batch, max_batches
        self.groups = [list(g) for g in groups] if groups is not None else None
        if self.groups is not None and sorted(i for g in self.groups for i in g) != list(range(n)):
            raise DataError(f"batch groups must hold each of the {n} indices exactly once")

    def _packed(self, rng: np.random.Generator) -> list[list[int]]:
        out: list[list[int]] = [[]]
        for g in rng.permutation(len(self.groups)):
            group = self.groups[int(g)]
            if out[-1] and len(out[-1]) + len(group) > self.batch_size:
                out.append([])
            out[-1].extend(group)
        return out if out[-1] else []

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, 7919, self.epoch])
        if self.shuffle and self.groups is not None:
            out = self._packed(rng)
        else:
            order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
            out = [order[i:i + self.batch_size].tolist() for i in range(0, self.n, self.batch_size)]
        if self.shuffle and len(out) > 1 and len(out[-1]) < 2:
            out.pop()
        if self.max_batches > 0:
            out = out[:self.max_batches]
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.batches()[self.start_batch:]:
            yield [(i, self.epoch) for i in batch]

    def __len__(self) -> int:
        return max(0, len(self.batches()) - self.start_batch)


def collate(items: list[dict]) -> dict:
    return {"features": torch.stack([it["features"] for it in items]),
            "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
            "source": torch.tensor([it["source"] for it in items], dtype=torch.long),
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long)}


def make_loader(dataset: WindowDataset, batch_size: int, *, epoch: int = 0, seed: int = 0, shuffle: bool,
                num_workers: int = 0, start_batch: int = 0, max_batches: int = 0) -> DataLoader:
    sampler = EpochBatchSampler(len(dataset), batch_size, epoch=epoch, seed=seed, shuffle=shuffle,
                                start_batch=start_batch, max_batches=max_batches,
                                groups=getattr(dataset, "groups", None))
    # Own generator: creating an iterator must not draw from the global torch RNG (dropout's).
    gen = torch.Generator().manual_seed(seed * 1000003 + epoch)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate,
                      persistent_workers=False, generator=gen)


def global_stats(rows: Sequence[ManifestRow], spec: FeatureSpec, *, n_windows: int, seed: int,
                 window_seconds: float = 4.0, num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation of the un-normalised features of up to ``n_windows``
    training windows (a deterministic sample; centre crops), pooled over all their frames."""
    from dataclasses import replace

    raw = replace(spec, normalization="none", norm_mean=None, norm_std=None)
    sample = subset(rows, n_windows, seed)
    ds = WindowDataset(sample, raw, train=False, window_seconds=window_seconds, add_channel=False)
    total = count = total_sq = None
    for batch in make_loader(ds, 32, shuffle=False, num_workers=num_workers):
        x = batch["features"].double()  # (B, bins, frames)
        s, sq = x.sum(dim=(0, 2)), (x * x).sum(dim=(0, 2))
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        n = x.shape[0] * x.shape[2]
        count = n if count is None else count + n
    mean = (total / count).numpy()
    var = np.maximum((total_sq / count).numpy() - mean ** 2, 0.0)
    return mean, np.sqrt(var)
