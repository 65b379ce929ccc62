"""Level normalisation (``FeatureSpec.level_dbfs``): the features, and so the scores, stop following the gain."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

import edge_cm
from edge_cm.audio import read_audio
from edge_cm.errors import FeatureSpecError
from edge_cm.features import (LEVEL_FLOOR_DBFS, LEVEL_FRAME_SAMPLES, FeatureSpec, FrameAnalyzer, compute_features,
                              efficientcnn_spec, normalize, resnetse_spec, window_level_dbfs)
from training.frontend_torch import TorchFrontEnd

from conftest import pick_clips


@pytest.fixture(scope="module")
def windows(bonafide_dir, bonafide_rows):
    """Two 4-s windows of real speech from two sources."""
    out = []
    for source in ("resemblyzer_librispeech", "picovoice_speech_to_intent"):
        row = pick_clips([r for r in bonafide_rows if r["source"] == source], "dev", 1, min_seconds=4.0)[0]
        out.append(read_audio(bonafide_dir / row["path"])[:64000])
    return np.stack(out)


def spec_with_stats(spec: FeatureSpec, windows: np.ndarray) -> FeatureSpec:
    cols = np.concatenate([normalize(spec, FrameAnalyzer(spec).frames(w), w) for w in windows], axis=1)
    return spec.with_global_stats(cols.mean(axis=1), cols.std(axis=1))


def test_window_level_moves_exactly_with_the_gain_and_measures_the_speech(windows):
    x = windows[0]
    for gain in (0.05, 0.3, 2.0):  # abs=1e-5: the samples are float32
        assert window_level_dbfs(gain * x) - window_level_dbfs(x) == pytest.approx(20 * np.log10(gain), abs=1e-5)
    assert window_level_dbfs(np.zeros(64000, np.float32)) == LEVEL_FLOOR_DBFS
    # 60 of 200 frames speech, the rest digital silence: the level is that of the speech's 40 loudest frames,
    # not diluted by the pauses.
    speech = x[:60 * LEVEL_FRAME_SAMPLES]
    padded = np.concatenate([speech, np.zeros(64000 - speech.size, np.float32)])
    power = np.sort(np.mean(speech.astype(np.float64).reshape(60, -1) ** 2, axis=1))[-40:]
    assert window_level_dbfs(padded) == pytest.approx(10 * np.log10(power.mean()), abs=1e-9)
    assert window_level_dbfs(padded) > window_level_dbfs(x[:64000]) - 10.0


@pytest.mark.parametrize("make", [efficientcnn_spec, resnetse_spec], ids=["log_spectrogram", "log_mel"])
def test_a_level_spec_gives_the_same_features_at_any_gain(make, windows):
    plain = make()
    leveled = replace(plain, level_dbfs=-22.0)
    if plain.normalization == "none":
        plain, leveled = spec_with_stats(plain, windows), spec_with_stats(leveled, windows)
    x = windows[1]  # telephone-band speech: its empty upper band sits at the log floor
    target_gain = 10 ** ((-22.0 - window_level_dbfs(x)) / 20)
    as_if_scaled = compute_features(replace(leveled, level_dbfs=None), (target_gain * x).astype(np.float32))
    for gain in (0.1, 0.5, 1.5):
        assert np.abs(compute_features(leveled, gain * x) - as_if_scaled).max() < 2e-3, gain
    if plain.normalization == "global":  # without the level the features follow the gain (the test can fail)
        assert np.abs(compute_features(plain, 0.1 * x) - compute_features(plain, x)).max() > 0.5


@pytest.mark.parametrize("make", [efficientcnn_spec, resnetse_spec], ids=["log_spectrogram", "log_mel"])
def test_torch_front_end_applies_the_same_level_shift(make, windows):
    spec = replace(make(), level_dbfs=-30.0)
    if spec.normalization == "none":
        spec = spec_with_stats(spec, windows)
    batch = np.stack([windows[0], 0.2 * windows[1]])
    numpy_feats = np.stack([compute_features(spec, w) for w in batch])
    torch_feats = TorchFrontEnd(spec)(torch.from_numpy(batch)).numpy()
    assert np.abs(torch_feats - numpy_feats).max() < 1e-4


def test_level_spec_round_trips_and_bad_levels_are_refused(windows):
    plain = efficientcnn_spec()
    assert "level_dbfs" not in plain.to_dict()  # older runtimes keep reading bundles without it
    leveled = replace(plain, level_dbfs=-22.57)
    assert FeatureSpec.from_dict(json.loads(leveled.to_json())) == leveled
    with pytest.raises(FeatureSpecError, match="not supported"):
        FeatureSpec(kind="waveform", window="rectangular", level_dbfs=-20.0)
    for bad in (3.0, -150.0, float("nan"), False, "-20"):
        with pytest.raises(FeatureSpecError, match="level_dbfs must be"):
            replace(plain, level_dbfs=bad)
    assert type(replace(plain, level_dbfs=np.float32(-20.0)).level_dbfs) is float  # numpy input, JSON-safe spec
    with pytest.raises(FeatureSpecError, match="needs the window"):
        normalize(leveled, FrameAnalyzer(leveled).frames(windows[0]))


def copy_with_level(tmp_path, level: float | None):
    """The shipped default bundle with ``level_dbfs`` set to ``level`` (None: removed) in its FeatureSpec;
    the same model files."""
    dst = tmp_path / f"level_{level}"
    shutil.copytree(edge_cm.load().bundle.path, dst)
    meta = json.loads((dst / "bundle.json").read_text())
    meta["feature_spec"]["level_dbfs"] = level
    if level is None:
        del meta["feature_spec"]["level_dbfs"]
    (dst / "bundle.json").write_text(json.dumps(meta))
    return dst


def test_the_shipped_default_is_level_normalised():
    assert edge_cm.load().spec.level_dbfs is not None


@pytest.mark.parametrize("seconds", [9.5, 3.0], ids=["with_a_tail_window", "looped"])
def test_a_leveled_bundle_streams_as_it_scores_offline_and_ignores_the_gain(seconds, tmp_path, bonafide_dir,
                                                                            bonafide_rows):
    row = pick_clips(bonafide_rows, "test", 1, min_seconds=10.0)[0]
    audio = read_audio(bonafide_dir / row["path"])[:int(seconds * 16000)]
    leveled = edge_cm.load(copy_with_level(tmp_path, -30.0), backend="onnx")
    offline = leveled.detect_array(audio, 16000)
    streamed = []
    for start in range(0, audio.size, 1234):  # odd chunks, so windows end mid-chunk
        streamed += leveled.process(audio[start:start + 1234])
    streamed += leveled.flush()
    assert [(w.start, w.end) for w in streamed] == [(w.start, w.end) for w in offline.windows]
    assert np.allclose([w.score for w in streamed], [w.score for w in offline.windows], atol=1e-5)
    assert offline.windows[-1].end == pytest.approx(seconds)
    quiet = leveled.detect_array(0.25 * audio, 16000)
    assert abs(quiet.score - offline.score) < 1e-3
    plain = edge_cm.load(copy_with_level(tmp_path, None), backend="onnx")  # without the level, the gain counts
    assert abs(plain.detect_array(0.25 * audio, 16000).score - plain.detect_array(audio, 16000).score) > 1e-2
