"""Shortcut check: can a trivial cue (duration, silence, level, bandwidth) tell bona fide from spoof?

A detector trained on a corpus where spoofs are, say, always preceded by silence or
band-limited learns that instead of the artefacts of synthesis. This module measures
seven cues per file, summarises them per class and per spoof system, and scores each
cue on its own as a classifier: ``max(AUC, 1 - AUC)`` of bona fide vs spoof (pooled,
and each spoof system vs all bona fide). A cue above ``auc_threshold`` (0.75) is flagged.

Cues (16 kHz mono, 20 ms frames every 10 ms):

* ``duration_s``: length in seconds;
* ``leading_silence_s`` / ``trailing_silence_s``: time before the first / after the last
  active frame of :func:`training.activity.detect`, the detector the corpus builder trims and
  levels with (so "silence" means "no speech", not "digital zero", in both);
* ``noise_floor_dbfs``: the noise floor, the ``floor_percentile`` (10th) percentile of the
  frame energies (an extra cue: clean digital pauses in spoofs vs room noise in bona fide);
* ``rms_dbfs``: RMS level of the whole file, dB re full scale (a full-scale sine is -3 dBFS);
* ``active_rms_dbfs``: RMS level of the samples under active frames only;
* ``bandwidth_hz``: upper edge of the long-term mean spectrum (Welch, 512-point frames,
  smoothed over 250 Hz): going up from 3400 Hz, the last frequency before the spectrum
  first falls more than ``bandwidth_drop_db`` (40 dB) below its mean level in 300-3400 Hz
  (if it is already below at 3400 Hz: the highest frequency under 3400 Hz that is not).

Silent levels are floored at -120 dBFS so every cue is a finite number.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from edge_cm.errors import DataError, EdgeCMError
from training.activity import ActivityConfig, active_mean_square, detect

SAMPLE_RATE = 16000
CUES = ("duration_s", "leading_silence_s", "trailing_silence_s", "rms_dbfs", "active_rms_dbfs", "bandwidth_hz",
        "noise_floor_dbfs")
CUE_UNITS = {"duration_s": "s", "leading_silence_s": "s", "trailing_silence_s": "s", "rms_dbfs": "dBFS",
             "active_rms_dbfs": "dBFS", "bandwidth_hz": "Hz", "noise_floor_dbfs": "dBFS"}
POOLED = "all spoof"


@dataclass(frozen=True)
class ShortcutConfig:
    """Thresholds of the cue measurements and of the flagging (units in the names)."""

    activity: ActivityConfig = field(default_factory=ActivityConfig)
    reference_band_hz: tuple[float, float] = (300.0, 3400.0)
    bandwidth_drop_db: float = 40.0
    smoothing_hz: float = 250.0
    auc_threshold: float = 0.75
    min_files: int = 5

    @property
    def floor_dbfs(self) -> float:
        """Levels (dBFS) are floored here, so every cue is finite."""
        return self.activity.floor_dbfs


def _dbfs(mean_square: float, floor: float) -> float:
    # A full-scale sine has mean square 0.5 -> -3.01 dBFS (RMS re a full-scale square wave).
    return float(max(10.0 * np.log10(mean_square), floor)) if mean_square > 0 else floor


def frame_levels_db(audio: np.ndarray, config: ShortcutConfig = ShortcutConfig()) -> np.ndarray:
    """Energy (dBFS, floored) of each activity frame (:func:`training.activity.frame_levels_db`)."""
    from training.activity import frame_levels_db as levels

    return levels(audio, config.activity)


def effective_bandwidth(audio: np.ndarray, config: ShortcutConfig = ShortcutConfig()) -> float:
    """Upper edge (Hz) of the long-term spectrum, as defined in the module docstring; 0 for silence."""
    from scipy.signal import welch

    x = np.asarray(audio, dtype=np.float64)
    if x.size < 64 or not np.any(x):
        return 0.0
    freqs, psd = welch(x, fs=SAMPLE_RATE, nperseg=min(512, x.size))
    width = max(1, int(round(config.smoothing_hz / (freqs[1] - freqs[0]))))
    smooth = np.convolve(psd, np.ones(width) / width, mode="same")
    lo, hi = config.reference_band_hz
    band = (freqs >= lo) & (freqs <= hi)
    reference = float(np.mean(psd[band]))
    if reference <= 0:
        return 0.0
    above = smooth >= reference * 10.0 ** (-config.bandwidth_drop_db / 10.0)
    start = int(np.searchsorted(freqs, hi))
    start = min(start, freqs.size - 1)
    if above[start]:
        below = np.flatnonzero(~above[start:])
        last = freqs.size - 1 if below.size == 0 else start + int(below[0]) - 1
        return float(freqs[last])
    under = np.flatnonzero(above[:start])
    return float(freqs[under[-1]]) if under.size else 0.0


def measure_cues(audio: np.ndarray, config: ShortcutConfig = ShortcutConfig()) -> dict[str, float]:
    """The seven cues of one 16 kHz mono clip (see the module docstring), as a dict keyed by :data:`CUES`."""
    x = np.asarray(audio, dtype=np.float64)
    duration = x.size / SAMPLE_RATE
    act = detect(x, config.activity)
    floor = float(np.percentile(act.levels_db, config.activity.floor_percentile))  # digital zeros count here
    span = act.span_samples()
    if span is not None:
        leading = span[0] / SAMPLE_RATE
        trailing = max(x.size - span[1], 0) / SAMPLE_RATE
        active_ms = active_mean_square(x, config.activity, act)
    else:
        leading = trailing = duration
        active_ms = 0.0
    return {
        "duration_s": duration,
        "leading_silence_s": float(leading),
        "trailing_silence_s": float(trailing),
        "rms_dbfs": _dbfs(float(np.mean(x**2)) if x.size else 0.0, config.floor_dbfs),
        "active_rms_dbfs": _dbfs(active_ms, config.floor_dbfs),
        "bandwidth_hz": effective_bandwidth(x, config),
        "noise_floor_dbfs": floor,
    }


@dataclass
class CueStats:
    """Distribution of one cue in one group of files."""

    n: int
    mean: float
    median: float
    p10: float
    p90: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "CueStats":
        v = np.asarray(values, dtype=np.float64)
        return cls(int(v.size), float(v.mean()), float(np.median(v)),
                   float(np.percentile(v, 10)), float(np.percentile(v, 90)))


@dataclass
class CueAUC:
    """A cue used alone as a classifier of bona fide vs spoof (``comparison`` names the spoof side)."""

    comparison: str
    cue: str
    auc: float          # max(AUC, 1 - AUC), 0.5..1
    higher_in: str      # 'bonafide', 'spoof' or 'neither' (AUC exactly 0.5)
    n_bonafide: int
    n_spoof: int
    flagged: bool


@dataclass
class ShortcutReport:
    """Everything the check found; :meth:`to_markdown` and :meth:`to_json` render it."""

    manifest: str
    config: ShortcutConfig
    stats: dict[str, dict[str, CueStats]]      # group -> cue -> stats
    aucs: list[CueAUC]
    skipped: list[str] = field(default_factory=list)
    files: list[tuple[str, str, str, dict[str, float]]] = field(default_factory=list)
    """Per file: (path, label, system, cues), when measured from audio."""

    @property
    def flagged(self) -> list[CueAUC]:
        return [a for a in self.aucs if a.flagged]

    def to_json(self) -> dict:
        return {
            "manifest": self.manifest,
            "config": asdict(self.config),
            "cues": list(CUES),
            "units": CUE_UNITS,
            "stats": {g: {c: asdict(s) for c, s in cues.items()} for g, cues in self.stats.items()},
            "aucs": [asdict(a) for a in self.aucs],
            "flagged": [asdict(a) for a in self.flagged],
            "skipped_comparisons": self.skipped,
        }

    def to_markdown(self) -> str:
        cfg = self.config
        act = cfg.activity
        lines = [f"# Shortcut check: `{self.manifest}`", ""]
        if self.flagged:
            lines += [f"**{len(self.flagged)} cue(s) flagged** (single-cue AUC > {cfg.auc_threshold}):", ""]
            lines += [f"- `{a.cue}` separates bonafide from {a.comparison}: AUC {a.auc:.3f}, higher in {a.higher_in}"
                      for a in self.flagged]
        else:
            lines += [f"No cue flagged: every single-cue AUC is <= {cfg.auc_threshold}."]
        lines += ["", "## Single-cue AUC (max(AUC, 1-AUC), bona fide vs spoof)", "",
                  "| spoof side | n bonafide | n spoof | " + " | ".join(CUES) + " |",
                  "|---|---:|---:|" + "---:|" * len(CUES)]
        table: dict[str, dict[str, CueAUC]] = {}
        for a in self.aucs:
            table.setdefault(a.comparison, {})[a.cue] = a
        for comp, row in table.items():
            first = next(iter(row.values()))
            cells = [f"**{row[c].auc:.3f}**" if row[c].flagged else f"{row[c].auc:.3f}" for c in CUES]
            lines.append(f"| {comp} | {first.n_bonafide} | {first.n_spoof} | " + " | ".join(cells) + " |")
        if self.skipped:
            lines += ["", f"Not scored (fewer than {cfg.min_files} files): " + ", ".join(self.skipped)]
        lines += ["", "## Cue distributions (mean / median / p10 / p90)", ""]
        for cue in CUES:
            lines += [f"### {cue} ({CUE_UNITS[cue]})", "", "| group | n | mean | median | p10 | p90 |",
                      "|---|---:|---:|---:|---:|---:|"]
            for group, cues in self.stats.items():
                s = cues[cue]
                lines.append(f"| {group} | {s.n} | {s.mean:.3f} | {s.median:.3f} | {s.p10:.3f} | {s.p90:.3f} |")
            lines.append("")
        lines += ["## Method", "",
                  f"Activity (training.activity, shared with the corpus builder): frames of "
                  f"{act.frame_s * 1000:g} ms every {act.hop_s * 1000:g} ms; a frame is active when its "
                  f"energy is within {act.active_rel_db:g} dB of the file's loudest frame, "
                  f"{act.floor_margin_db:g} dB above the background (the {act.floor_percentile:g}th percentile "
                  f"of the energies of frames that are not digital zero, asking at most "
                  f"{act.max_background_rel_db:g} dB below the peak) and above {act.active_abs_dbfs:g} dBFS. "
                  f"Bandwidth: highest frequency, going up from "
                  f"{cfg.reference_band_hz[1]:g} Hz, where the long-term mean spectrum (smoothed over "
                  f"{cfg.smoothing_hz:g} Hz) stays within {cfg.bandwidth_drop_db:g} dB of its mean in "
                  f"{cfg.reference_band_hz[0]:g}-{cfg.reference_band_hz[1]:g} Hz. Levels floored at "
                  f"{cfg.floor_dbfs:g} dBFS.", ""]
        return "\n".join(lines)


def _single_cue_auc(bona: Sequence[float], spoof: Sequence[float]) -> tuple[float, str]:
    from edge_cm.metrics import auc

    raw = auc(bona, spoof)  # P(bona fide value > spoof value), ties half
    higher = "bonafide" if raw > 0.5 else "spoof" if raw < 0.5 else "neither"
    return max(raw, 1.0 - raw), higher


def analyse(cues: Sequence[dict[str, float]], labels: Sequence[str], systems: Sequence[str], *,
            manifest: str = "<rows>", config: ShortcutConfig = ShortcutConfig()) -> ShortcutReport:
    """Group per-file cues by class and spoof system, summarise them and score each cue's AUC."""
    if not (len(cues) == len(labels) == len(systems)):
        raise DataError("cues, labels and systems differ in length")
    bona_idx = [i for i, lab in enumerate(labels) if lab == "bonafide"]
    spoof_idx = [i for i, lab in enumerate(labels) if lab == "spoof"]
    if not bona_idx or not spoof_idx:
        raise DataError(f"the manifest needs both bonafide and spoof rows (has {len(bona_idx)} bonafide, "
                        f"{len(spoof_idx)} spoof)", path=manifest, hint="check the label column")
    groups: dict[str, list[int]] = {"bonafide": bona_idx, POOLED: spoof_idx}
    for system in sorted({systems[i] for i in spoof_idx}):
        groups[f"spoof:{system}"] = [i for i in spoof_idx if systems[i] == system]
    stats = {g: {c: CueStats.of([cues[i][c] for i in idx]) for c in CUES} for g, idx in groups.items()}
    aucs: list[CueAUC] = []
    skipped: list[str] = []
    comparisons = [(POOLED, spoof_idx)] + [(g[len("spoof:"):], idx) for g, idx in groups.items()
                                           if g.startswith("spoof:")]
    if len(comparisons) == 2:
        comparisons = comparisons[:1]  # one system: its comparison is the pooled one
    for name, idx in comparisons:
        if min(len(idx), len(bona_idx)) < config.min_files:
            skipped.append(name)
            continue
        for cue in CUES:
            value, higher = _single_cue_auc([cues[i][cue] for i in bona_idx], [cues[i][cue] for i in idx])
            aucs.append(CueAUC(name, cue, value, higher, len(bona_idx), len(idx), value > config.auc_threshold))
    return ShortcutReport(manifest, config, stats, aucs, skipped)


