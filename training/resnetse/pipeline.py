"""The three ResNetSE stages: GE2E pre-training, adversarial fine-tuning, distillation.

* :func:`pretrain` - the teacher learns speaker embeddings with the GE2E loss on
  N speakers x M crops of bona fide speech.
* :func:`finetune` - the whole network learns the 8 classes (NLL, weighted by inverse
  class frequency unless ``class_weighting=False``) on bona fide
  speech, the six spoofing families and BIM ``adversarial`` examples; noise and
  reverberation are added on the fly to the original (not the adversarial) audio,
  since noise at 5-20 dB SNR would drown a perturbation of at most -67 dBFS.
  Adam, lr 3e-4, lr *= 0.95 every 2 epochs.
* :func:`distill` - the student learns from the fine-tuned teacher (KD loss) or
  from labels alone (``use_kd=False``).

Adversarial example generation (AEG): ``static`` attacks once, before training,
with the GE2E-pretrained teacher; ``active`` attacks again at every epoch with the
model being trained (the teacher during fine-tuning, the student during
distillation). Checkpoints are ``torch.save`` dicts with the architecture name,
the state dict, the classes, a per-epoch history and the front end (name and ``FeatureSpec``,
see ``frontends.py``).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edge_cm.errors import DataError
from edge_cm.features import FeatureSpec, resnetse_spec
from training.frontend_torch import TorchFrontEnd
from training.models import registry
from training.train import load_weights, read_checkpoint

from .bim import BIMConfig, evasion_adversarial, speaker_adversarial, spoof_score
from .data import (SAMPLE_RATE, AudioCache, Clip, classification_clips, crop, ge2e_batch, read_bonafide,
                   same_speaker_pairs, speakers_of, subsample)
from .families import ADVERSARIAL_INDEX, CLASSES
from .frontends import DEFAULT_FRONT_END, checkpoint_front_end, front_end_spec
from .ge2e import GE2ELoss
from .kd import KDConfig, kd_loss

AEG_MODES = ("none", "static", "active")


# -- configs -------------------------------------------------------------------------

@dataclass
class DataConfig:
    """Where the audio is and how much of it a run uses (``max_per_class`` = budget, None = all)."""

    bonafide_manifest: Path
    spoof_manifest: Path | None = None
    window_seconds: float = 4.0
    max_per_class: int | None = None
    seed: int = 0

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * SAMPLE_RATE))


@dataclass
class PretrainConfig:
    """GE2E pre-training (paper: N = 7 speakers x M = 10 utterances per batch)."""

    bonafide_manifest: Path
    out: Path
    architecture: str = "resnetse_teacher"
    speakers: int = 7
    utterances: int = 10
    crop_seconds: float = 2.0
    steps: int = 500
    lr: float = 1e-3
    max_speakers: int | None = None
    seed: int = 0
    front_end: str = DEFAULT_FRONT_END
    """A name of :data:`training.resnetse.frontends.FRONT_ENDS`; later stages must keep it."""

    def __post_init__(self) -> None:
        front_end_spec(self.front_end)


@dataclass
class ClassifierStageConfig:
    """What fine-tuning and distillation share: data, output, AEG and the Adam schedule."""

    data: DataConfig
    out: Path
    aeg: str = "none"
    adversarial_pairs: int = 64
    """Same-speaker pairs attacked per generation (kept ones depend on the threshold)."""
    bim: BIMConfig = field(default_factory=BIMConfig)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 3e-4
    lr_decay: float = 0.95
    decay_every: int = 2
    augment: bool = True
    class_weighting: bool = True
    """Weight the NLL by inverse class frequency (bona fide clips far outnumber each family)."""
    front_end: str = DEFAULT_FRONT_END
    """A name of :data:`training.resnetse.frontends.FRONT_ENDS` (``init`` and ``teacher`` must share it)."""

    static_field: ClassVar[str] = ""
    """Name of the field holding the GE2E checkpoint that attacks once for ``static`` AEG."""

    def __post_init__(self) -> None:
        front_end_spec(self.front_end)
        if self.aeg not in AEG_MODES:
            raise DataError(f"aeg must be one of {AEG_MODES}, got {self.aeg!r}")
        if self.aeg == "static" and getattr(self, self.static_field, None) is None:
            raise DataError(f"static AEG needs the GE2E checkpoint ({self.static_field or 'a stage config'}) "
                            "that generates the examples",
                            hint="use FinetuneConfig (init) or DistillConfig (static_from)")


@dataclass
class FinetuneConfig(ClassifierStageConfig):
    """Adversarial fine-tuning of the teacher (or NLL-only training when ``init`` is None)."""

    init: Path | None = None
    """GE2E checkpoint to start from; also the attacker of ``static`` AEG."""
    architecture: str = "resnetse_teacher"

    static_field: ClassVar[str] = "init"


@dataclass
class DistillConfig(ClassifierStageConfig):
    """Student training, with (``use_kd``) or without the teacher's soft targets."""

    teacher: Path | None = None
    static_from: Path | None = None
    """GE2E checkpoint that attacks once for ``static`` AEG."""
    architecture: str = "resnetse_student"
    use_kd: bool = True
    kd: KDConfig = field(default_factory=KDConfig)

    static_field: ClassVar[str] = "static_from"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.use_kd and self.teacher is None:
            raise DataError("distillation with KD needs the fine-tuned teacher checkpoint")


