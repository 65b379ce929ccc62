"""Shared test fixtures: where the shared real-speech corpus is, and a few real clips."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    """The read-only ``shared/`` folder beside the repository (override with EDGE_CM_SHARED)."""
    return Path(os.environ.get("EDGE_CM_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    root = shared_root()
    if not (root / "data" / "bonafide" / "manifest.csv").is_file():
        pytest.fail(f"shared data not found at {root}; set EDGE_CM_SHARED to the shared/ folder")
    return root


@pytest.fixture(scope="session")
def bonafide_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "bonafide"


@pytest.fixture(scope="session")
def bonafide_rows(bonafide_dir: Path) -> list[dict]:
    with open(bonafide_dir / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def pick_clips(rows: list[dict], split: str, n: int, min_seconds: float = 0.0, max_seconds: float = 1e9) -> list[dict]:
    """The first ``n`` rows of ``split`` within a duration range, deterministic (manifest order)."""
    out = [r for r in rows if r["split"] == split and min_seconds <= float(r["seconds"]) <= max_seconds]
    return out[:n]


@pytest.fixture(scope="session")
def real_speech(bonafide_dir: Path, bonafide_rows: list[dict]) -> np.ndarray:
    """About 6 s of real 16 kHz speech (a LibriSpeech test-split utterance), float32."""
    from edge_cm.audio import read_audio

    row = next(r for r in bonafide_rows if r["source"] == "resemblyzer_librispeech" and r["split"] == "test"
               and 6.0 <= float(r["seconds"]) <= 15.0)
    return read_audio(bonafide_dir / row["path"])


# -- small exported bundles for runtime tests ------------------------------------------

def tiny_spectrogram_model(spec, seed: int = 0):
    """A small untrained CNN over (1, 1, bins, frames) features -> (1, 2) logits (exports to ONNX and TFLite)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class TinyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, kernel_size=5, stride=4)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))

    return TinyCNN().eval()


def check_source_head_export(name: str, x, exported_params: int, n_sources: int = 19) -> None:
    """A multi-task architecture: both heads answer on ``x``, the exported copy drops the source
    head (``exported_params`` left) and gives the same veracity logits, and fewer than two
    sources is refused."""
    import torch

    from training.models import registry

    torch.manual_seed(0)
    model = registry.build(name, n_sources=n_sources).eval()
    head_in = model.source_head[-1].in_features
    assert registry.count_params(model) == exported_params + (head_in + 1) * n_sources
    with torch.no_grad():
        logits, sources = model(x)
        exported = model.export_module().eval()
        assert logits.shape == (x.shape[0], 2) and sources.shape == (x.shape[0], n_sources)
        assert torch.equal(exported(x), logits)
    assert registry.count_params(exported) == exported_params and model.source_head is not None
    assert not any(k.startswith("source_head.") for k in exported.state_dict())
    with pytest.raises(registry.ArchitectureError, match="n_sources >= 2"):
        registry.build(name, n_sources=1)


def real_windows(bonafide_dir: Path, rows: list[dict], split: str, n: int, window: int = 64000) -> list[np.ndarray]:
    """``n`` 4-s windows of real speech (clips shorter than a window are looped)."""
    from edge_cm.audio import read_audio
    from edge_cm.window import loop_to_length

    out = []
    for row in pick_clips(rows, split, n, min_seconds=2.0):
        x = read_audio(bonafide_dir / row["path"])
        out.append(loop_to_length(x, window) if x.size < window else x[:window])
    return out


@pytest.fixture(scope="session")
def float_bundle(tmp_path_factory, bonafide_dir, bonafide_rows) -> Path:
    """A bundle with float ONNX and float TFLite models of a tiny CNN on front end (a), gated on real speech."""
    from export.api import export_bundle

    from edge_cm.features import FrameAnalyzer, efficientcnn_spec

    spec = efficientcnn_spec()
    windows = real_windows(bonafide_dir, bonafide_rows, "train", 4)
    cols = np.concatenate([FrameAnalyzer(spec).frames(w) for w in windows], axis=1)
    spec = spec.with_global_stats(cols.mean(axis=1), cols.std(axis=1))
    out = tmp_path_factory.mktemp("bundles") / "tiny_float"
    export_bundle(tiny_spectrogram_model(spec), spec, out, formats=("onnx", "tflite"), architecture="tiny_cnn",
                  eval_windows=windows, profile=False, metadata={"untrained": True})
    return out
