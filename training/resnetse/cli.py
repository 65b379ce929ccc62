"""``edge-cm-train resnetse {pretrain,finetune,distill,evaluate,export,ablate,speed}``: the ResNetSE recipe by stage.

Examples::

    edge-cm-train resnetse pretrain --bonafide-manifest shared/data/bonafide/manifest.csv --out runs/ge2e.pt
    edge-cm-train resnetse finetune --bonafide-manifest ... --spoof-manifest devcorpus/manifest.csv \\
        --init runs/ge2e.pt --aeg active --out runs/teacher.pt
    edge-cm-train resnetse distill --bonafide-manifest ... --spoof-manifest ... --teacher runs/teacher.pt \\
        --static-from runs/ge2e.pt --aeg static --out runs/student.pt
    edge-cm-train resnetse evaluate --checkpoint runs/student.pt --bonafide-manifest ... --spoof-manifest ... \\
        --split train --window-seconds 2 --max-per-class 100
    edge-cm-train resnetse export --checkpoint runs/student.pt --out runs/student_bundle --formats onnx,tflite
    edge-cm-train resnetse ablate --bonafide-manifest ... --spoof-manifest ... --out runs/ablation --epochs 1
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .bim import BIMConfig
from .frontends import front_end_arg
from .kd import KDConfig


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bonafide-manifest", type=Path, required=True, help="shared bona fide manifest.csv")
    p.add_argument("--spoof-manifest", type=Path, help="spoof corpus manifest (project schema, system column)")
    p.add_argument("--window-seconds", type=float, default=4.0, help="training/eval window (s); 4 s as deployed")
    p.add_argument("--max-per-class", type=int, help="budget: at most this many clips per class")
    p.add_argument("--seed", type=int, default=0)


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--aeg", choices=("none", "static", "active"), default="none",
                   help="adversarial examples: none, once before training, or every epoch")
    p.add_argument("--adversarial-pairs", type=int, default=64, help="same-speaker pairs attacked per generation")
    p.add_argument("--bim-alpha", type=float, default=3.0, help="BIM step on the 16-bit sample scale")
    p.add_argument("--bim-steps", type=int, default=5)
    p.add_argument("--bim-epsilon", type=float, help="||D||_inf bound on the 16-bit scale (default steps*alpha)")
    p.add_argument("--bim-threshold", type=float, default=0.4, help="keep W2+D when final cosine <= this")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--no-augment", action="store_true", help="no on-the-fly noise and reverberation")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    front_end_arg(p)


def _bim(args) -> BIMConfig:
    return BIMConfig(alpha_int16=args.bim_alpha, steps=args.bim_steps, epsilon_int16=args.bim_epsilon,
                     threshold=args.bim_threshold)


def _data(args):
    from .pipeline import DataConfig

    return DataConfig(bonafide_manifest=args.bonafide_manifest, spoof_manifest=args.spoof_manifest,
                      window_seconds=args.window_seconds, max_per_class=args.max_per_class, seed=args.seed)


def _threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edge-cm-train resnetse", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="stage", required=True)

    p = sub.add_parser("pretrain", help="GE2E speaker-embedding pre-training of the teacher")
    p.add_argument("--bonafide-manifest", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--architecture", default="resnetse_teacher")
    p.add_argument("--speakers", type=int, default=7, help="N speakers per batch")
    p.add_argument("--utterances", type=int, default=10, help="M utterances (crops) per speaker")
    p.add_argument("--crop-seconds", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-speakers", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    front_end_arg(p)

    p = sub.add_parser("finetune", help="8-class adversarial fine-tuning of the (GE2E) teacher")
    _data_args(p)
    _train_args(p)
    p.add_argument("--init", type=Path, help="GE2E checkpoint (omit for NLL-only training from scratch)")
    p.add_argument("--architecture", default="resnetse_teacher")

    p = sub.add_parser("distill", help="train the student from the fine-tuned teacher")
    _data_args(p)
    _train_args(p)
    p.add_argument("--teacher", type=Path, help="fine-tuned teacher checkpoint")
    p.add_argument("--static-from", type=Path, help="GE2E checkpoint for static AEG")
    p.add_argument("--no-kd", action="store_true", help="labels only (the 'student without KD' baseline)")
    p.add_argument("--temperature", type=float, default=5.0)
    p.add_argument("--gamma", type=float, default=0.5)
    p.add_argument("--architecture", default="resnetse_student")

    p = sub.add_parser("evaluate", help="EER of a stage checkpoint on one split (first window of each clip)")
    _data_args(p)
    p.add_argument("--checkpoint", type=Path, required=True, help="finetune or distill checkpoint (.pt)")
    p.add_argument("--split", default="test", help="corpus split: train, dev or test")
    p.add_argument("--robust", action="store_true", help="also the EER with every spoof BIM-perturbed")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=0)

    p = sub.add_parser("export", help="a ResNetSE checkpoint (e.g. the student) -> an edge-cm bundle")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--formats", default="onnx,tflite", help="comma list of onnx, onnx-int8, tflite, tflite-int8")
    p.add_argument("--bonafide-manifest", type=Path, help="with --spoof-manifest: real windows for the gates")
    p.add_argument("--spoof-manifest", type=Path, help="corpus: calibration (train) and evaluation (dev) windows")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--threads", type=int, default=0)

    p = sub.add_parser("speed", help="seconds per training step and per BIM attack, to size a budget")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0, help="window length (s)")
    p.add_argument("--threads", type=int, default=1)
    from .ablation import WIDTHS, add_arguments

    p.add_argument("--width", choices=sorted(WIDTHS), default="paper",
                   help="paper: G-/L-ResNetSE; quarter: the same layouts at a quarter of the channels")
    front_end_arg(p)

    p = sub.add_parser("ablate", help="the paper's ablation tables on a budget (see benchmarks/resnetse_ablation.py)")

    add_arguments(p)
    return ap


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    _threads(getattr(args, "threads", 0))
    from . import pipeline

    if args.stage == "pretrain":
        out = pipeline.pretrain(pipeline.PretrainConfig(
            bonafide_manifest=args.bonafide_manifest, out=args.out, architecture=args.architecture,
            speakers=args.speakers, utterances=args.utterances, crop_seconds=args.crop_seconds, steps=args.steps,
            lr=args.lr, max_speakers=args.max_speakers, seed=args.seed, front_end=args.front_end))
    elif args.stage == "finetune":
        out = pipeline.finetune(pipeline.FinetuneConfig(
            data=_data(args), out=args.out, init=args.init, architecture=args.architecture, aeg=args.aeg,
            adversarial_pairs=args.adversarial_pairs, bim=_bim(args), epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, augment=not args.no_augment, front_end=args.front_end))
    elif args.stage == "distill":
        out = pipeline.distill(pipeline.DistillConfig(
            data=_data(args), out=args.out, teacher=args.teacher, static_from=args.static_from,
            architecture=args.architecture, use_kd=not args.no_kd,
            kd=KDConfig(temperature=args.temperature, gamma=args.gamma), aeg=args.aeg,
            adversarial_pairs=args.adversarial_pairs, bim=_bim(args), epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, augment=not args.no_augment, front_end=args.front_end))
    elif args.stage == "evaluate":
        scorer, _ = pipeline.load_scorer(args.checkpoint)
        data = _data(args)
        result = pipeline.evaluate(scorer.model, data, args.split, args.max_per_class, robust=args.robust,
                                   batch_size=args.batch_size, spec=scorer.spec)
        bim = "-" if result.eer_bim is None else f"{result.eer_bim:.3f}"
        print(f"{args.checkpoint} {args.split}: EER {result.eer:.3f}, EER under BIM {bim} "
              f"({result.n_bonafide} bona fide / {result.n_spoof} spoof windows of {data.window_seconds:g} s)")
        for system, r in result.per_system.items():
            bim = "-" if r["eer_bim"] is None else f"{r['eer_bim']:.3f}"
            print(f"  {system:<28} EER {r['eer']:.3f}, under BIM {bim} ({r['n']} spoof windows)")
        return 0
    elif args.stage == "export":
        from .bundle import BundleConfig, export_checkpoint

        out = export_checkpoint(BundleConfig(
            checkpoint=args.checkpoint, out=args.out, formats=tuple(f for f in args.formats.split(",") if f),
            bonafide_manifest=args.bonafide_manifest, spoof_manifest=args.spoof_manifest,
            overwrite=args.force)).path
    elif args.stage == "speed":
        from .ablation import throughput

        for r in throughput(args.batch, args.seconds, width=args.width, front_end=args.front_end):
            print(f"{r['architecture']:<26} {r['front_end']} batch {r['batch']} x {r['seconds']:g} s: train step "
                  f"{r['train_step_s']:.2f} s ({r['train_s_per_window']:.3f} s/window), "
                  f"BIM 5 steps {r['bim_s_per_window']:.3f} s/window")
        return 0
    else:
        from .ablation import run_from_args

        out = run_from_args(args)
    print(out)
    return 0
