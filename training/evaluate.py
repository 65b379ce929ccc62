"""Score a manifest split with a checkpoint: per-system and pooled EER, AUC, macro-F1, plots.

``edge-cm-train eval --checkpoint RUN/best.pt --manifest M.csv --split dev --out DIR``
writes ``scores.csv`` (one row per file), ``metrics.json``, ``det.png`` and ``hist.png``.
Each file is scored on one window (looped if shorter, centre crop if longer, as in
validation). Scores are ``logits[0] - logsumexp(logits[1:])``: higher = more bona fide
(``edge_cm.metrics`` convention); the runtime's spoof score is the sigmoid of minus this.

Every EER gets a 95 % bootstrap interval (:mod:`training.uncertainty`; ``--resamples``, 0 = off):
clips redrawn one by one, or whole speakers with ``--unit speaker`` (the honest choice: clips of
one speaker are not independent).

min t-DCF is reported only with ``--asv-scores CSV`` (columns ``kind,score``, kind one of
``target``, ``nontarget``, ``spoof``): the ASV scores of the same trial list's speakers.
"""
from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from edge_cm import metrics as M
from edge_cm.errors import DataError


@dataclass
class ScoredSet:
    """Scores (higher = more bona fide), labels (0 = bonafide), system names and (if known) the
    speakers of one set (:func:`training.uncertainty.speaker_unit`: the source where no speaker is named)."""

    scores: np.ndarray
    labels: np.ndarray
    systems: list[str]
    paths: list[str]
    speakers: list[str] | None = None


@torch.no_grad()
def score_dataset(model: torch.nn.Module, dataset, *, batch_size: int = 64, num_workers: int = 0) -> ScoredSet:
    """Run ``model`` (eval mode) over every item of a :class:`training.dataset.WindowDataset`."""
    from training.dataset import make_loader
    from training.train import bonafide_score, logits_of
    from training.uncertainty import speaker_unit

    model.eval()
    scores, labels = [], []
    for batch in make_loader(dataset, batch_size, shuffle=False, num_workers=num_workers):
        scores.append(bonafide_score(logits_of(model(batch["features"]))).numpy())
        labels.append(batch["label"].numpy())
    return ScoredSet(np.concatenate(scores).astype(np.float64), np.concatenate(labels),
                     [r.system if not r.is_bonafide else "bonafide" for r in dataset.rows],
                     [r.path for r in dataset.rows], [speaker_unit(r) for r in dataset.rows])


def read_asv_scores(path: str | Path) -> dict[str, np.ndarray]:
    """ASV scores by kind (``target``, ``nontarget``, ``spoof``) from a ``kind,score`` CSV."""
    path = Path(path)
    out: dict[str, list[float]] = {"target": [], "nontarget": [], "spoof": []}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"kind", "score"} <= set(reader.fieldnames):
                raise DataError("line 1: header must have columns kind,score", path=path)
            for rec in reader:
                kind = (rec["kind"] or "").strip()
                if kind not in out:
                    raise DataError(f"line {reader.line_num}: kind {kind!r} is not target, nontarget or spoof",
                                    path=path)
                try:
                    out[kind].append(float(rec["score"]))
                except (TypeError, ValueError):
                    raise DataError(f"line {reader.line_num}: score {rec['score']!r} is not a number",
                                    path=path) from None
    except OSError as exc:
        raise DataError(f"cannot read ASV scores: {exc.strerror}", path=path) from exc
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def eer_intervals(scored: ScoredSet, resamples: int, unit: str = "clip", seed: int = 0) -> dict:
    """95 % bootstrap intervals of the pooled and per-system EER (fractions), drawing clips
    (``unit="clip"``) or whole speakers (``"speaker"``) within each stratum."""
    from training import uncertainty as U

    if unit not in U.UNITS:
        raise DataError(f"unit must be one of {U.UNITS}, got {unit!r}")
    if unit == "speaker" and scored.speakers is None:
        raise DataError("speaker intervals need the speakers of the scored files",
                        hint="score a manifest (its speaker column) or use unit 'clip'")
    clusters = np.asarray(scored.speakers, dtype=str) if unit == "speaker" else None
    res = U.bootstrap({"model": scored.scores}, scored.labels == 0, np.asarray(scored.systems, dtype=str),
                      resamples, seed, clusters)
    rows = {k: list(v["model"]["interval"]) for k, v in res["rows"].items()}
    return {"unit": unit, "resamples": resamples, "level": U.LEVEL, "pooled": rows.pop("pooled"), "systems": rows}


