"""Which front end lets a ResNetSE fit the corpus: the ablation's first row per front end and seed.

Each run is the NLL-only teacher row of the ablation (no GE2E, no AEG) at the given width and
budget, trained once per front end and seed, then scored on the ``train`` split (does it fit?)
and the ``test`` split (does it generalise?), pooled and per spoofing family. The evaluation
windows are the same for every run (``eval_seed``), so the rows differ by training only. One
seed is not enough here: unfitted models of one config differ by several EER points between
seeds, hence the seeds and their mean.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .ablation import WIDTHS, Budget, _fmt, _stage, budget_arguments, budget_from_args
from .families import family_of
from .frontends import FRONT_ENDS

SPLITS = ("train", "test")


@dataclass
class FrontEndStudyConfig:
    bonafide_manifest: Path
    spoof_manifest: Path
    out: Path
    budget: Budget
    front_ends: tuple[str, ...] = tuple(FRONT_ENDS)
    seeds: tuple[int, ...] = (0, 1)
    width: str = "quarter"
    eval_seed: int = 0
    reuse: bool = False
    augment: bool = True
    splits: tuple[str, ...] = field(default=SPLITS)

    def __post_init__(self) -> None:
        from edge_cm.errors import DataError

        unknown = [f for f in self.front_ends if f not in FRONT_ENDS]
        if unknown:
            raise DataError(f"unknown front end(s) {unknown}", hint=f"use some of {sorted(FRONT_ENDS)}")
        if self.width not in WIDTHS:
            raise DataError(f"width must be one of {sorted(WIDTHS)}, got {self.width!r}")
        if not self.seeds:
            raise DataError("no seeds given", hint="pass --seeds 0 1")


def family_means(per_system: dict[str, dict]) -> dict[str, float]:
    """Mean EER of the systems of each spoofing family (systems weigh equally, whatever their size)."""
    by_family: dict[str, list[float]] = {}
    for system, r in per_system.items():
        by_family.setdefault(family_of(system), []).append(r["eer"])
    return {f: sum(v) / len(v) for f, v in sorted(by_family.items())}


def run(config: FrontEndStudyConfig) -> dict:
    """Train and score every (front end, seed); write ``results.json`` / ``results.md`` to ``out``."""
    from . import pipeline

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    b = config.budget
    teacher = WIDTHS[config.width][0]
    results: dict = {"config": pipeline._jsonable(asdict(config)), "runs": []}
    for front_end in config.front_ends:
        for seed in config.seeds:
            data = pipeline.DataConfig(bonafide_manifest=config.bonafide_manifest,
                                       spoof_manifest=config.spoof_manifest, window_seconds=b.window_seconds,
                                       max_per_class=b.max_per_class, seed=seed)
            ckpt = _stage(pipeline.finetune, pipeline.FinetuneConfig(
                data=data, out=out / f"{front_end}_s{seed}.pt", architecture=teacher, epochs=b.epochs,
                batch_size=b.batch_size, augment=config.augment, front_end=front_end), config.reuse, results)
            scorer, saved = pipeline.load_scorer(ckpt)
            history = saved["history"]
            row = {"front_end": front_end, "seed": seed, "train_s": saved["extra"].get("seconds"),
                   "epoch_s": [h["seconds"] for h in history], "final_train_loss": history[-1]["loss"],
                   "final_train_accuracy": history[-1]["accuracy"], "splits": {}}
            eval_data = pipeline.DataConfig(bonafide_manifest=config.bonafide_manifest,
                                            spoof_manifest=config.spoof_manifest, window_seconds=b.window_seconds,
                                            seed=config.eval_seed)
            for split in config.splits:
                t = time.perf_counter()
                ev = pipeline.evaluate(scorer.model, eval_data, split, b.eval_per_class, robust=False,
                                       batch_size=b.batch_size, spec=scorer.spec)
                row["splits"][split] = {"eer": ev.eer, "n_bonafide": ev.n_bonafide, "n_spoof": ev.n_spoof,
                                        "per_system": ev.per_system, "families": family_means(ev.per_system),
                                        "eval_s": time.perf_counter() - t}
            results["runs"].append(row)
            pipeline._log(f"front end {front_end} seed {seed}: " + ", ".join(
                f"{s} EER {row['splits'][s]['eer']:.3f}" for s in config.splits))
            _write(out, results)
    return results


def markdown(results: dict) -> str:
    cfg = results["config"]
    splits = cfg["splits"]
    families = sorted({f for r in results["runs"] for f in r["splits"].get("test", {}).get("families", {})})
    lines = [f"ResNetSE front ends: NLL-only teacher ({WIDTHS[cfg['width']][0]}), budget {json.dumps(cfg['budget'])}, "
             f"evaluation windows fixed by eval_seed {cfg['eval_seed']}", "",
             "| front end | seed | " + " | ".join(f"{s} EER" for s in splits) + " | final train loss | "
             "final train acc | s per epoch | " + " | ".join(f"test {f}" for f in families) + " |",
             "|---|---:|" + "---:|" * (len(splits) + 3 + len(families))]
    for r in results["runs"]:
        fam = r["splits"].get("test", {}).get("families", {})
        epoch_s = sum(r["epoch_s"]) / len(r["epoch_s"]) if r["epoch_s"] else None
        lines.append(f"| {r['front_end']} | {r['seed']} | "
                     + " | ".join(_fmt(r["splits"][s]["eer"]) for s in splits)
                     + f" | {_fmt(r['final_train_loss'])} | {_fmt(r['final_train_accuracy'])} | {_fmt(epoch_s)} | "
                     + " | ".join(_fmt(fam.get(f)) for f in families) + " |")
    lines += ["", "Mean over seeds:", "", "| front end | seeds | " + " | ".join(f"{s} EER" for s in splits)
              + " | " + " | ".join(f"test {f}" for f in families) + " |",
              "|---|---:|" + "---:|" * (len(splits) + len(families))]
    for front_end in dict.fromkeys(r["front_end"] for r in results["runs"]):
        runs = [r for r in results["runs"] if r["front_end"] == front_end]

        def mean(values):
            values = [v for v in values if v is not None]
            return sum(values) / len(values) if values else None

        lines.append(f"| {front_end} | {len(runs)} | "
                     + " | ".join(_fmt(mean([r["splits"][s]["eer"] for r in runs])) for s in splits) + " | "
                     + " | ".join(_fmt(mean([r["splits"].get("test", {}).get("families", {}).get(f) for r in runs]))
                                  for f in families) + " |")
    if results.get("reused"):
        lines += ["", f"Reused checkpoints (same configs; their train times): {', '.join(results['reused'])}"]
    return "\n".join(lines) + "\n"


def _write(out: Path, results: dict) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results))


def main(argv: list[str] | None = None) -> int:
    from .cli import _threads

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bonafide-manifest", type=Path, required=True, help="shared bona fide manifest.csv")
    p.add_argument("--spoof-manifest", type=Path, required=True, help="spoof corpus manifest with train/test splits")
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoints and results.{json,md}")
    p.add_argument("--front-ends", nargs="+", default=list(FRONT_ENDS), choices=sorted(FRONT_ENDS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    budget_arguments(p, default="long")
    p.add_argument("--width", choices=sorted(WIDTHS), default="quarter")
    p.add_argument("--reuse", action="store_true", help="keep checkpoints in --out trained with the same config")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    _threads(args.threads)
    budget = budget_from_args(args)
    config = FrontEndStudyConfig(bonafide_manifest=args.bonafide_manifest, spoof_manifest=args.spoof_manifest,
                                 out=args.out, budget=budget, front_ends=tuple(args.front_ends),
                                 seeds=tuple(args.seeds), width=args.width, reuse=args.reuse)
    print(markdown(run(config)))
    return 0
