"""Does a detector read a narrow band as a spoof? Real speech scored as recorded and low-passed.

The waveform models flag band-limited real speech (FSDD's 8-kHz digits, Asterisk's G.722 prompts)
far more often than the spectrogram model (benchmarks/experiments.md). This takes the bona fide
clips of one split, cuts each above every ``--cutoffs`` frequency (an ideal low-pass: FFT bins
above the cutoff set to zero over the whole clip, no phase change) and scores it again through the
runtime. Per bundle and cutoff it reports the mean P(spoof) and the false alarms at the bundle's own
threshold, with the clips grouped by their own effective bandwidth (:data:`GROUPS`), since a clip
whose top band is already empty hardly changes.

    python benchmarks/bandwidth_sensitivity.py --bundle edge_cm/assets/models/default --bundle OTHER \\
        --manifest devcorpus/manifest.csv --split dev --out benchmarks/results/bandwidth_sensitivity.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.report import write_report  # noqa: E402  (needs REPO on the path)
from training.augment.bandlimit import low_pass  # noqa: E402
GROUPS = (("under 4.5 kHz", 4500.0), ("4.5-7.5 kHz", 7500.0), ("7.5 kHz and up", float("inf")))
"""Buckets of the recordings' own effective bandwidth: a low-pass at 4 kHz changes the last two only.
FSDD's 8-kHz digits fall in the first; MP3-derived and G.722 recordings mostly in the second."""


def bandwidth_group(audio: np.ndarray) -> str:
    """The clip's bucket of :data:`GROUPS` by its measured effective bandwidth (training.shortcuts)."""
    from training.shortcuts import effective_bandwidth

    bw = effective_bandwidth(audio)
    return next(name for name, upper in GROUPS if bw < upper)


def summarise(scores: dict[str, list[float]], threshold: float) -> dict[str, dict[str, float]]:
    """Mean P(spoof) and false-alarm percentage at ``threshold`` of each condition's clip scores."""
    return {cond: {"mean_p": float(np.mean(v)), "false_alarm_percent": float(100 * np.mean(np.array(v) >= threshold))}
            for cond, v in scores.items()}


def main(argv: list[str] | None = None) -> int:
    import edge_cm
    from edge_cm.audio import read_audio
    from edge_cm.errors import DataError, EdgeCMError
    from training.dataset import read_rows

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", action="append", required=True, type=Path, help="a bundle folder (repeat)")
    p.add_argument("--manifest", required=True, type=Path, help="built corpus manifest (bona fide rows are used)")
    p.add_argument("--split", default="dev", choices=("train", "dev", "test"))
    p.add_argument("--cutoffs", type=float, nargs="+", default=[7000.0, 4000.0], help="low-pass cutoffs in Hz")
    p.add_argument("--out", required=True, type=Path, help="markdown table (.json beside it)")
    args = p.parse_args(argv)
    if any(not 0 < c < 8000 for c in args.cutoffs):
        p.error("--cutoffs must lie between 0 and 8000 Hz (16-kHz audio)")
    detectors = [edge_cm.load(b) for b in args.bundle]
    odd = [str(b) for b, d in zip(args.bundle, detectors) if d.sample_rate != 16000]
    if odd:
        raise EdgeCMError(f"bundles not at 16 kHz: {', '.join(odd)}", hint="this check measures 16-kHz models only")
    rows = [r for r in read_rows(args.manifest) if r.split == args.split and r.is_bonafide]
    if not rows:
        raise DataError(f"no bona fide rows in split {args.split!r}", path=args.manifest,
                        hint="check --split against the manifest's split column")
    conditions = ["as recorded"] + [f"low-passed at {c:g} Hz" for c in args.cutoffs]
    audios = {}
    for r in rows:  # read once: typed errors for a bad file before any scoring
        audios[r.path] = read_audio(r.path, target_rate=16000)
    groups = {name: [r for r in rows if bandwidth_group(audios[r.path]) == name] for name, _ in GROUPS}
    results: dict = {}
    for det in detectors:
        name = det.bundle.meta.name
        for group, part in groups.items():
            scores: dict[str, list[float]] = {c: [] for c in conditions}
            no_speech = 0
            for r in part:
                audio = audios[r.path]
                versions = [audio] + [low_pass(audio, c, det.sample_rate) for c in args.cutoffs]
                clip = [det.detect_array(v, det.sample_rate, source=str(r.path)).score for v in versions]
                if any(s is None for s in clip):  # no speech found: counted apart, in no condition
                    no_speech += 1
                    continue
                for cond, s in zip(conditions, clip):
                    scores[cond].append(s)
            results.setdefault(name, {"threshold": det.threshold})[group] = {
                "clips": len(scores[conditions[0]]), "no_speech_clips": no_speech, "sources": sorted({r.source for r in part}),
                "conditions": summarise(scores, det.threshold) if scores[conditions[0]] else {}}
    lines = ["# Real speech, as recorded and low-passed: clip scores per bundle", "",
             f"Bona fide clips of the `{args.split}` split; ideal low-pass over the whole clip; runtime clip "
             "scores (4-s windows, 2-s hop); false alarms at each bundle's own threshold.", "",
             "    python benchmarks/bandwidth_sensitivity.py " + " ".join(f"--bundle {b}" for b in args.bundle)
             + f" --split {args.split} --cutoffs " + " ".join(f"{c:g}" for c in args.cutoffs), ""]
    for group in groups:
        lines += [f"## Recordings of effective bandwidth {group}", "", "| bundle | clips (no speech) | " + " | ".join(conditions) + " |",
                  "|---|---:|" + "---:|" * len(conditions)]
        for name, res in results.items():
            g = res[group]
            cells = [f"{g['conditions'][c]['false_alarm_percent']:.1f} % (P {g['conditions'][c]['mean_p']:.3f})"
                     if g["conditions"] else "-" for c in conditions]
            lines.append(f"| `{name}` | {g['clips']} ({g['no_speech_clips']}) | " + " | ".join(cells) + " |")
        lines += ["", "Sources: " + ", ".join(f"`{s}`" for s in next(iter(results.values()))[group]["sources"]), ""]
    lines += ["Cells: false alarms % at the bundle's threshold (mean P(spoof)). Clips in which the runtime finds "
              "no speech, as recorded or after a low-pass, are counted apart and left out of every cell.", ""]
    write_report(args.out, lines, results)
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "bandwidth_sensitivity.py"))
