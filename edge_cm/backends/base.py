"""What every inference backend does: take one window's features, return its logits."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..bundle import ModelFile, TensorInfo
from ..errors import BackendError, BundleIntegrityError


class Backend(ABC):
    """One opened model file. ``run`` maps features of one window to logits (n_classes,) float32."""

    name: str = ""

    def __init__(self, model: ModelFile, path: Path, threads: int = 1):
        self.model = model
        self.path = path
        self.threads = threads

    @property
    def precision(self) -> str:
        return self.model.precision

    def prepare_input(self, features: np.ndarray) -> np.ndarray:
        """Reshape features to the model's input shape and quantise to int8 when the model wants it."""
        info = self.model.input
        x = np.asarray(features, dtype=np.float32).reshape(info.shape)
        if info.dtype == "int8":
            x = quantize(x, info)
        return x

    def finish_output(self, raw: np.ndarray) -> np.ndarray:
        """The model's raw output as logits (n_classes,) float32; NaN/Inf raise :class:`BackendError`."""
        info = self.model.output
        out = np.asarray(raw)
        if info.dtype == "int8":
            out = dequantize(out, info)
        out = out.astype(np.float32).reshape(-1)
        # A NaN logit would otherwise turn into a score of 0.0, a confident bona fide.
        if not np.all(np.isfinite(out)):
            raise BackendError(f"model produced NaN/Inf logits {out.tolist()}", path=self.path,
                               hint="its input features or weights are not finite; check the front end and "
                                    "re-export the bundle")
        return out

    @abstractmethod
    def run(self, features: np.ndarray) -> np.ndarray:
        """Logits of one window."""


def quantize(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """float32 -> int8 with the tensor's scale and zero point (real = scale * (q - zero_point))."""
    q = np.round(x / np.float32(info.scale)) + int(info.zero_point)
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, info: TensorInfo) -> np.ndarray:
    return (q.astype(np.float32) - np.float32(info.zero_point)) * np.float32(info.scale)


def check_tensor(expected: TensorInfo, shape: list, dtype: str, where: str, source: Path,
                 quant: tuple[float, int] | None = None) -> None:
    """Refuse a model whose tensor does not match the bundle metadata."""
    got = [int(d) if isinstance(d, (int, np.integer)) else -1 for d in shape]
    want = list(expected.shape)
    if len(got) != len(want) or any(g not in (w, -1) for g, w in zip(got, want)):
        raise BundleIntegrityError(f"{where} shape is {got} in the model but {want} in bundle.json", path=source,
                                   hint="the metadata does not belong to this model; re-export the bundle")
    if dtype != expected.dtype:
        raise BundleIntegrityError(f"{where} dtype is {dtype} in the model but {expected.dtype} in bundle.json",
                                   path=source, hint="re-export the bundle")
    if expected.dtype == "int8":
        if expected.scale is None or expected.zero_point is None:
            raise BundleIntegrityError(f"{where} is int8 but bundle.json has no scale/zero_point", path=source)
        if quant is not None:
            scale, zp = quant
            if not np.isclose(scale, expected.scale, rtol=1e-5) or int(zp) != int(expected.zero_point):
                raise BundleIntegrityError(
                    f"{where} quantisation is scale={scale}, zero_point={zp} in the model but "
                    f"scale={expected.scale}, zero_point={expected.zero_point} in bundle.json", path=source)
