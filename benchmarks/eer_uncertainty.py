"""How sure is an EER? Bootstrap intervals of pooled and per-system clip EER, and of the
difference between bundles scored on the same clips.

Scores every dev and test clip of a corpus with each bundle through the runtime (as
``edge-cm-train release`` does: 4-s windows, 2-s hop, mean P(spoof) over speech windows), so
the point estimates are the bundles' model-card figures. Then, ``--resamples`` times, it draws
clips with replacement within each stratum (the bona fide clips, and each spoofing system's
clips, so every resample keeps the split's counts) and recomputes every EER with the audited
:func:`edge_cm.metrics.compute_eer`. Intervals are the 2.5th and 97.5th percentiles. All bundles
share each resample, so the interval of a difference (each bundle minus the first) is paired: it
leaves out the clips' common difficulty, which an unpaired comparison would count twice.

What the intervals leave out: clips of one speaker are not independent, so resampling clips
understates the spread; ``--unit speaker`` resamples whole speakers instead (the bona fide
speakers, and the source speakers of each vocoder's or codec's copies; a TTS voice is one speaker,
so its clips are still drawn one by one). And a second training seed moves these models' EER too
(README, "Training"), which only retraining measures. Read an interval as the least uncertainty a
figure carries.

    python benchmarks/eer_uncertainty.py --bundle default=edge_cm/assets/models/default \\
        --bundle other=bundles/other --manifest CORPUS/manifest.csv \\
        --out benchmarks/results/eer_uncertainty.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.report import named_values, write_report  # noqa: E402  (needs REPO on the path)

SPLITS = ("dev", "test")
BONAFIDE = "bona fide"  # the stratum of real clips; spoof strata are named by their system
UNITS = {"clip": "the clips", "speaker": "the speakers (a TTS voice's clips one by one)"}  # what --unit resamples


def strata_of(is_bonafide: np.ndarray, systems: np.ndarray, clusters: np.ndarray | None = None
              ) -> dict[str, list[np.ndarray]]:
    """Per stratum (``BONAFIDE`` and each spoofing system), its resampling units: arrays of clip
    indices that are drawn together. ``clusters`` (one label per clip, e.g. the speaker) groups a
    stratum's clips by label; a stratum whose clips share one label (a TTS voice) falls back to
    single clips. Without ``clusters`` every clip is its own unit."""
    names = {BONAFIDE: is_bonafide}
    names.update({k: ~is_bonafide & (systems == k) for k in sorted(set(systems[~is_bonafide].tolist()))})
    out = {}
    for name, mask in names.items():
        idx = np.flatnonzero(mask)
        labels = None if clusters is None else clusters[idx]
        if labels is None or np.unique(labels).size < 2:
            out[name] = [idx[i:i + 1] for i in range(idx.size)]
        else:
            out[name] = [idx[labels == c] for c in np.unique(labels)]
    return out


def resample(strata: dict[str, list[np.ndarray]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One bootstrap draw: each stratum's units drawn with replacement (as many as it has), their
    clips concatenated."""
    return {k: np.concatenate([units[i] for i in rng.integers(0, len(units), len(units))])
            for k, units in strata.items()}


