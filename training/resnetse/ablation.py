"""The paper's ablation (Tables 1 and 2) on a budget.

Teacher rows: NLL only (no GE2E); GE2E + NLL with no / static / active AEG.
Student rows: labels only (no KD, no AEG); KD from the GE2E + active-AEG teacher
with no / static / active AEG. Every row reports the EER on the test split and the
EER when every test spoof is BIM-perturbed against that very model to lower its
spoof score (robustness), plus its training and evaluation time.

``--budget`` picks a preset (``tiny`` runs end to end in minutes on 2 CPU cores; ``small``
took 33 min and ``medium`` 73 min on the developer corpus, see README; ``paper`` uses the
paper's settings; ``long`` is sized for ``--width quarter``); any single knob can be
overridden (``--epochs``, ``--max-per-class``...). ``--width quarter`` runs the same layouts at a
quarter of the channels (``resnetse_*_quarter``), about six times cheaper per training window.
``--reuse`` keeps every stage checkpoint already in ``--out`` that was trained with the very same
stage config (anything else there is refused), so an interrupted run resumes at the stage it
reached and a finished one can be evaluated again without training.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from .bim import BIMConfig
from .frontends import DEFAULT_FRONT_END

BUDGETS: dict[str, dict] = {
    "tiny": dict(epochs=1, ge2e_steps=2, speakers=3, utterances=2, crop_seconds=1.0, max_per_class=3,
                 eval_per_class=2, window_seconds=1.0, adversarial_pairs=4, batch_size=4),
    "small": dict(epochs=3, ge2e_steps=40, speakers=7, utterances=4, crop_seconds=2.0, max_per_class=40,
                  eval_per_class=40, window_seconds=2.0, adversarial_pairs=24, batch_size=8),
    "medium": dict(epochs=4, ge2e_steps=100, speakers=7, utterances=4, crop_seconds=2.0, max_per_class=120,
                   eval_per_class=100, window_seconds=2.0, adversarial_pairs=48, batch_size=8),
    # Sized for --width quarter: 23 min on 2 cores (README), 2.3 times medium's windows per epoch.
    "long": dict(epochs=6, ge2e_steps=150, speakers=7, utterances=4, crop_seconds=2.0, max_per_class=300,
                 eval_per_class=100, window_seconds=2.0, adversarial_pairs=64, batch_size=16),
    "paper": dict(epochs=10, ge2e_steps=500, speakers=7, utterances=10, crop_seconds=2.0, max_per_class=None,
                  eval_per_class=None, window_seconds=4.0, adversarial_pairs=256, batch_size=16),
}


@dataclass
class Budget:
    """How much of the recipe a run affords (seconds of audio, counts of clips and steps)."""

    epochs: int
    ge2e_steps: int
    speakers: int
    utterances: int
    crop_seconds: float
    max_per_class: int | None
    eval_per_class: int | None
    window_seconds: float
    adversarial_pairs: int
    batch_size: int


@dataclass
class AblationConfig:
    bonafide_manifest: Path
    spoof_manifest: Path
    out: Path
    budget: Budget
    bim: BIMConfig = BIMConfig()
    augment: bool = True
    robust: bool = True
    seed: int = 0
    width: str = "paper"
    """``paper`` (G-/L-ResNetSE) or ``quarter`` (the same layouts at a quarter of the channels)."""
    reuse: bool = False
    """Keep stage checkpoints already in ``out`` when their saved config equals this run's."""
    front_end: str = DEFAULT_FRONT_END
    """Every stage's front end (:data:`training.resnetse.frontends.FRONT_ENDS`)."""

    def __post_init__(self) -> None:
        if self.width not in WIDTHS:
            raise ValueError(f"width must be one of {sorted(WIDTHS)}, got {self.width!r}")


# width -> (teacher architecture, student architecture)
WIDTHS = {"paper": ("resnetse_teacher", "resnetse_student"),
          "quarter": ("resnetse_teacher_quarter", "resnetse_student_quarter")}
TEACHER_ROWS = (("nll_only", None, "none"), ("ge2e_nll", "ge2e", "none"), ("ge2e_nll_static_aeg", "ge2e", "static"),
                ("ge2e_nll_active_aeg", "ge2e", "active"))
STUDENT_ROWS = (("student_no_kd", False, "none"), ("student_kd", True, "none"),
                ("student_kd_static_aeg", True, "static"),
                ("student_kd_active_aeg", True, "active"))
KD_TEACHER = "ge2e_nll_active_aeg"


