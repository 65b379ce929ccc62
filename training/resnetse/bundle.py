"""A ResNetSE checkpoint (usually the distilled student) -> an edge-cm bundle.

The model takes one window's features from the front end it was trained on (the checkpoint's
spec, which the bundle carries; by default front end (b), 40-band log-mel, (1, 1, 40, 398)) and
returns the 8 logits; the runtime turns them into the spoof score ``logsumexp(logits[1:]) -
logits[0]`` (classes[0] is ``bonafide``). Float formats are gated against torch on real
windows when a corpus is given (synthetic inputs otherwise); int8 formats need it:
calibration windows from its train split, the labelled evaluation set from its dev split.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import AudioCache, classification_clips, crop, subsample
from .families import CLASSES


@dataclass
class BundleConfig:
    checkpoint: Path
    out: Path
    formats: tuple[str, ...] = ("onnx", "tflite")
    bonafide_manifest: Path | None = None
    spoof_manifest: Path | None = None
    calibration_per_class: int = 16
    eval_per_class: int = 32
    overwrite: bool = False
    seed: int = 0


def _windows(config: BundleConfig, split: str, per_class: int, n: int) -> tuple[list[np.ndarray], list[str]]:
    bona, spoofs = classification_clips(config.bonafide_manifest, config.spoof_manifest, (split,))
    clips = subsample(bona + spoofs, per_class, np.random.default_rng(config.seed))
    audio = AudioCache()
    return [crop(audio(c.path), n, None) for c in clips], [CLASSES[c.label] for c in clips]


def export_checkpoint(config: BundleConfig):
    """Export the checkpoint's model; returns the written :class:`edge_cm.bundle.Bundle`."""
    from export.api import export_bundle

    from .pipeline import load_scorer

    scorer, ckpt = load_scorer(config.checkpoint)
    model, spec = scorer.model, scorer.spec
    window = 4 * spec.sample_rate
    calib = evals = labels = None
    if config.bonafide_manifest is not None and config.spoof_manifest is not None:
        calib, _ = _windows(config, "train", config.calibration_per_class, window)
        evals, labels = _windows(config, "dev", config.eval_per_class, window)
    history = ckpt.get("history") or [{}]
    return export_bundle(
        model, spec, config.out, formats=config.formats, architecture=ckpt["architecture"], classes=CLASSES,
        calibration_windows=calib, eval_windows=evals, eval_labels=labels, window_samples=window,
        overwrite=config.overwrite,
        metadata={"training_data": {"checkpoint": str(config.checkpoint), "stage": ckpt.get("stage"),
                                    "epochs": len(history), "final_train_loss": history[-1].get("loss")}})