# -- checkpoints ---------------------------------------------------------------------

def save_checkpoint(path: Path, model: nn.Module, architecture: str, stage: str, history: list[dict],
                    extra: dict | None = None, front_end: str = DEFAULT_FRONT_END) -> Path:
    """Write a stage checkpoint; its front end (name and full spec) goes into ``extra``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {**(extra or {}), "front_end": front_end, "feature_spec": front_end_spec(front_end).to_dict()}
    torch.save({"architecture": architecture, "stage": stage, "classes": list(CLASSES),
                "state_dict": model.state_dict(), "history": history, "extra": extra}, path)
    return path


def build_model(architecture: str, spec: FeatureSpec) -> nn.Module:
    """A fresh ResNetSE whose frequency size matches the front end's bins."""
    return registry.build(architecture, n_mels=spec.n_bins)


def load_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """The model of a checkpoint (eval mode) and the checkpoint dict."""
    path = Path(path)
    if path.is_dir() or path.name == "bundle.json":
        raise DataError("ResNetSE stages start from a stage checkpoint (.pt), not a bundle", path=path,
                        hint="pass the pretrain/finetune/distill output, e.g. runs/student.pt")
    if not path.is_file():
        raise DataError("checkpoint not found", path=path, hint="run the previous stage first or fix the path")
    return model_from_stage_checkpoint(read_checkpoint(path), path)


def model_from_stage_checkpoint(ckpt: dict, path: Path) -> tuple[nn.Module, dict]:
    """:func:`load_checkpoint` of a stage checkpoint dict already read from ``path``."""
    missing = [k for k in ("architecture", "state_dict") if k not in ckpt]
    if missing:
        raise DataError(f"not a ResNetSE stage checkpoint (lacks {missing})", path=path,
                        hint="pass a checkpoint written by edge-cm-train resnetse pretrain/finetune/distill")
    model = build_model(ckpt["architecture"], checkpoint_front_end(ckpt)[1])
    load_weights(model, ckpt["state_dict"], path)
    model.eval()
    return model, ckpt


# -- pieces shared by the stages ------------------------------------------------------

class Scorer(nn.Module):
    """Front end + model: waves (B, samples) -> logits; ``embed`` -> embeddings (for attacks)."""

    def __init__(self, model: nn.Module, spec: FeatureSpec | None = None):
        super().__init__()
        self.spec = spec or resnetse_spec()
        self.frontend = TorchFrontEnd(self.spec)
        self.model = model

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.model(self.frontend(wave))

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        return self.model.embed(self.frontend(wave))