def run(config: AblationConfig) -> dict:
    """Run every row, write ``results.json`` and ``results.md`` to ``config.out``; return the results."""
    from training.models import registry

    from . import pipeline

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    b = config.budget
    teacher_arch, student_arch = WIDTHS[config.width]
    data = pipeline.DataConfig(bonafide_manifest=config.bonafide_manifest, spoof_manifest=config.spoof_manifest,
                               window_seconds=b.window_seconds, max_per_class=b.max_per_class, seed=config.seed)
    common = dict(adversarial_pairs=b.adversarial_pairs, bim=config.bim, epochs=b.epochs, batch_size=b.batch_size,
                  augment=config.augment, front_end=config.front_end)
    results: dict = {"config": pipeline._jsonable(asdict(config)), "rows": [], "timings": {}}
    t0 = time.perf_counter()
    ge2e = _stage(pipeline.pretrain, pipeline.PretrainConfig(
        bonafide_manifest=config.bonafide_manifest, out=out / "ge2e.pt", architecture=teacher_arch,
        speakers=b.speakers, utterances=b.utterances, crop_seconds=b.crop_seconds, steps=b.ge2e_steps,
        seed=config.seed, front_end=config.front_end), config.reuse, results)
    results["timings"]["ge2e_pretrain_s"] = pipeline.load_checkpoint(ge2e)[1]["extra"].get("seconds")

    def record(name: str, table: str, ckpt: Path) -> None:
        scorer, saved = pipeline.load_scorer(ckpt)
        model = scorer.model
        ev = pipeline.evaluate(model, data, "test", b.eval_per_class, config.robust, config.bim,
                               batch_size=b.batch_size, spec=scorer.spec)
        row = {"table": table, "row": name, "eer": ev.eer, "eer_bim": ev.eer_bim, "n_bonafide": ev.n_bonafide,
               "n_spoof": ev.n_spoof, "params": registry.count_params(model),
               "train_s": saved["extra"].get("seconds"), "eval_s": ev.seconds,
               "per_system": ev.per_system,
               "final_train_loss": saved["history"][-1]["loss"] if saved["history"] else None,
               "adversarial_examples": saved["history"][-1].get("adversarial") if saved["history"] else None}
        results["rows"].append(row)
        pipeline._log(f"ablation {table}/{name}: EER {ev.eer:.3f} EER(BIM) "
                      f"{'-' if ev.eer_bim is None else f'{ev.eer_bim:.3f}'} train {row['train_s']:.0f} s")
        _write(out, results)

    for name, init, aeg in TEACHER_ROWS:
        ckpt = _stage(pipeline.finetune, pipeline.FinetuneConfig(
            data=data, out=out / f"{name}.pt", architecture=teacher_arch, init=ge2e if init else None, aeg=aeg,
            **common), config.reuse, results)
        record(name, "teacher", ckpt)
    for name, use_kd, aeg in STUDENT_ROWS:
        ckpt = _stage(pipeline.distill, pipeline.DistillConfig(
            data=data, out=out / f"{name}.pt", architecture=student_arch,
            teacher=out / f"{KD_TEACHER}.pt" if use_kd else None,
            static_from=ge2e if aeg == "static" else None, use_kd=use_kd, aeg=aeg, **common),
            config.reuse, results)
        record(name, "student", ckpt)
    results["timings"]["total_s"] = time.perf_counter() - t0
    _write(out, results)
    return results


def _stage(train, stage_config, reuse: bool, results: dict) -> Path:
    """Run one stage into ``stage_config.out``, or with ``reuse`` keep the checkpoint already there
    if it was trained with this very config (listed in ``results["reused"]``)."""
    from edge_cm.errors import DataError

    from . import pipeline

    path = Path(stage_config.out)
    if not (reuse and path.is_file()):
        return train(stage_config)
    saved = dict(pipeline.load_checkpoint(path)[1]["extra"].get("config") or {})
    saved.setdefault("front_end", DEFAULT_FRONT_END)  # written before the choice existed: front end (b)
    want = pipeline._jsonable(asdict(stage_config))
    if saved != want:
        differ = sorted(k for k in set(want) | set(saved) if saved.get(k) != want.get(k))
        raise DataError(f"checkpoint was trained with another config (differs in {differ})", path=path,
                        hint="delete it, pick another --out, or run without --reuse")
    pipeline._log(f"ablation: reusing {path.name} (same config)")
    results.setdefault("reused", []).append(path.name)
    return path


