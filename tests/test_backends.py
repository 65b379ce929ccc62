"""Both backends run the same bundle for real and agree with torch; auto picks what is installed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import edge_cm
from edge_cm.backends import installed_backends, open_backend
from edge_cm.bundle import load_bundle
from edge_cm.errors import BackendError
from edge_cm.features import compute_features

from conftest import tiny_spectrogram_model


def test_both_runtimes_are_installed_here():
    assert installed_backends() == ["onnx", "tflite"]


@pytest.mark.parametrize("backend", ["onnx", "tflite"])
def test_backend_matches_torch(float_bundle, real_speech, backend):
    bundle = load_bundle(float_bundle)
    spec = bundle.meta.feature_spec
    model = tiny_spectrogram_model(spec)  # same seed as the exported model
    runner = open_backend(bundle, backend=backend)
    assert runner.name == backend and runner.precision == "float32"
    for start in (0, 16000, 32000):
        feats = compute_features(spec, real_speech[start:start + 64000])
        with torch.no_grad():
            ref = model(torch.from_numpy(feats)[None, None]).numpy().reshape(-1)
        np.testing.assert_allclose(runner.run(feats), ref, atol=1e-4)


def test_auto_prefers_float_onnx(float_bundle):
    det = edge_cm.load(float_bundle)
    assert (det.backend.name, det.backend.precision) == ("onnx", "float32")


def test_missing_precision_is_a_clear_error(float_bundle):
    with pytest.raises(BackendError, match="no onnx/tflite model of precision int8"):
        edge_cm.load(float_bundle, precision="int8")
    with pytest.raises(BackendError, match="unknown backend"):
        edge_cm.load(float_bundle, backend="coreml")


def test_threads_option_reaches_onnxruntime(float_bundle):
    det = edge_cm.load(float_bundle, backend="onnx", threads=2)
    assert det.backend.session.get_session_options().intra_op_num_threads == 2


@pytest.mark.parametrize("backend", ["onnx", "tflite"])
def test_nan_logits_are_a_backend_error_not_a_bona_fide_score(real_speech, backend):
    """A NaN logit made the score 0.0 (confident bona fide); the backend now refuses it, naming the model.
    One NaN feature frame (as a broken front end would leave) is enough to poison the shipped model's output."""
    det = edge_cm.load(backend=backend)
    feats = compute_features(det.spec, real_speech[:64000])
    assert np.all(np.isfinite(det.backend.run(feats)))
    feats[:, 10] = np.nan
    with pytest.raises(BackendError, match=rf"model\.{backend}: model produced NaN/Inf logits"):
        det.backend.run(feats)