def eers(p_spoof: np.ndarray, clips: dict[str, np.ndarray]) -> dict[str, float]:
    """Pooled EER (key ``pooled``) and each system's EER against all bona fide clips, of clip
    scores P(spoof) (fractions); ``clips`` holds each stratum's clip indices."""
    from edge_cm import metrics as M

    bona = -p_spoof[clips[BONAFIDE]]  # compute_eer: higher = more bona fide
    systems = {k: v for k, v in clips.items() if k != BONAFIDE}
    out = {"pooled": M.compute_eer(bona, -p_spoof[np.concatenate(list(systems.values()))])[0]}
    out.update({k: M.compute_eer(bona, -p_spoof[v])[0] for k, v in systems.items()})
    return out


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap values."""
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap(scores: dict[str, np.ndarray], is_bonafide: np.ndarray, systems: np.ndarray,
              n_resamples: int, seed: int, clusters: np.ndarray | None = None) -> dict:
    """Point EER, interval, and (for each bundle after the first) the paired difference's interval
    and how often the bundle beat the first, per row (``pooled`` and each system); ``clusters``
    as in :func:`strata_of`."""
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


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def markdown(results: dict, names: list[str], sources: dict[str, str], n_resamples: int, unit: str,
             command: str) -> list[str]:
    lines = ["# How sure is each EER? Bootstrap intervals of clip EER", "",
             f"Runtime clip scores (4-s windows, 2-s hop); {n_resamples} resamples of {UNITS[unit]} within each "
             "stratum (bona fide, each spoofing system); 95 % percentile intervals, EER %. "
             f"Differences are paired (the same resamples), each bundle minus `{names[0]}`; "
             "'lower in' is the share of resamples in which that bundle's EER was strictly the lower; "
             "'units' is how many were resampled. A training seed moves EER too, and resampling clips "
             "treats clips of one speaker as independent, so the true uncertainty is larger.", "",
             "Bundles: " + "; ".join(f"`{n}` = `{sources[n]}`" for n in names), "", f"    {command}", ""]
    for split, res in results.items():
        head = ["row", "clips (units)"] + [f"{n} [95 %]" for n in names]
        for n in names[1:]:
            head += [f"{n} - {names[0]} [95 %]", "lower in"]
        lines += [f"## {split}", "", f"{res['clips'][BONAFIDE]} bona fide clips ({res['units'][BONAFIDE]} units).", "",
                  "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for r, entry in sorted(res["rows"].items(), key=lambda kv: (kv[0] != "pooled", kv[0])):
            keys = [k for k in res["clips"] if k != BONAFIDE] if r == "pooled" else [r]
            clips, units = (sum(res[what][k] for k in keys) for what in ("clips", "units"))
            cells = ["**pooled**" if r == "pooled" else f"`{r}`", f"{clips} ({units})"]
            for n in names:
                lo, hi = entry[n]["interval"]
                cells.append(f"{_pct(entry[n]['eer'])} [{_pct(lo)}, {_pct(hi)}]")
            for n in names[1:]:
                lo, hi = entry[n]["minus_first_interval"]
                cells += [f"{100 * entry[n]['minus_first']:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]",
                          f"{100 * entry[n]['lower_than_first_share']:.0f} %"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    from edge_cm.bundle import load_bundle
    from edge_cm.errors import DataError
    from training.dataset import read_rows
    from training.release import score_clips

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", action="append", required=True, metavar="NAME=PATH",
                   help="a bundle folder (repeat); differences are taken against the first")
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--splits", nargs="+", default=list(SPLITS), choices=("train",) + SPLITS)
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap draws (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws")
    p.add_argument("--unit", choices=tuple(UNITS), default="clip",
                   help="what is resampled: single clips (default) or whole speakers (the manifest's speaker column)")
    p.add_argument("--out", required=True, type=Path, help="markdown table (.json beside it)")
    args = p.parse_args(argv)
    if args.resamples < 100:
        raise DataError(f"--resamples {args.resamples} is too few for 95 % intervals", hint="use at least 100")
    bundles = named_values(args.bundle, "--bundle")
    if len({n for n, _ in bundles}) != len(bundles):
        raise DataError(f"bundle names repeat: {[n for n, _ in bundles]}", hint="give each --bundle its own NAME")
    for _, path in bundles:
        load_bundle(path)  # a typed error for a missing or broken bundle before any scoring
    rows = [r for r in read_rows(args.manifest) if r.split in args.splits]
    results: dict = {}
    scored = {name: score_clips(Path(path), rows)[1] for name, path in bundles}
    for split in args.splits:
        idx = [i for i, r in enumerate(rows) if r.split == split]
        keep = [i for i in idx if all(s[i] is not None for s in scored.values())]
        is_bona = np.array([rows[i].is_bonafide for i in keep], dtype=bool)
        if not is_bona.any() or is_bona.all():
            raise DataError(f"split {split!r} needs bona fide and spoof clips with speech", path=args.manifest,
                            hint="pass a corpus manifest built by edge-cm-train corpus build")
        systems = np.array([rows[i].system for i in keep], dtype=str)
        scores = {n: np.array([s[i] for i in keep], dtype=np.float64) for n, s in scored.items()}
        clusters = np.array([rows[i].speaker for i in keep], dtype=str) if args.unit == "speaker" else None
        results[split] = bootstrap(scores, is_bona, systems, args.resamples, args.seed, clusters)
        results[split]["no_speech_clips"] = len(idx) - len(keep)
    command = ("python benchmarks/eer_uncertainty.py " + " ".join(f"--bundle {n}={p}" for n, p in bundles)
               + f" --manifest {args.manifest} --resamples {args.resamples} --seed {args.seed} --unit {args.unit}")
    lines = markdown(results, [n for n, _ in bundles], dict(bundles), args.resamples, args.unit, command)
    write_report(args.out, lines, results)
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "eer_uncertainty.py"))
