"""Real 4-s windows from manifests, for calibration and the export gates.

One window per audio file (a short clip is looped to the window, a long one cut at its
centre - the training evaluation policy), so a calibration set and an evaluation set
drawn from different files are disjoint.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_cm.audio import read_audio
from edge_cm.errors import DataError


@dataclass
class WindowSet:
    """Audio windows (float32, ``window_samples`` each, 16 kHz) with labels and the files they came from."""

    windows: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.windows)

    def counts(self) -> dict[str, int]:
        return {lab: self.labels.count(lab) for lab in sorted(set(self.labels))}


def read_manifest(path: str | Path) -> list:
    """Rows (``training.data.manifest.ManifestRow``) of an edge-cm manifest CSV (path, label, ...)
    or of the shared bona fide manifest (no label column: all bona fide)."""
    from training.dataset import read_rows

    return read_rows(path)


def _stable_rank(path: str, salt: str) -> str:
    return hashlib.sha1(f"{salt}:{Path(path).name}:{path}".encode()).hexdigest()


def choose_rows(rows: Sequence, limit: int, *, salt: str = "edge-cm-export", split: str | None = None,
                exclude: set[str] | None = None) -> list:
    """At most ``limit`` rows (0 = all), class-balanced where possible, in a stable hash order."""
    rows = [r for r in rows if (split is None or r.split == split) and not (exclude and r.path in exclude)]
    bona = sorted((r for r in rows if r.label == "bonafide"), key=lambda r: _stable_rank(r.path, salt))
    spoof = sorted((r for r in rows if r.label != "bonafide"), key=lambda r: _stable_rank(r.path, salt))
    if limit <= 0 or len(rows) <= limit:
        return bona + spoof
    n_spoof = min(len(spoof), limit // 2) if bona else min(len(spoof), limit)
    n_bona = min(len(bona), limit - n_spoof)
    n_spoof = min(len(spoof), limit - n_bona)
    return bona[:n_bona] + spoof[:n_spoof]


def fit_window(audio: np.ndarray, n: int) -> np.ndarray:
    """Exactly ``n`` samples: loop a short clip, take the centre of a long one."""
    if audio.size == 0:
        raise DataError("cannot make a window from empty audio")
    if audio.size < n:
        audio = np.tile(audio, -(-n // audio.size))
        return np.ascontiguousarray(audio[:n], dtype=np.float32)
    off = (audio.size - n) // 2
    return np.ascontiguousarray(audio[off:off + n], dtype=np.float32)


def load_windows(rows: Sequence, window_samples: int = 64000) -> WindowSet:
    """One window per row, read with the runtime's audio reader (mono, 16 kHz float32)."""
    out = WindowSet()
    for r in rows:
        out.windows.append(fit_window(read_audio(r.path), window_samples))
        out.labels.append(r.label)
        out.paths.append(str(r.path))
    return out


def calibration_and_eval(calibration_manifest: str | Path, eval_manifest: str | Path | None, *,
                         n_calibration: int, n_eval: int, window_samples: int = 64000) -> tuple[WindowSet, WindowSet]:
    """Calibration windows and a file-disjoint evaluation set.

    With one manifest, files are shared out by a stable hash: the evaluation set never
    holds a file used for calibration. Raises DataError if an evaluation file was also
    used to calibrate.
    """
    cal_rows = read_manifest(calibration_manifest)
    cal = choose_rows(cal_rows, n_calibration, salt="calibration")
    used = {r.path for r in cal}
    ev_rows = read_manifest(eval_manifest) if eval_manifest else cal_rows
    ev = choose_rows(ev_rows, n_eval, salt="evaluation", exclude=used)
    overlap = used & {r.path for r in ev}
    if overlap:
        raise DataError(f"{len(overlap)} evaluation file(s) are also calibration files", path=eval_manifest)
    return load_windows(cal, window_samples), load_windows(ev, window_samples)
