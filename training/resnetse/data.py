"""Clips, crops and batches for the ResNetSE recipe (16 kHz float32 samples throughout).

GE2E speakers come from the shared bona fide manifest (``path, seconds, source,
speaker, ..., split``). The 8-class stages read a corpus manifest in the project
schema (:mod:`training.data.manifest`): spoofs, their ``system`` mapped to one of
six families by :mod:`training.resnetse.families`, and - when the corpus has them -
its normalised bona fide copies (see :func:`classification_clips`).

GE2E needs M utterances of each of N speakers, but most LibriSpeech speakers here
have one utterance. A speaker's M "utterances" are therefore M random crops
(``crop_seconds`` long) drawn round-robin over that speaker's clips: several crops
of one long recording stand in for several utterances. Clips shorter than a crop
are tiled (repeated) to length. Only rows with a speaker label are used; unlabeled
sources (Picovoice, Tux Paint, KLettres, Mycroft) cannot be grouped by speaker.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_cm.audio import read_audio
from edge_cm.errors import DataError

from .families import class_index

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Clip:
    """One audio file with its class index (0 = bona fide), speaker ('' if unknown) and split."""

    path: Path
    label: int
    speaker: str
    split: str
    system: str


def read_bonafide(manifest: str | Path, splits: tuple[str, ...] = ("train",)) -> list[Clip]:
    """Bona fide clips of ``splits`` from the shared manifest (paths relative to its folder)."""
    manifest = Path(manifest)
    try:
        handle = open(manifest, newline="", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot open bona fide manifest: {exc.strerror}", path=manifest) from exc
    clips = []
    with handle:
        reader = csv.DictReader(handle)
        missing = {"path", "speaker", "split"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"line 1: header lacks column(s) {sorted(missing)}", path=manifest,
                            hint="expected the shared bona fide manifest (path, seconds, source, speaker, ..., split)")
        for row in reader:
            if row["split"] in splits:
                clips.append(Clip(manifest.parent / row["path"], 0, row["speaker"], row["split"], "bonafide"))
    return clips


def read_corpus(manifest: str | Path, splits: tuple[str, ...] = ("train",)) -> tuple[list[Clip], list[Clip]]:
    """(bona fide, spoofed) clips of ``splits`` from a corpus manifest in the project schema."""
    from training.data.manifest import read_manifest_csv

    bona, spoofs = [], []
    for row in read_manifest_csv(manifest):
        if row.split not in splits:
            continue
        if row.is_bonafide:
            bona.append(Clip(Path(row.path), 0, row.speaker, row.split, "bonafide"))
        else:
            spoofs.append(Clip(Path(row.path), class_index(row.system, source=str(manifest)), row.speaker,
                               row.split, row.system))
    return bona, spoofs


def read_spoofs(manifest: str | Path, splits: tuple[str, ...] = ("train",)) -> list[Clip]:
    """Spoofed clips of ``splits`` from a corpus manifest; bona fide rows there are skipped."""
    return read_corpus(manifest, splits)[1]


def classification_clips(bonafide_manifest: str | Path, corpus_manifest: str | Path | None,
                         splits: tuple[str, ...]) -> tuple[list[Clip], list[Clip]]:
    """(bona fide, spoofed) clips for the 8-class stages.

    The corpus' own bona fide rows win when it has them: the corpus builder writes
    bona fide copies normalised like its spoofs, and mixing those spoofs with the raw
    shared clips would let level or channel tell the classes apart. Without them, the
    shared manifest gives the bona fide clips.
    """
    if corpus_manifest is None:
        return read_bonafide(bonafide_manifest, splits), []
    bona, spoofs = read_corpus(corpus_manifest, splits)
    if not bona:
        bona = read_bonafide(bonafide_manifest, splits)
    return bona, spoofs


def subsample(clips: list[Clip], max_per_class: int | None, rng: np.random.Generator) -> list[Clip]:
    """At most ``max_per_class`` clips of each class, spread over systems (a budget for small runs)."""
    if max_per_class is None:
        return list(clips)
    by_class: dict[int, list[Clip]] = defaultdict(list)
    for clip in clips:
        by_class[clip.label].append(clip)
    out = []
    for label in sorted(by_class):
        group = by_class[label]
        order = rng.permutation(len(group))
        # Round-robin over systems so a small budget still covers every system of the family.
        by_system: dict[str, list[Clip]] = defaultdict(list)
        for i in order:
            by_system[group[i].system].append(group[i])
        picked: list[Clip] = []
        queues = [by_system[s] for s in sorted(by_system)]
        while len(picked) < max_per_class and any(queues):
            for q in queues:
                if q and len(picked) < max_per_class:
                    picked.append(q.pop())
        out.extend(picked)
    return out


class AudioCache:
    """Reads each file once (16 kHz mono float32) and keeps it in memory."""

    def __init__(self) -> None:
        self._audio: dict[Path, np.ndarray] = {}

    def __call__(self, path: Path) -> np.ndarray:
        if path not in self._audio:
            self._audio[path] = read_audio(path)
        return self._audio[path]


def crop(samples: np.ndarray, n: int, rng: np.random.Generator | None) -> np.ndarray:
    """``n`` samples: a random crop (or the start, when ``rng`` is None); short clips are tiled first."""
    if samples.size == 0:
        raise DataError("cannot crop an empty clip")
    if samples.size < n:
        samples = np.tile(samples, -(-n // samples.size))
    start = 0 if rng is None or samples.size == n else int(rng.integers(0, samples.size - n + 1))
    return np.ascontiguousarray(samples[start:start + n], dtype=np.float32)


def speakers_of(clips: list[Clip]) -> dict[str, list[Clip]]:
    """Clips grouped by speaker label (unlabeled clips left out)."""
    groups: dict[str, list[Clip]] = defaultdict(list)
    for clip in clips:
        if clip.speaker:
            groups[clip.speaker].append(clip)
    return dict(groups)


def ge2e_batch(groups: dict[str, list[Clip]], n_speakers: int, n_utterances: int, n_samples: int,
               audio: AudioCache, rng: np.random.Generator) -> np.ndarray:
    """Waves (N * M, n_samples), speaker-major: crops drawn round-robin over each speaker's clips."""
    if len(groups) < n_speakers:
        raise DataError(f"GE2E needs {n_speakers} speakers per batch, only {len(groups)} labeled speakers available",
                        hint="lower --speakers or use a manifest with more speaker labels")
    names = sorted(groups)
    chosen = rng.choice(len(names), size=n_speakers, replace=False)
    waves = []
    for i in chosen:
        clips = groups[names[i]]
        order = rng.permutation(len(clips))
        for m in range(n_utterances):
            waves.append(crop(audio(clips[order[m % len(clips)]].path), n_samples, rng))
    return np.stack(waves)


def same_speaker_pairs(groups: dict[str, list[Clip]], n_pairs: int,
                       rng: np.random.Generator) -> list[tuple[Clip, Clip]]:
    """``n_pairs`` (W1, W2) pairs of one speaker; two different clips where the speaker has them.

    A speaker with one clip pairs it with itself; the two random crops taken later
    then come from different parts of the recording.
    """
    names = sorted(groups)
    if not names:
        raise DataError("no speaker-labeled bona fide clips to build adversarial pairs from")
    pairs = []
    for _ in range(n_pairs):
        clips = groups[names[int(rng.integers(0, len(names)))]]
        if len(clips) > 1:
            a, b = rng.choice(len(clips), size=2, replace=False)
        else:
            a = b = 0
        pairs.append((clips[int(a)], clips[int(b)]))
    return pairs