def load_scorer(path: Path) -> tuple[Scorer, dict]:
    """A checkpoint's model behind the front end it was trained on (eval mode), and the checkpoint dict."""
    model, ckpt = load_checkpoint(path)
    return Scorer(model, checkpoint_front_end(ckpt)[1]).eval(), ckpt


def _augmenter(enabled: bool):
    """Noise (white/pink/brown, 5-20 dB SNR) and simulated room reverberation, each with probability 0.3."""
    if not enabled:
        return None
    from training.augment import AddNoise, RandomAugment, RoomReverb, Step

    return RandomAugment([Step(AddNoise(), 0.3), Step(RoomReverb(), 0.3)])


def generate_adversarial(scorer: Scorer, groups: dict[str, list[Clip]], n_pairs: int, n_samples: int,
                         audio: AudioCache, config: BIMConfig, rng: np.random.Generator,
                         batch_size: int = 8) -> tuple[np.ndarray, dict]:
    """BIM speaker attack on ``n_pairs`` same-speaker pairs; returns the kept waves and counts."""
    pairs = same_speaker_pairs(groups, n_pairs, rng)
    kept, sims = [], []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        w1 = torch.from_numpy(np.stack([crop(audio(a.path), n_samples, rng) for a, _ in chunk]))
        w2 = torch.from_numpy(np.stack([crop(audio(b.path), n_samples, rng) for _, b in chunk]))
        attack = speaker_adversarial(scorer.embed, w1, w2, config, modules=(scorer,))
        kept.append(attack.kept.numpy())
        sims.append(attack.similarity.numpy())
    waves = np.concatenate(kept) if kept else np.zeros((0, n_samples), np.float32)
    sim = np.concatenate(sims) if sims else np.zeros(0)
    return waves, {"pairs": len(pairs), "kept": int(waves.shape[0]),
                   "mean_final_similarity": float(sim.mean()) if sim.size else float("nan")}