def check_rows(rows: Iterable, *, manifest: str = "<rows>", config: ShortcutConfig = ShortcutConfig(),
               progress: bool = False) -> ShortcutReport:
    """Read every row's audio (``edge_cm.audio.read_audio``), measure its cues and :func:`analyse` them."""
    from edge_cm.audio import read_audio

    rows = list(rows)
    cues, labels, systems = [], [], []
    for k, row in enumerate(rows):
        cues.append(measure_cues(read_audio(row.path), config))
        labels.append(row.label)
        systems.append(row.system)
        if progress and (k + 1) % 200 == 0:
            print(f"  measured {k + 1}/{len(rows)} files", file=sys.stderr)
    report = analyse(cues, labels, systems, manifest=manifest, config=config)
    report.files = [(str(row.path), row.label, row.system, c) for row, c in zip(rows, cues)]
    return report


def write_cues_csv(report: ShortcutReport, path: str | Path) -> Path:
    """One CSV row per file: path, label, system and the cues, to find the files behind a flag."""
    import csv

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "label", "system", *CUES])
        for file_path, label, system, cues in report.files:
            writer.writerow([file_path, label, system, *(f"{cues[c]:.6g}" for c in CUES)])
    return out


def check_manifest(path: str | Path, *, split: str | None = None,
                   config: ShortcutConfig = ShortcutConfig(), progress: bool = False) -> ShortcutReport:
    """:func:`check_rows` on a manifest CSV (``training.data.manifest`` schema), optionally one split."""
    from training.data.manifest import filter_rows, read_manifest_csv

    rows = read_manifest_csv(path)
    if split is not None:
        rows = filter_rows(rows, split=split)
    return check_rows(rows, manifest=str(path), config=config, progress=progress)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-cm-train corpus check",
        description="Flag trivial cues (duration, silence, level, bandwidth) that separate bona fide from spoof. "
                    "Exit code: 0 nothing flagged, 1 a cue flagged, 2 bad input.")
    parser.add_argument("--manifest", required=True, type=Path, help="manifest CSV (path,label,...,system,...)")
    parser.add_argument("--out", type=Path, help="write the Markdown report here (and JSON beside it)")
    parser.add_argument("--json", type=Path, help="JSON report path (default: --out with suffix .json)")
    parser.add_argument("--split", choices=("train", "dev", "test"), help="check only this split")
    parser.add_argument("--threshold", type=float, default=ShortcutConfig.auc_threshold,
                        help="flag a cue whose max(AUC, 1-AUC) exceeds this (default 0.75)")
    parser.add_argument("--cues-csv", type=Path, help="also write every file's cues to this CSV")
    parser.add_argument("--min-files", type=int, default=ShortcutConfig.min_files,
                        help="score a spoof system only with at least this many files (default 5)")
    return parser