def compute_metrics(scored: ScoredSet, asv: dict[str, np.ndarray] | None = None, *, resamples: int = 0,
                    unit: str = "clip") -> dict:
    """Pooled and per-system EER/AUC (``edge_cm.metrics.breakdown``), macro-F1 at the pooled
    EER threshold and at 0 (the argmax decision), accuracy, min t-DCF if ``asv`` is given, and
    with ``resamples`` > 0 the EERs' bootstrap intervals (:func:`eer_intervals`, key ``intervals``)."""
    labels = np.where(scored.labels == 0, M.BONAFIDE, M.SPOOF)
    result = M.breakdown(scored.scores, labels, scored.systems)
    thr = result["pooled"]["threshold"]
    result["macro_f1_at_eer"] = M.macro_f1(labels, scored.scores, thr)
    result["macro_f1_at_argmax"] = M.macro_f1(labels, scored.scores, 0.0)
    result["accuracy_at_argmax"] = float(np.mean((scored.scores >= 0) == (scored.labels == 0)))
    result["n_files"] = int(scored.scores.size)
    if asv is not None:
        bona, spoof = scored.scores[scored.labels == 0], scored.scores[scored.labels != 0]
        result["min_tdcf"] = M.min_tdcf_or_none(bona, spoof, asv["target"], asv["nontarget"], asv["spoof"])
    if resamples:
        result["intervals"] = eer_intervals(scored, resamples, unit)
    return result


def plot_det(scored: ScoredSet, path: str | Path, title: str = "") -> Path:
    """DET curve (normal-deviate axes) of the pooled set and each spoof system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    bona = scored.scores[scored.labels == 0]
    systems = np.asarray(scored.systems)
    groups = [("pooled", scored.labels != 0)] + [(s, (systems == s) & (scored.labels != 0))
                                                  for s in sorted(set(systems[scored.labels != 0]))]
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    clip = 1e-4
    for name, mask in groups:
        frr, far, _ = M.compute_det_curve(bona, scored.scores[mask])
        eer = M.compute_eer(bona, scored.scores[mask])[0]
        ax.plot(norm.ppf(np.clip(far, clip, 1 - clip)), norm.ppf(np.clip(frr, clip, 1 - clip)),
                lw=2.0 if name == "pooled" else 1.0, label=f"{name} (EER {100 * eer:.1f}%)")
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8])
    ax.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.plot([-4, 4], [-4, 4], color="grey", lw=0.5, ls=":")
    ax.set_xlim(norm.ppf(clip), norm.ppf(0.9))
    ax.set_ylim(norm.ppf(clip), norm.ppf(0.9))
    ax.set_xlabel("false acceptance rate of spoofs (%)")
    ax.set_ylabel("false rejection rate of bona fide (%)")
    ax.set_title(title or "DET curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_histogram(scored: ScoredSet, path: str | Path, title: str = "") -> Path:
    """Score histograms of bona fide and of each spoof system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = np.asarray(scored.systems)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    bins = np.linspace(scored.scores.min(), scored.scores.max() + 1e-9, 40)
    ax.hist(scored.scores[scored.labels == 0], bins=bins, alpha=0.6, label="bonafide", color="tab:green")
    for s in sorted(set(systems[scored.labels != 0])):
        ax.hist(scored.scores[(systems == s) & (scored.labels != 0)], bins=bins, alpha=0.45, label=s,
                histtype="stepfilled")
    ax.set_xlabel("score: logit(bonafide) - logit(spoof)   (higher = more bona fide)")
    ax.set_ylabel("files")
    ax.set_title(title or "score histogram")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_scores(scored: ScoredSet, path: str | Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "label", "system", "score"])
        for p, y, s, v in zip(scored.paths, scored.labels, scored.systems, scored.scores):
            w.writerow([p, "bonafide" if y == 0 else "spoof", s, f"{v:.6f}"])
    return Path(path)


