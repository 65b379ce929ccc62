"""How a detector holds up in a noisy or reverberant room: dev and test rescored through a channel.

Every clip of a split, bona fide and spoof alike, is passed through each condition of
:func:`conditions` (additive noise at a fixed SNR, babble of other speakers, a simulated room) and
scored again through the runtime, as if the device heard the corpus through that room. Per bundle,
split and condition it reports the pooled EER, the EER of each spoof family (TTS, vocoder, codec)
against all bona fide clips, and the false alarms and misses at the bundle's own threshold (chosen
on clean dev), since a threshold that drifts is what a deployed detector suffers first.

The corruption of a clip depends only on ``--seed``, the clip's place in the manifest and the
condition, so every bundle hears the same noisy audio. Each pooled EER carries a bootstrap interval
(``--resamples`` draws of the clips within each stratum, as ``eer_uncertainty.py --unit clip``), and
each bundle after the first its paired difference from the first under the same condition. With
dev and test both scored, it also chooses a threshold per condition the way ``edge-cm calibrate``
would (5 % false alarms on dev's real clips heard through that condition) and reports test's false
alarms and misses at it: what recalibrating in the room buys, on speakers it was not chosen on.
Babble is made of bona fide clips of the manifest's train split, whose speakers are not those of
dev or test; training babble never uses these talkers (``training.babble``).

    python benchmarks/channel_robustness.py --bundle default=edge_cm/assets/models/default \\
        --bundle other=bundles/other --manifest devcorpus/manifest.csv --splits dev \\
        --out benchmarks/results/channel_robustness.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.report import check_unique, named_values, write_report  # noqa: E402  (needs REPO on the path)
from training.uncertainty import check_resamples  # noqa: E402

CLEAN = "clean"
ROOM_FALSE_ALARMS = 0.05
"""False-alarm target of the threshold chosen per condition on dev's real clips (``edge-cm calibrate``'s default)."""


def conditions(babble_speech: tuple[np.ndarray, ...]) -> dict:
    """Condition name -> transform ``(audio, rng) -> (audio, label)``; None for the clean clip.

    Fixed before any bundle was scored. The shipped recipe trains on white, pink and brown noise at
    10-35 dB SNR and on simulated rooms of RT60 0.2-0.7 s, so the first three conditions are inside
    its training range and babble is outside it."""
    from training.augment import AddNoise, RoomReverb

    return {
        CLEAN: None,
        "pink noise 20 dB": AddNoise(snr_db=20.0, kinds=("pink",)),
        "white noise 10 dB": AddNoise(snr_db=10.0, kinds=("white",)),
        "room RT60 0.5 s": RoomReverb(rt60_s=0.5, drr_db=3.0, hf_rt60_ratio=0.7),
        "babble 15 dB": AddNoise(snr_db=15.0, kinds=("babble",), babble_speech=babble_speech),
    }


def scaled(gain_db: float):
    """A transform that scales a clip by ``gain_db`` dB."""
    gain = np.float32(10.0 ** (gain_db / 20.0))
    return lambda audio, rng: (audio * gain, None)


def peak_at(dbfs: float):
    """A transform that scales a clip so that its peak is ``dbfs`` dBFS (as a normalised file is)."""
    peak = np.float32(10.0 ** (dbfs / 20.0))
    return lambda audio, rng: (audio * (peak / max(float(np.max(np.abs(audio))), 1e-9)), None)


def level_conditions() -> dict:
    """Condition name -> transform: the corpus's clips (-26 dBFS active RMS) heard quieter, as from a far
    talker or a low gain, and louder, as a file normalised to its peak. Fixed before any bundle was scored;
    quieter than -12 dB more clips fall under the speech gate (-50 dBFS) than the comparison can spare."""
    return {CLEAN: None, "-12 dB": scaled(-12.0), "-6 dB": scaled(-6.0), "peak at -1 dBFS": peak_at(-1.0)}


def manifest_conditions(rows: list, manifest: Path) -> dict:
    """:func:`conditions` with babble from the manifest's train-split bona fide clips
    (``training.babble.benchmark_rows``); a typed error when there are none."""
    from edge_cm.errors import DataError
    from training import babble

    train_bona = [r for r in rows if r.split == "train" and r.is_bonafide]
    if not train_bona:
        raise DataError("the manifest has no train-split bona fide clips to make babble from", path=manifest,
                        hint="pass a built corpus manifest (edge-cm-train corpus build)")
    return conditions(babble.load(babble.benchmark_rows(train_bona)))


def corrupt(audio: np.ndarray, transform, seed: int, clip: int, condition: int) -> np.ndarray:
    """``audio`` through ``transform`` with a generator fixed by (seed, clip, condition)."""
    if transform is None:
        return audio
    return transform(audio, np.random.default_rng([seed, clip, condition]))[0]


def family_metrics(rows: list, scores: list[float], threshold: float) -> dict:
    """Pooled and per-family EER (%) of clip scores (higher = spoof), false alarms and misses (%) at
    ``threshold``."""
    from edge_cm import metrics as M

    labels = ["bonafide" if r.is_bonafide else "spoof" for r in rows]
    values = np.asarray(scores, dtype=np.float64)
    res = M.breakdown(values, labels, [r.family for r in rows], higher_means="spoof")
    bona = np.array([r.is_bonafide for r in rows])
    return {"eer": 100 * res["pooled"]["eer"],
            "families": {f: 100 * v["eer"] for f, v in res["systems"].items()},
            "false_alarm_percent": float(100 * np.mean(values[bona] >= threshold)),
            "miss_percent": float(100 * np.mean(values[~bona] < threshold))}


def paired_intervals(part: list, scores: dict, conds: dict, n_resamples: int, seed: int) -> dict:
    """Condition -> ``training.uncertainty.bootstrap``'s pooled row (each bundle's interval, and the paired
    difference of each later bundle from the first) over the clips every bundle scored in every condition."""
    from training.uncertainty import bootstrap

    keep = [i for i in range(len(part)) if all(s[c][i] is not None for s in scores.values() for c in conds)]
    is_bona = np.array([part[i].is_bonafide for i in keep], dtype=bool)
    systems = np.array([part[i].system for i in keep], dtype=str)
    return {c: bootstrap({n: -np.array([s[c][i] for i in keep], dtype=np.float64) for n, s in scores.items()},
                         is_bona, systems, n_resamples, seed)["rows"]["pooled"] for c in conds}  # higher = bona fide


def room_threshold(dev: tuple[list, list], test: tuple[list, list]) -> dict:
    """The threshold ``edge-cm calibrate`` chooses from dev's bona fide clip scores (``(rows, scores)``)
    at :data:`ROOM_FALSE_ALARMS`, and test's false alarms and misses (%) at it."""
    from edge_cm.calibrate import threshold_for

    threshold = threshold_for([s for r, s in zip(*dev) if r.is_bonafide], ROOM_FALSE_ALARMS)
    bona = np.array([s for r, s in zip(*test) if r.is_bonafide])
    spoof = np.array([s for r, s in zip(*test) if not r.is_bonafide])
    return {"threshold": threshold, "false_alarm_percent": float(100 * np.mean(bona >= threshold)),
            "miss_percent": float(100 * np.mean(spoof < threshold))}


