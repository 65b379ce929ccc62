"""Typed training configuration, read from YAML or JSON and copied into every run folder.

Relative paths in a config file are taken relative to that file, so a config and its
manifest can move together. Unknown keys are errors (a typo must not silently fall back
to a default).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from edge_cm.errors import DataError

CLASSES = ("bonafide", "spoof")
NOISE_KINDS = ("white", "pink", "brown", "babble")
"""Noise kinds a config may name (``training.augment.NOISE_KINDS`` without recorded noise, which needs files)."""
LR_SCHEDULES = ("plateau", "cosine")
CLASS_WEIGHTINGS = ("inverse_frequency", "none", "family_balanced")


@dataclass(frozen=True)
class AugmentConfig:
    """On-the-fly augmentation of training windows (see :mod:`training.augment`).

    Each probability is the chance, per training window, that the transform runs.
    """

    noise_prob: float = 0.0
    """Added noise (``AddNoise``) of one of ``noise_kinds`` at an SNR (dB) drawn from ``noise_snr_db``."""
    noise_snr_db: tuple[float, float] = (5.0, 20.0)
    noise_kinds: tuple[str, ...] = ("white", "pink", "brown")
    """Drawn uniformly per window from white, pink, brown and babble. Babble mixes 3-6 train-split
    bona fide clips of speakers that the channel benchmark's babble does not use (``training.babble``)."""
    babble_clips: int = 200
    """At most this many clips make up the training babble (read once, before training)."""
    reverb_prob: float = 0.0
    """Simulated room reverberation (``RoomReverb``), RT60 (s) drawn from ``reverb_rt60_s``."""
    reverb_rt60_s: tuple[float, float] = (0.2, 0.8)
    codec_prob: float = 0.0
    """A lossy codec round trip through ffmpeg (``CodecAugment``), one of ``codecs`` (all if empty)."""
    codecs: tuple[str, ...] = ()
    rawboost_prob: float = 0.0
    """A RawBoost channel distortion (``RawBoost``) of kind ``rawboost_mode``: lnl, isd, ssi or lnl+isd."""
    rawboost_mode: str = "lnl+isd"
    lowpass_prob: float = 0.0
    """An ideal low-pass (``LowPass``) at a cut-off (Hz) drawn from ``lowpass_hz``: a narrower channel."""
    lowpass_hz: tuple[float, float] = (3400.0, 7000.0)
    speed_prob: float = 0.0
    """A speed change by resampling (``SpeedChange``), the factor drawn log-uniformly from ``speed_factor``:
    duration, pitch and every spectral trace move together (> 1 is faster, higher and shorter)."""
    speed_factor: tuple[float, float] = (0.9, 1.1)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.noise_kinds) - set(NOISE_KINDS))
        if not self.noise_kinds or unknown:
            raise DataError(f"augment: noise_kinds {unknown or 'empty'} not recognised",
                            hint=f"use some of {', '.join(NOISE_KINDS)}")
        if self.babble_clips < 1:
            raise DataError(f"augment: babble_clips must be at least 1, got {self.babble_clips}")
        from training.augment._common import check_range
        from training.augment.speed import MAX_FACTOR, MIN_FACTOR

        if not isinstance(self.speed_factor, (tuple, list)):  # a fixed factor would change every window alike
            raise DataError(f"augment: speed_factor {self.speed_factor!r} is not a range",
                            hint=f"give [low, high] inside [{MIN_FACTOR}, {MAX_FACTOR}], e.g. [0.9, 1.1]")
        check_range("augment: speed_factor", self.speed_factor, MIN_FACTOR, MAX_FACTOR)

    @property
    def needs_babble(self) -> bool:
        """Whether :meth:`build` needs babble speech."""
        return self.noise_prob > 0 and "babble" in self.noise_kinds

    @property
    def enabled(self) -> bool:
        return (self.noise_prob > 0 or self.reverb_prob > 0 or self.codec_prob > 0 or self.rawboost_prob > 0
                or self.lowpass_prob > 0 or self.speed_prob > 0)

    def build(self, babble_speech: tuple = ()):
        """The ``training.augment.RandomAugment`` chain, or None when every probability is 0.

        ``babble_speech``: 16 kHz float32 clips, needed when :attr:`needs_babble`."""
        if not self.enabled:
            return None
        from training import augment as aug

        steps = []
        if self.speed_prob > 0:  # the talker's speed, before the room and the channel act on it
            steps.append(aug.Step(aug.SpeedChange(factor=tuple(self.speed_factor)), self.speed_prob))
        if self.noise_prob > 0:
            noise = aug.AddNoise(snr_db=tuple(self.noise_snr_db), kinds=tuple(self.noise_kinds),
                                 babble_speech=tuple(babble_speech) if self.needs_babble else ())
            steps.append(aug.Step(noise, self.noise_prob))
        if self.reverb_prob > 0:
            steps.append(aug.Step(aug.RoomReverb(rt60_s=tuple(self.reverb_rt60_s)), self.reverb_prob))
        if self.rawboost_prob > 0:  # the device/channel after the room, before any codec
            steps.append(aug.Step(aug.RawBoost(mode=self.rawboost_mode), self.rawboost_prob))
        if self.lowpass_prob > 0:  # the channel's band, before any codec
            steps.append(aug.Step(aug.LowPass(cutoff_hz=tuple(self.lowpass_hz)), self.lowpass_prob))
        if self.codec_prob > 0:
            codec = aug.CodecAugment(choices=tuple(self.codecs)) if self.codecs else aug.CodecAugment()
            steps.append(aug.Step(codec, self.codec_prob))
        return aug.RandomAugment(steps)


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Durations in seconds, rates in Hz."""

    architecture: str
    """A name from ``training.models.registry`` (``edge-cm-train describe`` lists them)."""
    manifest: str
    """CSV with path, label (bonafide/spoof), system, split; see training/dataset.py."""
    train_split: str = "train"
    val_split: str = "dev"
    model_args: dict = field(default_factory=dict)
    """Extra keyword arguments for the architecture's builder."""
    window_seconds: float = 4.0
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "plateau"
    """``plateau``: the lr is multiplied by ``lr_factor`` when the validation loss has not improved for
    ``lr_patience`` epochs. ``cosine``: epoch ``e`` (0-based) trains at
    ``min_lr + (lr - min_lr) * (1 + cos(pi * e / max_epochs)) / 2``, whatever the validation loss,
    so every run anneals fully within its ``max_epochs`` (continuing a run with a larger
    ``--max-epochs`` stretches the rest of the curve)."""
    lr_factor: float = 0.5
    """ReduceLROnPlateau factor on the validation loss."""
    lr_patience: int = 1
    """Epochs without improvement of the validation loss before the lr is cut."""
    lr_hold_epochs: int = 0
    """Plateau schedule: the first this many epochs train at ``lr`` whatever the validation loss; the plateau
    rule starts after them (0 = from the first epoch). Why: with ``lr_patience`` 2 a noisy validation loss
    can halve the rate as early as after epoch 4, and runs of the default's recipe whose first halving came
    early ended with higher validation losses (``benchmarks/lr_halving.py``)."""
    min_lr: float = 1e-5
    """Training stops once the learning rate falls below this (plateau); the cosine schedule's floor."""
    max_epochs: int = 50
    max_steps_per_epoch: int = 0
    """0 = a full pass over the training set per epoch."""
    class_weighting: str = "inverse_frequency"
    """``inverse_frequency``, ``none``, or ``family_balanced``: inverse frequency, and within the spoof
    class each spoofing family (the manifest's ``family``) weighs the same, whatever its number of clips."""
    family_power: float = 1.0
    """With ``family_balanced``: a family of ``n`` spoof clips gets a share of the spoof class proportional to
    ``n ** (1 - family_power)``: 1 = equal shares, 0.5 = milder (square root of its clip count), 0 = none."""
    system_tilt: float = 0.0
    """0 = off; otherwise ``tau`` in nats of :mod:`training.system_tilt`: each training spoofing system's
    examples weigh ``exp(L / tau)`` (``L`` its recent cross-entropy), normalised so the spoof class keeps its
    total weight; group DRO with a KL penalty. Not with ``family_balanced`` (it replaces those weights)."""
    system_tilt_decay: float = 0.99
    """Per-appearance decay of each system's loss average under ``system_tilt``."""
    source_loss_weight: float = 1.0
    """Weight of the source cross-entropy of multi-task models (the paper sums them: 1)."""
    num_workers: int = 2
    seed: int = 0
    norm_stats_windows: int = 512
    """Training windows sampled for the global per-bin mean/std (front ends that need them)."""
    level_norm: bool = False
    """Level-normalised front end: every window's log features shifted to the training windows' median
    level (``FeatureSpec.level_dbfs``, :mod:`training.level`), so the model does not depend on input gain."""
    max_train_files: int = 0
    """0 = all; otherwise a deterministic subset (quick runs, tests)."""
    exclude_systems: list = field(default_factory=list)
    """Spoofing systems whose rows are dropped from the training split before anything else (their
    clips, their source class, their share of the normalisation statistics); validation keeps its own.
    Each name must be a spoofing system of the training split."""
    max_val_files: int = 0
    precise_bn_batches: int = 16
    """Training batches over which BatchNorm statistics are recomputed exactly before each
    validation (0 = keep the running averages)."""
    ema_decay: float = 0.0
    """Per-step decay of an exponential moving average of the weights that is validated and saved
    as best.pt (0 = off; e.g. 0.998 averages over about 500 steps). See training/weight_average.py."""
    sam_rho: float = 0.0
    """Sharpness-aware minimisation radius (0 = off; see training/sharpness.py): each step takes the
    gradient at weights moved ``sam_rho`` uphill, at twice the cost per step. SAM: about 0.05."""
    sam_adaptive: bool = False
    """ASAM: scale the move per weight by its magnitude (then ``sam_rho`` about 0.5)."""
    mixup_alpha: float = 0.0
    """Mixup of training batches (0 = off; see training/mixup.py): Beta(alpha, alpha) mixing weights,
    e.g. 0.4."""
    checkpoint_every_steps: int = 0
    """Also write last.pt every N optimiser steps (0 = only at the end of each epoch)."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    paired_copies: bool = False
    """Train each copy-synthesis spoof beside its bona fide source: same crop, same augmentation,
    same batch (see :mod:`training.dataset`). Needs a corpus built by ``edge-cm-train corpus build``."""
    teachers: list = field(default_factory=list)
    """Checkpoints or bundle folders (with training weights) whose mean logits the model is also
    trained to match (knowledge distillation, see :mod:`training.distill`); empty = off. Paths, so
    usually given on the command line (``--teacher``) rather than in a shipped config."""
    kd_weight: float = 0.5
    """gamma: the loss is gamma x T^2 x KL(teachers || model) + (1 - gamma) x the label loss."""
    kd_temperature: float = 5.0
    """T, the softmax temperature of the distillation term."""
    init_from: str = ""
    """A checkpoint or a bundle folder with training weights that the run starts from (fine-tuning): its
    weights, front end (normalisation statistics and level included, not recomputed) and source classes.
    Empty = random initialisation. Its architecture must be the config's. A path, so usually given on the
    command line (``--init-from``)."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_epochs < 1:
            raise DataError("batch_size and max_epochs must be >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise DataError(f"lr must be a positive number, got {self.lr}", hint="the recipes use lr: 0.001")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise DataError(f"weight_decay must be a number >= 0, got {self.weight_decay}",
                            hint="0 (the default) for none; spec_mel_cnn_mt_freqmask_wd.yaml uses 1.0e-04")
        if not 0 < self.lr_factor < 1:
            raise DataError(f"lr_factor must be in (0, 1), got {self.lr_factor}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise DataError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        hold = self.lr_hold_epochs
        if isinstance(hold, bool) or not isinstance(hold, (int, float)) or not math.isfinite(hold) \
                or hold != int(hold) or hold < 0:
            raise DataError(f"lr_hold_epochs must be a whole number >= 0, got {self.lr_hold_epochs}",
                            hint="0 (the default) lets the plateau rule act from the first epoch")
        if self.lr_hold_epochs and self.lr_schedule != "plateau":
            raise DataError("lr_hold_epochs only applies to lr_schedule: plateau",
                            hint="drop lr_hold_epochs, or use the plateau schedule")
        if self.lr_schedule == "cosine" and not 0 <= self.min_lr < self.lr:
            raise DataError(f"a cosine schedule anneals from lr to min_lr: need 0 <= min_lr < lr, got "
                            f"min_lr {self.min_lr} and lr {self.lr}", hint="e.g. lr: 0.001, min_lr: 1.0e-05")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise DataError(f"class_weighting must be one of {CLASS_WEIGHTINGS}, got {self.class_weighting!r}")
        if not (math.isfinite(self.family_power) and 0.0 <= self.family_power <= 1.0):
            raise DataError(f"family_power must be in [0, 1], got {self.family_power}",
                            hint="1 gives every spoofing family the same share; 0.5 is milder")
        if self.family_power != 1.0 and self.class_weighting != "family_balanced":
            raise DataError("family_power only applies with class_weighting: family_balanced",
                            hint="set class_weighting: family_balanced, or drop family_power")
        if not (math.isfinite(self.system_tilt) and self.system_tilt >= 0):
            raise DataError(f"system_tilt must be a number >= 0 (0 = off), got {self.system_tilt}",
                            hint="a temperature in nats; spec_mel_cnn_mt_freqmask_tilt.yaml uses 1.0")
        if not 0.0 <= self.system_tilt_decay < 1.0:
            raise DataError(f"system_tilt_decay must be in [0, 1), got {self.system_tilt_decay}", hint="e.g. 0.99")
        if self.system_tilt > 0 and self.class_weighting != "inverse_frequency":
            raise DataError(f"system_tilt sets the weights of spoofing systems itself; it cannot be combined with "
                            f"class_weighting: {self.class_weighting}", hint="set class_weighting: inverse_frequency")
        if self.system_tilt > 0 and self.sam_rho > 0:
            raise DataError("system_tilt and sam_rho cannot be combined: SAM's two passes would count each batch's "
                            "losses twice", hint="set sam_rho: 0 for a tilted run")
        if not 0.0 <= self.ema_decay < 1.0:
            raise DataError(f"ema_decay must be in [0, 1), got {self.ema_decay}", hint="0 turns it off; try 0.998")
        if self.ema_decay > 0 and self.precise_bn_batches <= 0:
            raise DataError("ema_decay needs precise_bn_batches > 0",
                            hint="BatchNorm statistics must be recomputed for the averaged weights")
        if not math.isfinite(self.sam_rho) or self.sam_rho < 0 or (self.sam_adaptive and self.sam_rho == 0):
            raise DataError(f"sam_rho must be >= 0 (0 = off), and > 0 when sam_adaptive is set; got {self.sam_rho}",
                            hint="SAM: sam_rho 0.05; ASAM: sam_adaptive true with sam_rho 0.5")
        if not math.isfinite(self.mixup_alpha) or self.mixup_alpha < 0:
            raise DataError(f"mixup_alpha must be >= 0 (0 = off), got {self.mixup_alpha}", hint="try 0.4")
        if self.mixup_alpha > 0 and self.teachers:
            raise DataError("mixup_alpha and teachers cannot be combined: the teachers would score the unmixed batch",
                            hint="set mixup_alpha: 0 for a distillation run")
        if self.window_seconds <= 0:
            raise DataError(f"window_seconds must be positive, got {self.window_seconds}")
        if not 0.0 <= self.kd_weight <= 1.0 or self.kd_temperature <= 0:
            raise DataError(f"kd_weight must be in [0, 1] and kd_temperature > 0, got {self.kd_weight} and "
                            f"{self.kd_temperature}", hint="the paper's values are kd_weight 0.5, kd_temperature 5")
        if isinstance(self.teachers, (str, Path)):
            raise DataError("teachers must be a list of paths", hint="teachers: [runs/a/best.pt, bundles/b]")
        if isinstance(self.exclude_systems, str):
            raise DataError("exclude_systems must be a list of system names", hint="exclude_systems: [voc_griffinlim]")
        if not isinstance(self.init_from, (str, Path)):
            raise DataError("init_from must be one path", hint="init_from: runs/a/best.pt, or a bundle folder")
        object.__setattr__(self, "init_from", str(self.init_from))
        object.__setattr__(self, "teachers", [str(t) for t in self.teachers])  # frozen: normalise once
        object.__setattr__(self, "exclude_systems", [str(x) for x in self.exclude_systems])

    # -- (de)serialisation -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["augment"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["augment"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str | Path = "<config>") -> TrainConfig:
        if not isinstance(d, dict):
            raise DataError("a config must be a mapping of keys to values", path=source)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(f"unknown config key(s) {unknown}", path=source,
                            hint=f"known keys: {', '.join(sorted(known))}")
        for key in ("architecture", "manifest"):
            if key not in d:
                raise DataError(f"config misses required key {key!r}", path=source)
        d = dict(d)
        aug = d.get("augment") or {}
        aug_known = {f.name for f in fields(AugmentConfig)}
        if not isinstance(aug, dict) or set(aug) - aug_known:
            raise DataError(f"augment: unknown key(s) {sorted(set(aug) - aug_known)}", path=source,
                            hint=f"known: {', '.join(sorted(aug_known))}")
        try:
            d["augment"] = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()})
        except DataError as exc:  # raised without the file: name it here
            raise DataError(str(exc), path=source) from exc
        try:
            return cls(**d)
        except TypeError as exc:
            raise DataError(f"bad config: {exc}", path=source) from exc

    def with_overrides(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)

    def save(self, path: str | Path) -> Path:
        """Write the config as YAML (or JSON when ``path`` ends in .json)."""
        path = Path(path)
        if path.suffix == ".json":
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        else:
            import yaml

            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        return path


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a YAML or JSON config; a relative ``manifest`` is resolved against the file's folder
    (against the working directory when it comes from ``overrides``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read config: {exc.strerror}", path=path) from exc
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (ValueError, Exception) as exc:  # yaml.YAMLError or json.JSONDecodeError
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        line = getattr(exc, "lineno", None) if line is None else line + 1
        where = f"{path}:{line}" if line else path
        raise DataError(f"cannot parse config: {exc}", path=where) from exc
    data = dict(data or {})
    overrides = {k: v for k, v in overrides.items() if v is not None}
    data.update(overrides)
    if not data.get("manifest"):
        raise DataError("no manifest: set `manifest` in the config or pass --manifest", path=path)
    if not Path(str(data["manifest"])).is_absolute():
        # An override comes from the command line, so it is relative to the working directory; made
        # absolute, the copy saved in the run folder still finds the corpus (``--resume``).
        base = Path.cwd() if "manifest" in overrides else path.parent
        data["manifest"] = str((base / str(data["manifest"])).resolve())
    return TrainConfig.from_dict(data, source=path)