def check_main(argv: list[str] | None = None) -> int:
    """``edge-cm-train corpus check``: 0 when no cue is flagged, 1 when one is, 2 on bad input."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if not 0.5 <= args.threshold < 1.0:
        print(f"corpus check: --threshold {args.threshold} must be in [0.5, 1)", file=sys.stderr)
        return 2
    config = ShortcutConfig(auc_threshold=args.threshold, min_files=max(1, args.min_files))
    try:
        report = check_manifest(args.manifest, split=args.split, config=config, progress=True)
    except EdgeCMError as exc:
        print(f"corpus check: error: {exc}", file=sys.stderr)
        return 2
    markdown = report.to_markdown()
    json_path = args.json or (args.out.with_suffix(".json") if args.out else None)
    try:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(markdown + "\n", encoding="utf-8")
        if json_path:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        if args.cues_csv:
            write_cues_csv(report, args.cues_csv)
    except OSError as exc:
        print(f"corpus check: cannot write report: {exc}", file=sys.stderr)
        return 2
    if args.out:
        for a in report.flagged:
            print(f"FLAGGED {a.cue}: bonafide vs {a.comparison} AUC {a.auc:.3f} (higher in {a.higher_in})")
        print(f"report: {args.out}" + (f", {json_path}" if json_path else ""))
    else:
        print(markdown)
    return 1 if report.flagged else 0


main = check_main

if __name__ == "__main__":
    sys.exit(check_main())
