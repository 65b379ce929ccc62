"""The model bundle: the one deployable unit of edge-cm.

A bundle is a folder holding ``bundle.json`` and one or more model files
(``.onnx`` / ``.tflite``, float32 and/or int8). ``bundle.json`` records everything
the runtime needs to turn audio into a verdict - the :class:`FeatureSpec`, the
window, the tensors, the score convention, the threshold - and what a user needs
to trust it: training data, measured metrics, export gates, sha256 of each file.
A bundle made from a training checkpoint may also carry ``training_weights.npz``, a
torch-free copy of that checkpoint for fine-tuning (``edge-cm-train adapt --from
BUNDLE``); the runtime never reads it.

Score convention (everywhere in edge-cm): the model outputs logits over
``classes`` with ``classes[0] == "bonafide"``. The raw score is the spoof
log-odds ``logsumexp(logits[1:]) - logits[0]``; the reported ``score`` is the
calibrated probability ``sigmoid(scale * raw + bias)``. **Higher = more likely
spoof.** A window is ``spoof`` when ``score >= threshold``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError, BundleIntegrityError
from .features import FeatureSpec

BUNDLE_FILE = "bundle.json"
TRAINING_WEIGHTS_FILE = "training_weights.npz"
FORMAT_VERSION = 1
FORMATS = ("onnx", "tflite")
PRECISIONS = ("float32", "int8")


@dataclass
class TensorInfo:
    """A model input or output: name, shape, dtype, layout and int8 quantisation (real = scale * (q - zero_point))."""

    name: str
    shape: list[int]
    dtype: str = "float32"
    layout: str = ""
    scale: float | None = None
    zero_point: int | None = None

    @classmethod
    def from_dict(cls, d: dict) -> TensorInfo:
        return cls(name=d["name"], shape=[int(v) for v in d["shape"]], dtype=d.get("dtype", "float32"),
                   layout=d.get("layout", ""), scale=d.get("scale"), zero_point=d.get("zero_point"))


@dataclass
class ModelFile:
    """One model file of the bundle."""

    file: str
    format: str
    precision: str
    sha256: str
    size_bytes: int
    input: TensorInfo
    output: TensorInfo

    @classmethod
    def from_dict(cls, d: dict) -> ModelFile:
        return cls(file=d["file"], format=d["format"], precision=d["precision"], sha256=d["sha256"],
                   size_bytes=int(d.get("size_bytes", 0)), input=TensorInfo.from_dict(d["input"]),
                   output=TensorInfo.from_dict(d["output"]))


@dataclass
class BundleMeta:
    """Everything in ``bundle.json``."""

    name: str
    architecture: str
    feature_spec: FeatureSpec
    models: list[ModelFile]
    classes: list[str] = field(default_factory=lambda: ["bonafide", "spoof"])
    sample_rate: int = 16000
    window_samples: int = 64000
    default_hop_seconds: float = 2.0
    score_scale: float = 1.0
    score_bias: float = 0.0
    threshold: float = 0.5
    threshold_method: str = "default 0.5 (not calibrated)"
    untrained: bool = False
    format_version: int = FORMAT_VERSION
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    export_gates: dict[str, Any] = field(default_factory=dict)
    training_weights: dict[str, Any] = field(default_factory=dict)
    """``file``, ``sha256``, ``size_bytes`` of the training weights, or empty when the bundle has none."""
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["feature_spec"] = self.feature_spec.to_dict()
        d["score_convention"] = ("higher = more likely spoof; score = sigmoid(score_scale * "
                                 "(logsumexp(logits[1:]) - logits[0]) + score_bias); classes[0] is bonafide")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = BUNDLE_FILE) -> BundleMeta:
        try:
            version = int(d.get("format_version", -1))
            if version != FORMAT_VERSION:
                raise BundleError(f"bundle format_version {version} is not supported (this edge-cm reads "
                                  f"{FORMAT_VERSION})", path=source, hint="re-export the bundle with this edge-cm")
            known = set(cls.__dataclass_fields__)
            kwargs = {k: v for k, v in d.items() if k in known}
            kwargs["feature_spec"] = FeatureSpec.from_dict(d["feature_spec"])
            kwargs["models"] = [ModelFile.from_dict(m) for m in d["models"]]
            meta = cls(**kwargs)
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"malformed bundle metadata ({type(exc).__name__}: {exc})", path=source,
                              hint="re-export the bundle with edge-cm-export") from None
        if not meta.models:
            raise BundleError("bundle lists no model files", path=source)
        if not meta.classes or meta.classes[0] != "bonafide" or len(meta.classes) < 2:
            raise BundleError(f"classes must start with 'bonafide' and have at least 2 entries, got {meta.classes}",
                              path=source)
        for m in meta.models:
            if m.format not in FORMATS or m.precision not in PRECISIONS:
                raise BundleError(f"model {m.file}: unknown format/precision {m.format}/{m.precision}", path=source)
        check_bundle_threshold(meta.threshold, source=source)
        return meta


def check_bundle_threshold(threshold: Any, *, source: str | Path) -> None:
    """Raise :class:`BundleError` naming ``source`` unless ``threshold`` is a spoof probability in (0, 1].

    At 0 every window would be spoof; above 1 none could be.
    """
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value <= 1.0:  # also refuses NaN
        raise BundleError(f"threshold {threshold!r} is not a spoof probability in (0, 1]", path=source,
                          hint="re-export the bundle with a threshold in (0, 1]")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Bundle:
    """A bundle on disk: its folder and parsed metadata."""

    path: Path
    meta: BundleMeta

    def model_path(self, model: ModelFile) -> Path:
        return self.path / model.file

    def select(self, fmt: str | None = None, precision: str | None = None) -> list[ModelFile]:
        """Model files matching ``fmt`` and ``precision`` (None = any), float32 first."""
        found = [m for m in self.meta.models
                 if (fmt is None or m.format == fmt) and (precision is None or m.precision == precision)]
        return sorted(found, key=lambda m: (m.precision != "float32", m.format))

    def training_weights_path(self) -> Path:
        """The checked ``training_weights.npz`` of this bundle (for fine-tuning, not for inference)."""
        info = self.meta.training_weights
        if not info:
            raise BundleError("this bundle carries no training weights", path=self.path,
                              hint="fine-tune from the run's best.pt, or re-release the bundle from its checkpoint "
                                   "(edge-cm-train release / edge-cm-export --checkpoint)")
        if not isinstance(info, dict) or not isinstance(info.get("file"), str) or "sha256" not in info:
            raise BundleError(f"malformed training_weights entry in {BUNDLE_FILE}: {info!r}", path=self.path,
                              hint="re-export the bundle")
        f = self.path / info["file"]
        if not f.is_file():
            raise BundleIntegrityError(f"{info['file']} listed in {BUNDLE_FILE} is missing", path=self.path,
                                       hint="copy the whole bundle folder, or re-export it")
        digest = sha256_file(f)
        if digest != info["sha256"]:
            raise BundleIntegrityError(f"sha256 of {info['file']} is {digest[:12]}..., metadata says "
                                       f"{info['sha256'][:12]}...", path=self.path,
                                       hint="the file was changed or corrupted; re-export the bundle")
        return f


def load_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Read and check a bundle folder (or its ``bundle.json``).

    Verifies that every listed model file exists and matches its sha256.
    Tensor shapes are checked against the model when a backend opens it.
    """
    path = Path(path)
    if path.is_file() and path.name == BUNDLE_FILE:
        path = path.parent
    meta_path = path / BUNDLE_FILE
    if not path.exists():
        raise BundleError("bundle not found", path=path, hint="pass the folder that holds bundle.json")
    if not meta_path.is_file():
        raise BundleError(f"no {BUNDLE_FILE} in this folder", path=path,
                          hint="a bundle is a folder made by edge-cm-export")
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot parse metadata ({exc})", path=meta_path,
                          hint="the file is corrupt; re-export the bundle") from None
    if not isinstance(raw, dict):
        raise BundleError("metadata is not a JSON object", path=meta_path)
    meta = BundleMeta.from_dict(raw, source=str(meta_path))
    bundle = Bundle(path=path, meta=meta)
    if verify:
        for m in meta.models:
            f = bundle.model_path(m)
            if not f.is_file():
                raise BundleIntegrityError(f"model file {m.file} listed in {BUNDLE_FILE} is missing", path=path,
                                           hint="copy the whole bundle folder, or re-export it")
            digest = sha256_file(f)
            if digest != m.sha256:
                raise BundleIntegrityError(
                    f"sha256 of {m.file} is {digest[:12]}..., metadata says {m.sha256[:12]}...", path=path,
                    hint="the model file was changed or corrupted; re-export or re-download the bundle")
    return bundle


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_bundle(out_dir: str | Path, meta: BundleMeta, files: dict[str, str | Path], *,
                 overwrite: bool = False, training_weights: str | Path | None = None) -> Bundle:
    """Write a bundle atomically: model files copied in, sha256 and sizes filled in, then renamed into place.

    ``files`` maps each ``ModelFile.file`` name to the file to copy; ``training_weights``
    is an optional ``.npz`` copied in as ``training_weights.npz``. Nothing is left at
    ``out_dir`` if anything fails.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise BundleError("output folder exists", path=out_dir, hint="remove it or pass overwrite=True (--force)")
    check_bundle_threshold(meta.threshold, source=out_dir)  # before writing: load_bundle would refuse the result
    names = {m.file for m in meta.models}
    if names != set(files):
        raise BundleError(f"model files {sorted(files)} do not match metadata {sorted(names)}", path=out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for m in meta.models:
            dst = tmp / m.file
            shutil.copyfile(files[m.file], dst)
            m.sha256 = sha256_file(dst)
            m.size_bytes = dst.stat().st_size
        if training_weights is not None:
            dst = tmp / TRAINING_WEIGHTS_FILE
            shutil.copyfile(training_weights, dst)
            meta.training_weights = {"file": TRAINING_WEIGHTS_FILE, "sha256": sha256_file(dst),
                                     "size_bytes": dst.stat().st_size}
        (tmp / BUNDLE_FILE).write_text(json.dumps(meta.to_dict(), indent=2, default=_json_default) + "\n",
                                       encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_bundle(out_dir)


def default_bundle_path() -> Path:
    """Folder of the default model shipped inside the package."""
    from importlib.resources import files

    return Path(str(files("edge_cm") / "assets" / "models" / "default"))