def _epoch_items(clips: list[Clip], adversarial: np.ndarray, n_samples: int, audio: AudioCache,
                 rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """This epoch's waves (a fresh random crop of each clip, then the adversarial waves), labels, is_adv."""
    waves = [crop(audio(c.path), n_samples, rng) for c in clips] + list(adversarial)
    labels = np.array([c.label for c in clips] + [ADVERSARIAL_INDEX] * len(adversarial), dtype=np.int64)
    is_adv = np.array([False] * len(clips) + [True] * len(adversarial))
    return waves, labels, is_adv


def _batches(waves: list[np.ndarray], labels: np.ndarray, is_adv: np.ndarray, batch_size: int, augment,
             rng: np.random.Generator):
    order = rng.permutation(len(waves))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = []
        for i in idx:
            w = waves[i]
            if augment is not None and not is_adv[i]:
                w, _ = augment(w, rng)
            batch.append(np.asarray(w, dtype=np.float32))
        yield torch.from_numpy(np.stack(batch)), torch.from_numpy(labels[idx])


def _log(msg: str) -> None:
    print(f"[resnetse {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _training_clips(data: DataConfig, rng: np.random.Generator) -> tuple[list[Clip], dict[str, list[Clip]]]:
    """Training clips (budgeted) and the speaker groups adversarial pairs are drawn from.

    Pairs come from the same bona fide clips as class 0 (all of them, not the budget),
    so adversarial examples differ from bona fide by the perturbation only. Without any
    speaker label there, each clip is its own group: two crops of one recording are
    surely one speaker.
    """
    bona, spoofs = classification_clips(data.bonafide_manifest, data.spoof_manifest, ("train",))
    clips = subsample(bona + spoofs, data.max_per_class, rng)
    groups = speakers_of(bona) or {f"clip:{c.path}": [c] for c in bona}
    return clips, groups


# -- stage 1: GE2E ---------------------------------------------------------------------

def pretrain(config: PretrainConfig) -> Path:
    """GE2E pre-training; saves the checkpoint to ``config.out`` and returns its path."""
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    groups = speakers_of(read_bonafide(config.bonafide_manifest, ("train",)))
    if config.max_speakers is not None:
        names = sorted(groups)[: config.max_speakers]
        groups = {k: groups[k] for k in names}
    spec = front_end_spec(config.front_end)
    model = build_model(config.architecture, spec)
    scorer = Scorer(model, spec)
    loss_fn = GE2ELoss()
    optimizer = torch.optim.Adam(list(model.parameters()) + list(loss_fn.parameters()), lr=config.lr)
    audio = AudioCache()
    n_samples = int(round(config.crop_seconds * SAMPLE_RATE))
    history = []
    t0 = time.perf_counter()
    scorer.train()
    for step in range(1, config.steps + 1):
        waves = ge2e_batch(groups, config.speakers, config.utterances, n_samples, audio, rng)
        emb = scorer.embed(torch.from_numpy(waves)).reshape(config.speakers, config.utterances, -1)
        loss = loss_fn(emb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append({"step": step, "loss": loss.item(), "w": loss_fn.w.item(),
                        "b": loss_fn.b.item()})
        if step == 1 or step % 10 == 0 or step == config.steps:
            _log(f"ge2e step {step}/{config.steps} loss {loss.item():.4f} w {loss_fn.w.item():.3f} "
                 f"b {loss_fn.b.item():.3f} ({time.perf_counter() - t0:.0f} s)")
    return save_checkpoint(config.out, model, config.architecture, "ge2e", history,
                           {"config": _jsonable(asdict(config)), "speakers": len(groups),
                            "seconds": time.perf_counter() - t0}, front_end=config.front_end)


# -- stages 2 and 3: classification training --------------------------------------------

def _train_classifier(model: nn.Module, architecture: str, stage: str, config: ClassifierStageConfig, *,
                      static_attacker: Scorer | None, teacher: Scorer | None, kd: KDConfig | None) -> Path:
    from training.train import inverse_frequency_weights

    data, out, aeg, bim, epochs = config.data, config.out, config.aeg, config.bim, config.epochs
    adversarial_pairs, batch_size = config.adversarial_pairs, config.batch_size
    rng = np.random.default_rng(data.seed)
    torch.manual_seed(data.seed)
    clips, groups = _training_clips(data, rng)
    if not clips:
        raise DataError("no training clips", path=data.bonafide_manifest)
    audio = AudioCache()
    n = data.window_samples
    scorer = Scorer(model, front_end_spec(config.front_end))
    teacher_scorer = teacher.eval() if teacher is not None else None
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.decay_every, gamma=config.lr_decay)
    augmenter = _augmenter(config.augment)
    adversarial = np.zeros((0, n), np.float32)
    history: list[dict] = []
    t0 = time.perf_counter()
    if aeg == "static":
        adversarial, info = generate_adversarial(static_attacker, groups, adversarial_pairs, n, audio, bim, rng)
        _log(f"{stage}: static AEG kept {info['kept']}/{info['pairs']} "
             f"(mean final cos {info['mean_final_similarity']:.3f})")
    for epoch in range(1, epochs + 1):
        te = time.perf_counter()
        aeg_info = {}
        if aeg == "active":
            adversarial, aeg_info = generate_adversarial(scorer, groups, adversarial_pairs, n, audio, bim, rng)
            _log(f"{stage} epoch {epoch}: active AEG kept {aeg_info['kept']}/{aeg_info['pairs']} "
                 f"(mean final cos {aeg_info['mean_final_similarity']:.3f})")
        waves, labels, is_adv = _epoch_items(clips, adversarial, n, audio, rng)
        weight = inverse_frequency_weights(labels, len(CLASSES)) if config.class_weighting else None
        scorer.train()
        total, correct, seen = 0.0, 0, 0
        for x, y in _batches(waves, labels, is_adv, batch_size, augmenter, rng):
            feats = scorer.frontend(x)
            logits = model(feats)
            if teacher_scorer is not None and kd is not None:
                with torch.no_grad():
                    teacher_logits = teacher_scorer.model(feats)
                loss = kd_loss(logits, teacher_logits, y, kd, weight=weight)
            else:
                loss = F.cross_entropy(logits, y, weight=weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            correct += int((logits.argmax(-1) == y).sum())
            seen += len(y)
        scheduler.step()
        row = {"epoch": epoch, "loss": total / max(seen, 1), "accuracy": correct / max(seen, 1),
               "items": seen, "adversarial": int(adversarial.shape[0]), "lr": optimizer.param_groups[0]["lr"],
               "seconds": time.perf_counter() - te, **{f"aeg_{k}": v for k, v in aeg_info.items()}}
        history.append(row)
        _log(f"{stage} epoch {epoch}/{epochs} loss {row['loss']:.4f} acc {row['accuracy']:.3f} "
             f"items {seen} (adversarial {row['adversarial']}) {row['seconds']:.0f} s")
    extra = {"config": _jsonable(asdict(config)), "seconds": time.perf_counter() - t0, "train_clips": len(clips)}
    return save_checkpoint(out, model, architecture, stage, history, extra, front_end=config.front_end)


def _fresh_model(config: FinetuneConfig | DistillConfig) -> nn.Module:
    # Seeded here, not only in the loop: otherwise the initial weights depend on whatever the
    # process drew before (an ablation's GE2E stage, say), and one config gives different runs.
    torch.manual_seed(config.data.seed)
    return build_model(config.architecture, front_end_spec(config.front_end))


def _same_front_end(scorer: Scorer, config: ClassifierStageConfig, path: Path, role: str) -> Scorer:
    if scorer.spec != front_end_spec(config.front_end):
        raise DataError(f"the {role} was trained on another front end than {config.front_end!r}", path=path,
                        hint=f"pass the front end the {role} was trained on (see its checkpoint's extra)")
    return scorer


def finetune(config: FinetuneConfig) -> Path:
    """Whole-network 8-class fine-tuning (from the GE2E checkpoint when ``init`` is set)."""
    model = _fresh_model(config)
    attacker = None
    if config.init is not None:
        attacker, ckpt = load_scorer(config.init)
        if ckpt["architecture"] != config.architecture:
            raise DataError(f"checkpoint is a {ckpt['architecture']}, not a {config.architecture}", path=config.init)
        _same_front_end(attacker, config, config.init, "GE2E checkpoint")
        model.load_state_dict(attacker.model.state_dict())
        # The classifier head is new: GE2E never trained it, so it keeps its random init.
    return _train_classifier(model, config.architecture, "finetune", config, static_attacker=attacker, teacher=None,
                             kd=None)


def distill(config: DistillConfig) -> Path:
    """Train the student, with the teacher's soft targets when ``use_kd``."""
    model = _fresh_model(config)
    # KD feeds one feature batch to both networks, so the teacher must share the student's front end;
    # the static attacker only makes waveforms and may have any.
    teacher = (_same_front_end(load_scorer(config.teacher)[0], config, config.teacher, "teacher")
               if config.use_kd else None)
    attacker = load_scorer(config.static_from)[0] if config.aeg == "static" else None
    return _train_classifier(model, config.architecture, "distill", config, static_attacker=attacker,
                             teacher=teacher, kd=config.kd if config.use_kd else None)


# -- evaluation ------------------------------------------------------------------------------

def equal_error_rate(bonafide: np.ndarray, spoof: np.ndarray) -> float:
    """EER (fraction) of spoof scores where higher = more likely spoof (edge_cm.metrics, sign flipped)."""
    from edge_cm.metrics import compute_eer

    return compute_eer(-np.asarray(bonafide, np.float64), -np.asarray(spoof, np.float64))[0]


@dataclass
class EvalResult:
    """Pooled EERs (fractions) and, per spoofing system, each system's spoofs against all bona fide clips."""

    eer: float
    eer_bim: float | None
    n_bonafide: int
    n_spoof: int
    seconds: float
    per_system: dict[str, dict] = field(default_factory=dict)
    """system -> {"eer", "eer_bim" (None without ``robust``), "n" (spoof windows)}."""


def per_system_eers(bona_scores: np.ndarray, spoof_scores: np.ndarray, systems: list[str],
                    perturbed_scores: np.ndarray | None = None) -> dict[str, dict]:
    """Each system's EER against every bona fide score, in sorted system order."""
    systems_arr = np.asarray(systems)
    out = {}
    for name in sorted(set(systems)):
        mask = systems_arr == name
        out[name] = {"eer": equal_error_rate(bona_scores, spoof_scores[mask]),
                     "eer_bim": None if perturbed_scores is None
                     else equal_error_rate(bona_scores, perturbed_scores[mask]),
                     "n": int(mask.sum())}
    return out


def _scores(scorer: Scorer, waves: np.ndarray, batch_size: int = 8) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(waves), batch_size):
            out.append(spoof_score(scorer(torch.from_numpy(waves[start:start + batch_size]))).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def evaluate(model: nn.Module, data: DataConfig, split: str = "test", max_per_class: int | None = None,
             robust: bool = True, bim: BIMConfig = BIMConfig(), batch_size: int = 8,
             spec: FeatureSpec | None = None) -> EvalResult:
    """EER on ``split`` (first window of each clip) with the model behind ``spec`` (default: front end (b));
    ``robust`` adds the EER when every spoof is BIM-perturbed against this model to lower its spoof score
    (bona fide left as is)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(data.seed + 1)
    bona, spoofs = classification_clips(data.bonafide_manifest, data.spoof_manifest, (split,))
    clips = subsample(bona + spoofs, max_per_class, rng)
    audio = AudioCache()
    n = data.window_samples
    scorer = Scorer(copy.deepcopy(model), spec).eval()
    bona_clips = [c for c in clips if c.label == 0]
    if not bona_clips:
        raise DataError(f"no bona fide clips in split {split!r}", path=data.bonafide_manifest,
                        hint="the manifests' splits are train, dev and test")
    bona_w = np.stack([crop(audio(c.path), n, None) for c in bona_clips])
    spoof_clips = [c for c in clips if c.label != 0]
    if not spoof_clips:
        raise DataError(f"no spoofed clips in split {split!r}", path=data.spoof_manifest,
                        hint="pass a spoof manifest with that split")
    spoof_w = np.stack([crop(audio(c.path), n, None) for c in spoof_clips])
    bona_s, spoof_s = _scores(scorer, bona_w, batch_size), _scores(scorer, spoof_w, batch_size)
    eer_bim, perturbed_s = None, None
    if robust:
        perturbed = np.concatenate([
            evasion_adversarial(scorer, torch.from_numpy(spoof_w[s:s + batch_size]), bim, modules=(scorer,)).numpy()
            for s in range(0, len(spoof_w), batch_size)])
        perturbed_s = _scores(scorer, perturbed, batch_size)
        eer_bim = equal_error_rate(bona_s, perturbed_s)
    return EvalResult(eer=equal_error_rate(bona_s, spoof_s), eer_bim=eer_bim, n_bonafide=len(bona_w),
                      n_spoof=len(spoof_w), seconds=time.perf_counter() - t0,
                      per_system=per_system_eers(bona_s, spoof_s, [c.system for c in spoof_clips], perturbed_s))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
