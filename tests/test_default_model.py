"""The bundled default model: trained, small, gated, and it tells real speech from espeak-ng."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import edge_cm
from edge_cm.audio import read_audio
from edge_cm.bundle import default_bundle_path, load_bundle

from conftest import pick_clips, real_windows

SENTENCES = ["The library opens at nine on weekdays.", "Please call me back when you get this message.",
             "Turn left at the second traffic light.", "We will meet at the station after lunch.",
             "The weather should clear up by the afternoon.", "Remember to water the plants on Sunday.",
             "My account number ends in four seven two.", "Could you send the report before Friday?"]


@pytest.fixture(scope="module")
def detector():
    return edge_cm.load()


def test_default_bundle_is_trained_small_and_documented(detector):
    meta = load_bundle(default_bundle_path()).meta
    assert not meta.untrained and detector.bundle.path == default_bundle_path()
    assert meta.profile["parameters"] <= 50_000
    assert {"dev", "test"} <= set(meta.metrics) and 0.0 <= meta.metrics["test"]["pooled_eer"] <= 1.0
    assert "dev" in meta.threshold_method
    results = meta.export_gates["results"]
    assert results and all(r["passed"] for r in results.values())
    assert {(m.format, m.precision) for m in meta.models} >= {("onnx", "float32"), ("tflite", "float32")}


def test_real_speech_scores_lower_than_espeak_on_the_test_split(detector, bonafide_dir, bonafide_rows, tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make test installs it)")
    human = [detector.detect_file(bonafide_dir / r["path"]).score
             for r in pick_clips(bonafide_rows, "test", 40, min_seconds=2.0)[::4]]
    tts = []
    for i, (text, voice) in enumerate(zip(SENTENCES, ["en-us", "en", "en-gb", "en-us+f3", "de", "fr", "es", "it"])):
        wav = tmp_path / f"tts{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True)
        tts.append(detector.detect_array(read_audio(wav), 16000).score)
    human = [s for s in human if s is not None]
    assert len(human) >= 8 and all(s is not None for s in tts)
    assert np.mean(human) < np.mean(tts), (np.mean(human), np.mean(tts))


@pytest.mark.parametrize("backend", ["onnx", "tflite"])
def test_every_shipped_model_runs(backend, real_speech):
    bundle = load_bundle(default_bundle_path())
    for precision in sorted({m.precision for m in bundle.meta.models if m.format == backend}):
        det = edge_cm.load(backend=backend, precision=precision)
        clip = det.detect_array(real_speech, 16000)
        assert clip.score is not None and 0.0 <= clip.score <= 1.0


def test_default_bundle_training_weights_are_the_deployed_model(bonafide_dir, bonafide_rows):
    """``edge-cm-train adapt --from`` the default bundle starts from the weights its float ONNX model runs."""
    torch = pytest.importorskip("torch", reason="the training extra is not installed")
    import onnxruntime as ort

    from export.api import window_inputs
    from training.train import load_checkpoint, logits_of

    bundle = load_bundle(default_bundle_path())
    model, meta = load_checkpoint(default_bundle_path())
    assert meta["architecture"] == bundle.meta.architecture and meta["feature_spec"] == bundle.meta.feature_spec
    inputs = window_inputs(bundle.meta.feature_spec, real_windows(bonafide_dir, bonafide_rows, "test", 3), 64000)
    session = ort.InferenceSession(str(bundle.model_path(bundle.select("onnx", "float32")[0])))
    name = session.get_inputs()[0].name
    for x in inputs:
        want = session.run(None, {name: x})[0]
        with torch.no_grad():
            got = logits_of(model(torch.from_numpy(x))).numpy()  # a multi-task model also returns source logits
        np.testing.assert_allclose(got, want, atol=1e-3)