def room_table(result: dict, names: list[str]) -> list[str]:
    lines = ["## A threshold chosen in the room", "",
             f"Per condition, the threshold `edge-cm calibrate` chooses from dev's real clips heard through it "
             f"({100 * ROOM_FALSE_ALARMS:g} % false alarms there), then test's false alarms and misses at it, "
             "through the same condition; beside them, test's at the bundle's own threshold.", "",
             "| bundle | condition | threshold | test false alarms % | test misses % | at the bundle's threshold: "
             "false alarms % | misses % |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in names:
        for cond, m in result[name]["conditions"].items():
            r = m["room_threshold"]
            lines.append(f"| `{name}` | {cond} | {r['threshold']:.4f} | {r['false_alarm_percent']:.1f} | "
                         f"{r['miss_percent']:.1f} | {m['false_alarm_percent']:.1f} | {m['miss_percent']:.1f} |")
    return lines + [""]


def paired_table(split: str, result: dict, names: list[str]) -> list[str]:
    first = names[0]
    lines = [f"### {split}: how sure", "",
             f"Pooled EER % with 95 % bootstrap intervals; each later bundle minus `{first}` under the same "
             "condition, paired (the same resampled clips); 'lower in' is the share of resamples in which it was "
             "the lower.", "", f"| condition | bundle | pooled EER % [95 %] | minus `{first}` [95 %] | lower in |",
             "|---|---|---:|---:|---:|"]
    for cond in result[first]["conditions"]:
        for name in names:
            m = result[name]["conditions"][cond]
            lo, hi = m["eer_interval"]
            cells = [cond, f"`{name}`", f"{m['eer']:.2f} [{lo:.2f}, {hi:.2f}]"]
            if name == first:
                cells += ["", ""]
            else:
                dlo, dhi = m["minus_first_interval"]
                cells += [f"{m['minus_first']:+.2f} [{dlo:+.2f}, {dhi:+.2f}]", f"{m['lower_than_first_share']:.0f} %"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def table(split: str, result: dict, names: list[str], families: list[str]) -> list[str]:
    conds = list(next(iter(result.values()))["conditions"])
    lines = [f"## {split}", "", "| bundle | condition | pooled EER % | " + " | ".join(f"{f} EER %" for f in families)
             + " | false alarms % | misses % |", "|---|---|---:|" + "---:|" * (len(families) + 2)]
    for name in names:
        for cond in conds:
            m = result[name]["conditions"][cond]
            cells = [f"{m['eer']:.2f}"] + [f"{m['families'].get(f, float('nan')):.2f}" for f in families]
            cells += [f"{m['false_alarm_percent']:.1f}", f"{m['miss_percent']:.1f}"]
            lines.append(f"| `{name}` | {cond} | " + " | ".join(cells) + " |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    import edge_cm
    from edge_cm.audio import read_audio
    from edge_cm.errors import DataError
    from training.dataset import read_rows

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", action="append", required=True, metavar="NAME=PATH", help="a bundle folder (repeat)")
    p.add_argument("--manifest", required=True, type=Path, help="built corpus manifest")
    p.add_argument("--splits", nargs="+", default=["dev"], choices=("dev", "test"))
    p.add_argument("--conditions", choices=("channel", "level"), default="channel",
                   help="channel: noise, babble and a room; level: the clips quieter and louder")
    p.add_argument("--seed", type=int, default=0, help="seed of every corruption and of the bootstrap draws")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap draws per split and condition")
    p.add_argument("--out", required=True, type=Path, help="markdown table (.json beside it)")
    args = p.parse_args(argv)
    check_resamples(args.resamples)
    bundles = named_values(args.bundle, "--bundle")
    names = [n for n, _ in bundles]
    check_unique(names)
    detectors = {n: edge_cm.load(Path(b)) for n, b in bundles}
    rows = read_rows(args.manifest)
    dev_bona = sum(r.split == "dev" and r.is_bonafide for r in rows)
    if {"dev", "test"} <= set(args.splits) and dev_bona < round(1 / ROOM_FALSE_ALARMS):
        raise DataError(f"{dev_bona} dev bona fide clips cannot resolve a {100 * ROOM_FALSE_ALARMS:g} % false-alarm "
                        "threshold", path=args.manifest, hint="score --splits dev alone, or grow the dev split")
    conds = manifest_conditions(rows, args.manifest) if args.conditions == "channel" else level_conditions()
    results: dict = {}
    heard_scores: dict = {}  # split -> bundle -> condition -> (rows, clip scores) of the clips kept
    families: set[str] = set()
    for split in args.splits:
        part = [r for r in rows if r.split == split]
        if not any(r.is_bonafide for r in part) or all(r.is_bonafide for r in part):
            raise DataError(f"split {split!r} needs bona fide and spoof clips", path=args.manifest,
                            hint="check --splits against the manifest's split column")
        families |= {r.family for r in part if not r.is_bonafide}
        scores = {n: {c: [] for c in conds} for n in names}
        for k, r in enumerate(part):  # one corrupted copy per clip and condition, heard by every bundle
            audio = read_audio(r.path, target_rate=16000)
            for j, (cond, transform) in enumerate(conds.items()):
                heard = corrupt(audio, transform, args.seed, k, j)
                for n, det in detectors.items():
                    scores[n][cond].append(det.detect_array(heard, 16000, source=r.path).score)
        results[split] = {}
        for n, det in detectors.items():
            # A clip without speech in any condition leaves every condition, so all compare the same clips.
            keep = [i for i in range(len(part)) if all(scores[n][c][i] is not None for c in conds)]
            kept = [part[i] for i in keep]
            heard_scores.setdefault(split, {})[n] = {c: (kept, [scores[n][c][i] for i in keep]) for c in conds}
            results[split][n] = {
                "threshold": det.threshold, "clips": len(kept), "no_speech_clips": len(part) - len(kept),
                "conditions": {c: family_metrics(kept, [scores[n][c][i] for i in keep], det.threshold) for c in conds}}
        for c, row in paired_intervals(part, scores, conds, args.resamples, args.seed).items():
            for n in names:
                m, b = results[split][n]["conditions"][c], row[n]
                m["eer_interval"] = [100 * v for v in b["interval"]]
                if "minus_first" in b:
                    m["minus_first"] = 100 * b["minus_first"]
                    m["minus_first_interval"] = [100 * v for v in b["minus_first_interval"]]
                    m["lower_than_first_share"] = 100 * b["lower_than_first_share"]
    order = sorted(families)
    if {"dev", "test"} <= set(results):
        for n in names:
            for c in conds:
                results["test"][n]["conditions"][c]["room_threshold"] = room_threshold(
                    heard_scores["dev"][n][c], heard_scores["test"][n][c])
    title, what = (("Noise and reverberation: dev and test heard through a room",
                    "Babble: other speakers, from the train split.") if args.conditions == "channel" else
                   ("Input level: dev and test heard quieter and louder",
                    "The corpus's clips are at -26 dBFS active RMS; a gain in dB scales every clip by it."))
    lines = [f"# {title}", "",
             "Every clip (bona fide and spoof) passed through each condition and scored by the runtime (4-s windows, "
             "2-s hop); EERs of clip scores; false alarms and misses at each bundle's own threshold (chosen on clean "
             f"dev). A family's EER is its spoofs against all bona fide clips. {what}", "",
             "    python benchmarks/channel_robustness.py " + " ".join(f"--bundle {b}" for b in args.bundle)
             + f" --manifest {args.manifest} --conditions {args.conditions} --splits {' '.join(args.splits)}"
             + f" --seed {args.seed} --resamples {args.resamples}", ""]
    for split, result in results.items():
        lines += table(split, result, names, order) + paired_table(split, result, names)
        lines += ["Clips scored: " + ", ".join(f"`{n}` {result[n]['clips']} ({result[n]['no_speech_clips']} without "
                                                "speech in some condition, left out)" for n in names), ""]
    if {"dev", "test"} <= set(results):
        lines += room_table(results["test"], names)
    write_report(args.out, lines, results)
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "channel_robustness.py"))