def evaluate(checkpoint: str | Path, rows: Sequence, out_dir: str | Path | None = None, *,
             asv_scores: str | Path | None = None, batch_size: int = 64, num_workers: int = 0,
             title: str = "", resamples: int = 0, unit: str = "clip") -> dict:
    """Score ``rows`` with ``checkpoint``; write scores, metrics and plots into ``out_dir`` if given."""
    from training.dataset import WindowDataset
    from training.models import registry
    from training.train import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    arch = registry.get(meta["architecture"])
    cfg = meta["config"]
    data = WindowDataset(list(rows), meta["feature_spec"], train=False, window_seconds=cfg.window_seconds,
                         systems=meta["systems"] or ["none"], add_channel=len(arch.input_shape) == 3)
    scored = score_dataset(model, data, batch_size=batch_size, num_workers=num_workers)
    result = compute_metrics(scored, read_asv_scores(asv_scores) if asv_scores else None,
                             resamples=resamples, unit=unit)
    result["checkpoint"] = str(checkpoint)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_scores(scored, out / "scores.csv")
        plot_det(scored, out / "det.png", title)
        plot_histogram(scored, out / "hist.png", title)
        (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def main(argv: list[str] | None = None) -> int:
    from training.dataset import read_rows
    from training.uncertainty import UNITS, check_resamples

    p = argparse.ArgumentParser(prog="edge-cm-train eval", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a best.pt / last.pt written by edge-cm-train train")
    p.add_argument("--manifest", required=True, help="manifest CSV to score")
    p.add_argument("--split", default="dev", help="split to score ('' = every row); default dev")
    p.add_argument("--system", action="append", help="only these spoof systems (repeatable); bona fide kept")
    p.add_argument("--out", required=True, help="folder for scores.csv, metrics.json, det.png, hist.png")
    p.add_argument("--asv-scores", help="CSV kind,score of ASV target/nontarget/spoof trials (for min t-DCF)")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--resamples", type=int, default=1000,
                   help="bootstrap draws for the EERs' 95 %% intervals (default 1000; 0 = none)")
    p.add_argument("--unit", choices=UNITS, default="clip",
                   help="what a draw redraws: single clips (default) or whole speakers (the manifest's speaker column)")
    args = p.parse_args(argv)
    if args.resamples:
        check_resamples(args.resamples)  # before scoring, not after
    rows = read_rows(args.manifest)
    if args.split:
        rows = [r for r in rows if r.split == args.split]
    if args.system:
        rows = [r for r in rows if r.is_bonafide or r.system in set(args.system)]
    if not rows:
        raise DataError(f"no rows in split {args.split!r}", path=args.manifest)
    res = evaluate(args.checkpoint, rows, args.out, asv_scores=args.asv_scores, num_workers=args.workers,
                   resamples=args.resamples, unit=args.unit)
    ci = res.get("intervals")

    def span(name: str | None) -> str:
        if not ci:
            return ""
        lo, hi = ci["pooled"] if name is None else ci["systems"][name]
        return f" [{100 * lo:.2f}, {100 * hi:.2f}]"

    print(f"pooled EER {100 * res['pooled']['eer']:.2f}%{span(None)}  AUC {res['pooled']['auc']:.4f}  "
          f"macro-F1 {res['macro_f1_at_eer']:.4f}  ({res['n_files']} files)")
    for name, e in res["systems"].items():
        print(f"  {name:<24} EER {100 * e['eer']:6.2f}%{span(name)}  AUC {e['auc']:.4f}  ({e['n_spoof']} spoof)")
    if ci:
        print(f"[95 % bootstrap intervals: {ci['resamples']} draws of {'whole speakers' if ci['unit'] == 'speaker' else 'clips'}"
              " within bona fide and each system]")
    if "min_tdcf" in res:
        print(f"min t-DCF {res['min_tdcf']}")
    print(f"wrote {args.out}/scores.csv, metrics.json, det.png, hist.png")
    return 0
