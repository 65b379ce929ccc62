"""Knowledge distillation in the shared training loop (training/distill.py); a whole run with a
teacher is in test_training_loop.py, beside the toy corpus."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from edge_cm.errors import DataError
from edge_cm.features import FeatureSpec
from training.config import TrainConfig
from training.distill import DistillationLoss, Teacher, renormalisation
from training.resnetse.kd import KDConfig
from training.train import ClassificationLoss


def test_loss_blends_the_teachers_mean_soft_targets_with_the_label_loss():
    torch.manual_seed(0)
    student_logits = torch.randn(4, 2, requires_grad=True)
    batch = {"features": torch.randn(4, 3, 5), "label": torch.tensor([0, 1, 1, 0])}
    lin_a, lin_b = nn.Linear(15, 2), nn.Linear(15, 2)
    teachers = [Teacher(nn.Sequential(nn.Flatten(), lin), torch.ones(3, 1), torch.zeros(3, 1))
                for lin in (lin_a, lin_b)]
    label = ClassificationLoss()
    t = 3.0
    mean_teacher = (lin_a(batch["features"].flatten(1)) + lin_b(batch["features"].flatten(1))).detach() / 2
    p_t = F.softmax(mean_teacher / t, dim=1)
    by_hand = t * t * (p_t * (p_t.log() - F.log_softmax(student_logits / t, dim=1))).sum(1).mean()
    ce = F.cross_entropy(student_logits, batch["label"])
    for gamma in (0.0, 0.5, 1.0):
        loss, parts = DistillationLoss(label, teachers, KDConfig(t, gamma))(student_logits, batch)
        assert torch.allclose(loss, gamma * by_hand + (1 - gamma) * ce, atol=1e-6), gamma
        assert parts["kd"] == pytest.approx(float(by_hand.detach()), abs=1e-6)
    loss.backward()
    assert student_logits.grad is not None and lin_a.weight.grad is None  # teachers stay frozen


def test_renormalisation_gives_each_teacher_its_own_statistics():
    base = FeatureSpec(kind="log_spectrogram", win_length=400, hop_length=160, n_fft=512)
    rng = np.random.default_rng(0)
    student = base.with_global_stats(rng.normal(size=257), rng.uniform(0.5, 2.0, 257))
    teacher = base.with_global_stats(rng.normal(size=257), rng.uniform(0.5, 2.0, 257))
    raw = torch.tensor(rng.normal(size=(2, 257, 7)), dtype=torch.float32)
    col = lambda v: torch.tensor(v, dtype=torch.float32).view(-1, 1)  # noqa: E731
    seen_by_student = (raw - col(student.norm_mean)) / col(student.norm_std)
    scale, shift = renormalisation(student, teacher)
    expected = (raw - col(teacher.norm_mean)) / col(teacher.norm_std)
    assert torch.allclose(seen_by_student * scale + shift, expected, atol=1e-5)
    same_scale, same_shift = renormalisation(student, student)
    assert torch.allclose(same_scale, torch.ones(257, 1)) and torch.allclose(same_shift, torch.zeros(257, 1))


def test_config_rejects_bad_distillation_settings():
    with pytest.raises(DataError, match="kd_weight"):
        TrainConfig(architecture="spec_mel_cnn", manifest="m.csv", kd_weight=1.5)
    with pytest.raises(DataError, match="list of paths"):
        TrainConfig(architecture="spec_mel_cnn", manifest="m.csv", teachers="runs/a/best.pt")


def test_the_committed_teacher_loads_for_its_students_front_end(tmp_path):
    """benchmarks/checkpoints keeps the teacher of an unfinished distillation so that a new machine can train
    the student; if the bundle or the student's front end drifts, training would fail only after the corpus build."""
    from pathlib import Path

    from edge_cm.bundle import load_bundle
    from training.config import load_config
    from training.distill import load_teachers
    from training.models import registry

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "training" / "configs" / "spec_mel_cnn_mt_freqmask_kd_wide_hold30.yaml",
                      manifest=str(tmp_path / "unused.csv"))  # the front end does not depend on it
    teacher_dir = root / "benchmarks" / "checkpoints" / "wide_hold30_s0_nolevel"
    assert load_bundle(teacher_dir).meta.feature_spec.level_dbfs is None  # sha256 of each model file checked too
    arch = registry.get(cfg.architecture)
    assert arch.needs_global_stats and not cfg.level_norm
    spec = arch.feature_spec()
    spec = spec.with_global_stats(np.zeros(spec.n_bins), np.ones(spec.n_bins))  # as training sets it, from its corpus
    (teacher,) = load_teachers([str(teacher_dir)], spec)
    assert sum(p.numel() for p in teacher.model.parameters()) > 4 * 46_742  # the wide model, not the budget one
    frames = spec.n_frames(4 * spec.sample_rate)
    features = torch.randn(3, spec.n_bins, frames, generator=torch.Generator().manual_seed(0))
    logits = teacher.logits(features)
    assert logits.shape == (3, 2) and torch.isfinite(logits).all()
    assert not torch.allclose(logits[0], logits[1])


def test_the_committed_student_run_can_be_resumed_from_the_committed_teacher(tmp_path):
    """The unfinished student's run folder (benchmarks/checkpoints/README.md): it must name the committed teacher,
    hold an unfinished resume state that matches its metrics log, and keep the recipe of its committed config."""
    import csv
    from dataclasses import asdict
    from pathlib import Path

    from training.config import load_config
    from training.train import read_checkpoint

    root = Path(__file__).resolve().parents[1]
    run_dir = root / "benchmarks" / "checkpoints" / "kd_wide_hold30_s0"
    unused = str(tmp_path / "unused.csv")
    cfg = load_config(run_dir / "config.yaml", manifest=unused)
    assert cfg.teachers == ["benchmarks/checkpoints/wide_hold30_s0_nolevel"] and (root / cfg.teachers[0]).is_dir()
    shipped = load_config(root / "training" / "configs" / "spec_mel_cnn_mt_freqmask_kd_wide_hold30.yaml",
                          manifest=unused)
    ignore = {"teachers", "progress", "manifest"}
    assert {k: v for k, v in asdict(cfg).items() if k not in ignore} == \
        {k: v for k, v in asdict(shipped).items() if k not in ignore}
    state = read_checkpoint(run_dir / "last.pt")["train_state"]
    with open(run_dir / "metrics.csv", newline="") as f:
        logged = list(csv.DictReader(f))
    assert not state["finished"] and 0 < state["epoch"] < cfg.max_epochs
    assert state["epoch"] == len(logged) == len(state["history"])
    assert float(logged[-1]["val_loss"]) == pytest.approx(state["history"][-1]["val_loss"])
