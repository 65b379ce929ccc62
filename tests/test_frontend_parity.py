"""The training front end (torch) computes the runtime's features (numpy) to < 1e-4 on real speech."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_cm.audio import read_audio
from edge_cm.features import (FeatureSpec, FrameAnalyzer, compute_features, dual_stream_spec, efficientcnn_spec,
                              resnetse_spec, waveform_spec)
from edge_cm.errors import FeatureSpecError
from training.frontend_torch import TorchFrontEnd

from conftest import pick_clips


@pytest.fixture(scope="module")
def windows(bonafide_dir, bonafide_rows):
    """Three 4-s windows of real speech from three sources."""
    out = []
    for source in ("resemblyzer_librispeech", "picovoice_speech_to_intent", "deb_fillets_ng"):
        rows = [r for r in bonafide_rows if r["source"] == source]
        row = pick_clips(rows, "dev", 1, min_seconds=4.0)[0]
        out.append(read_audio(bonafide_dir / row["path"])[:64000])
    return np.stack(out)


def with_stats(spec: FeatureSpec, windows: np.ndarray) -> FeatureSpec:
    cols = np.concatenate([FrameAnalyzer(spec).frames(w) for w in windows], axis=1)
    return spec.with_global_stats(cols.mean(axis=1), cols.std(axis=1))


def mgd_spec() -> FeatureSpec:
    return FeatureSpec(kind="log_spec_mgd", win_length=512, hop_length=160, n_fft=512)


def wave_rows_spec() -> FeatureSpec:
    return FeatureSpec(kind="log_spec_wave", win_length=512, hop_length=160, n_fft=512)


@pytest.mark.parametrize("make", [efficientcnn_spec, resnetse_spec, dual_stream_spec, mgd_spec, wave_rows_spec,
                                  waveform_spec],
                         ids=["log_spectrogram", "log_mel", "log_stft", "log_spec_mgd", "log_spec_wave", "waveform"])
def test_torch_front_end_matches_numpy(make, windows):
    spec = make()
    if spec.kind in ("log_spectrogram", "log_spec_mgd", "log_spec_wave"):
        spec = with_stats(spec, windows)
    numpy_feats = np.stack([compute_features(spec, w) for w in windows])
    torch_feats = TorchFrontEnd(spec)(torch.from_numpy(windows)).numpy()
    assert torch_feats.shape == numpy_feats.shape == (3, *spec.output_shape(64000))
    assert np.abs(torch_feats - numpy_feats).max() < 1e-4


def test_front_end_geometry():
    assert efficientcnn_spec().output_shape(64000) == (865, 390)
    assert resnetse_spec().output_shape(64000) == (40, 398)
    assert dual_stream_spec().output_shape(64000) == (257, 340)
    assert waveform_spec().output_shape(64000) == (64000,)


def test_modified_group_delay_follows_the_phase_and_ignores_level(windows):
    """An impulse's group delay is its time from the frame centre (255.5 samples from the start) at
    every bin, uncompressed (alpha 1) and divided by |X|^2 (gamma 1). The log-magnitude rows
    are those of log_spectrogram, and scaling the audio by 10 scales the compressed delay by
    10^(2 (1 - gamma) alpha) only."""
    from edge_cm.features import modified_group_delay, window_function

    spec = FeatureSpec(kind="log_spec_mgd", win_length=512, hop_length=160, n_fft=512, window="rectangular",
                       mgd_alpha=1.0, mgd_gamma=1.0, mgd_lifter=256)
    centre, later = np.zeros((1, 512)), np.zeros((1, 512))
    centre[0, 255], later[0, 275] = 1.0, 1.0  # (512 - 1) / 2 = 255.5 from the frame start
    assert np.allclose(modified_group_delay(centre, spec), -0.5, atol=1e-6)
    assert np.allclose(modified_group_delay(later, spec), 19.5, atol=1e-6)
    spec = mgd_spec()
    feats = FrameAnalyzer(spec).frames(windows[0])
    plain = FrameAnalyzer(FeatureSpec(kind="log_spectrogram", win_length=512, hop_length=160, n_fft=512)).frames(
        windows[0])
    assert feats.shape == (514, plain.shape[1]) and np.allclose(feats[:257], plain)
    framed = windows[0][:512].astype(np.float64)[None, :] * window_function(spec)
    ratio = modified_group_delay(10 * framed, spec) / modified_group_delay(framed, spec)
    assert np.allclose(ratio[np.isfinite(ratio)], 10 ** (2 * (1 - spec.mgd_gamma) * spec.mgd_alpha), rtol=1e-3)
    silent = FrameAnalyzer(spec).frames(np.zeros(64000, np.float32))
    assert np.isfinite(silent).all() and not silent[257:].any()  # no phase in silence, and no NaN
    again = FeatureSpec.from_dict(__import__("json").loads(spec.to_json()))
    assert again == spec and again.to_dict()["mgd_lifter"] == 30
    assert not {"mgd_alpha", "mgd_gamma", "mgd_lifter"} & set(efficientcnn_spec().to_dict())
    with pytest.raises(FeatureSpecError, match="mgd_alpha"):
        FeatureSpec(kind="log_spec_mgd", win_length=512, hop_length=160, n_fft=512, mgd_alpha=0.0)


def test_log_spec_wave_stacks_the_spectrogram_over_the_samples_it_came_from(windows):
    """The first 257 rows are log_spectrogram's; the other 160 rows, column after column, are the
    window's own samples (frame i's first hop), unscaled by global normalisation whatever stats
    are given, so the model sees the waveform it would see on its own."""
    spec = wave_rows_spec()
    plain = FeatureSpec(kind="log_spectrogram", win_length=512, hop_length=160, n_fft=512)
    feats = FrameAnalyzer(spec).frames(windows[0])
    n = plain.n_frames(64000)
    assert spec.output_shape(64000) == feats.shape == (257 + 160, n) == (417, 397)
    assert np.array_equal(feats[:257], FrameAnalyzer(plain).frames(windows[0]))
    assert np.array_equal(feats[257:].T.reshape(-1), windows[0][:n * 160])
    rng = np.random.default_rng(0)
    spec = spec.with_global_stats(rng.normal(size=417), rng.uniform(0.5, 2.0, 417))
    assert spec.norm_mean[:257] != (0.0,) * 257 and spec.norm_mean[257:] == (0.0,) * 160
    assert spec.norm_std[257:] == (1.0,) * 160
    normed = compute_features(spec, windows[0])
    assert np.array_equal(normed[257:], feats[257:]) and not np.allclose(normed[:257], feats[:257])
    assert FeatureSpec.from_dict(__import__("json").loads(spec.to_json())) == spec
    assert "mgd_alpha" not in spec.to_dict()
    with pytest.raises(FeatureSpecError, match="hop_length <= win_length"):
        FeatureSpec(kind="log_spec_wave", win_length=400, hop_length=480, n_fft=512)


def test_gradient_flows_to_the_waveform(windows):
    wave = torch.from_numpy(windows[:1]).requires_grad_(True)
    TorchFrontEnd(resnetse_spec())(wave).sum().backward()
    assert wave.grad is not None and torch.count_nonzero(wave.grad) > 1000


def test_spec_round_trips_through_json(windows):
    spec = with_stats(efficientcnn_spec(), windows)
    again = FeatureSpec.from_dict(__import__("json").loads(spec.to_json()))
    assert again == spec


@pytest.mark.parametrize("bad", [dict(kind="mfcc"), dict(kind="log_mel", win_length=400, hop_length=160, n_fft=512),
                                 dict(kind="log_spectrogram", win_length=512, hop_length=0, n_fft=512),
                                 dict(kind="log_spectrogram", win_length=512, hop_length=160, n_fft=256),
                                 dict(kind="log_spectrogram", win_length=16, hop_length=8, n_fft=16,
                                      normalization="global", norm_mean=(0.0,) * 9, norm_std=(1.0,) * 8)])
def test_inconsistent_specs_are_refused(bad):
    with pytest.raises(FeatureSpecError):
        FeatureSpec(**bad)