def throughput(batch: int = 8, seconds: float = 4.0, repeats: int = 3, width: str = "paper",
               front_end: str = DEFAULT_FRONT_END) -> list[dict]:
    """Seconds per training step and per BIM attack (5 steps) of teacher and student on random audio,
    to size a budget before running it."""
    import torch
    from torch.nn import functional as F

    from .bim import evasion_adversarial
    from .frontends import front_end_spec
    from .pipeline import Scorer, build_model

    rows = []
    x = torch.randn(batch, int(round(seconds * 16000))) * 0.05
    y = torch.zeros(batch, dtype=torch.long)
    for name in WIDTHS[width]:
        spec = front_end_spec(front_end)
        scorer = Scorer(build_model(name, spec), spec)
        opt = torch.optim.Adam(scorer.parameters(), lr=3e-4)
        steps = []
        for _ in range(repeats):
            t = time.perf_counter()
            loss = F.cross_entropy(scorer(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps.append(time.perf_counter() - t)
        t = time.perf_counter()
        evasion_adversarial(scorer, x, BIMConfig(), modules=(scorer,))
        attack = time.perf_counter() - t
        rows.append({"architecture": name, "front_end": front_end, "batch": batch, "seconds": seconds, "train_step_s": min(steps),
                     "train_s_per_window": min(steps) / batch, "bim_s_per_window": attack / batch})
    return rows


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(results: dict) -> str:
    b = results["config"]["budget"]
    width = results["config"].get("width", "paper")
    front_end = results["config"].get("front_end", DEFAULT_FRONT_END)
    lines = [f"ResNetSE ablation (width: {width}; front end: {front_end}; budget: {json.dumps(b)})", "",
             "| table | row | EER | EER under BIM | bona fide / spoof | params | train s | eval s |",
             "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in results["rows"]:
        lines.append(f"| {r['table']} | {r['row']} | {_fmt(r['eer'])} | {_fmt(r['eer_bim'])} | "
                     f"{r['n_bonafide']} / {r['n_spoof']} | {r['params']} | {_fmt(r['train_s'])} | "
                     f"{_fmt(r['eval_s'])} |")
    t = results.get("timings", {})
    lines += ["", f"GE2E pre-training: {_fmt(t.get('ge2e_pretrain_s'))} s; total: {_fmt(t.get('total_s'))} s"]
    if results.get("reused"):
        lines += ["", f"Reused from an earlier run with the same configs (train s are theirs; total is this "
                      f"run's): {', '.join(results['reused'])}"]
    lines += _per_system_table(results["rows"])
    return "\n".join(lines) + "\n"


def _per_system_table(rows: list[dict]) -> list[str]:
    """Rows x test systems: each system's spoofs against all bona fide windows, 'EER / EER under BIM'."""
    counts: dict[str, int] = {}
    for r in rows:
        for system, v in r.get("per_system", {}).items():
            counts.setdefault(system, v["n"])
    if not counts:
        return []
    systems = sorted(counts)
    lines = ["", "EER per test system (EER / under BIM; spoof windows in the header):", "",
             "| row | " + " | ".join(f"{s} ({counts[s]})" for s in systems) + " |",
             "|---|" + "---:|" * len(systems)]
    for r in rows:
        cells = []
        for s in systems:
            v = r.get("per_system", {}).get(s)
            cells.append("-" if v is None else f"{_fmt(v['eer'])} / {_fmt(v['eer_bim'])}")
        lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
    return lines


def _write(out: Path, results: dict) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results))


def budget_arguments(p: argparse.ArgumentParser, default: str) -> None:
    """``--budget PRESET`` and one option per :class:`Budget` field that overrides the preset."""
    p.add_argument("--budget", choices=sorted(BUDGETS), default=default, help="preset; single knobs below override it")
    for f in fields(Budget):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=float if f.name.endswith("_seconds") else int)


def budget_from_args(args: argparse.Namespace) -> Budget:
    """The preset of ``--budget`` with every knob given on the command line replaced."""
    budget = Budget(**BUDGETS[args.budget])
    return replace(budget, **{k: getattr(args, k) for k in asdict(budget) if getattr(args, k, None) is not None})


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bonafide-manifest", type=Path, required=True, help="shared bona fide manifest.csv")
    p.add_argument("--spoof-manifest", type=Path, required=True, help="spoof corpus manifest with train/test splits")
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoints and results.{json,md}")
    budget_arguments(p, default="tiny")
    p.add_argument("--width", choices=sorted(WIDTHS), default="paper",
                   help="paper: G-/L-ResNetSE; quarter: the same layouts at a quarter of the channels")
    p.add_argument("--bim-alpha", type=float, default=3.0, help="BIM step on the 16-bit sample scale")
    p.add_argument("--bim-steps", type=int, default=5)
    p.add_argument("--bim-epsilon", type=float, help="||D||_inf bound on the 16-bit scale (default steps*alpha)")
    p.add_argument("--bim-threshold", type=float, default=0.4,
                   help="keep W2+D when the final cosine is <= this (1.0 keeps every attacked pair)")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--no-robust", action="store_true", help="skip the EER under BIM")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    from .frontends import front_end_arg

    front_end_arg(p)
    p.add_argument("--reuse", action="store_true",
                   help="keep stage checkpoints in --out that were trained with the same config")


def run_from_args(args: argparse.Namespace) -> Path:
    budget = budget_from_args(args)
    bim = BIMConfig(alpha_int16=args.bim_alpha, steps=args.bim_steps, epsilon_int16=args.bim_epsilon,
                    threshold=args.bim_threshold)
    config = AblationConfig(bonafide_manifest=args.bonafide_manifest, spoof_manifest=args.spoof_manifest,
                            out=args.out, budget=budget, bim=bim, augment=not args.no_augment,
                            robust=not args.no_robust, seed=args.seed, width=args.width,
                            reuse=args.reuse, front_end=args.front_end)
    results = run(config)
    print(markdown(results))
    return Path(args.out) / "results.json"
