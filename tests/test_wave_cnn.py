"""WaveCNN, the raw-waveform detector: registered under 50k parameters, polarity-blind, exportable."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_cm.features import waveform_spec
from training.models import registry

from conftest import check_source_head_export


def test_registered_on_the_instance_normalised_waveform_under_50k_parameters():
    for name in ("wave_cnn", "wave_cnn_mt"):
        arch = registry.get(name)
        assert arch.feature_spec() == waveform_spec() and arch.feature_spec().normalization == "instance"
        assert arch.input_shape == (64000,) and not arch.needs_global_stats
    model = registry.build("wave_cnn")
    assert registry.count_params(model) == 45_002 < 50_000
    assert registry.count_macs(model, (64000,)) == registry.count_flops_torch(model, (64000,)) // 2


def test_any_window_length_and_the_source_head_is_dropped_at_export():
    check_source_head_export("wave_cnn_mt", torch.randn(3, 64000), 45_002)
    exported = registry.build("wave_cnn_mt", n_sources=3).export_module().eval()
    with torch.no_grad():
        assert exported(torch.randn(1, 1, 24000)).shape == (1, 2)  # (B, 1, samples), 1.5 s
    with pytest.raises(registry.ArchitectureError, match="odd stem_taps"):
        registry.build("wave_cnn", stem_taps=128)


def test_a_flipped_polarity_gets_the_same_score_a_time_shift_does_not():
    """The stem's filters have no bias and are rectified, so -x scores as x (a microphone's
    wiring says nothing about the talker); the filters still see the waveform itself: a
    quarter-millisecond delay changes the logits."""
    torch.manual_seed(1)
    model = registry.build("wave_cnn").eval()
    x = torch.randn(2, 64000)
    with torch.no_grad():
        same = model(x)
        assert torch.allclose(model(-x), same, atol=1e-5)
        assert not torch.allclose(model(torch.roll(x, 4, dims=1)), same, atol=1e-3)


def test_exports_to_onnx_and_tflite_and_the_runtime_scores_as_torch(tmp_path):
    from export.api import export_bundle

    import edge_cm
    from edge_cm.features import compute_features

    torch.manual_seed(0)
    model = registry.build("wave_cnn_mt", n_sources=3).export_module().eval()
    spec = waveform_spec()
    rng = np.random.default_rng(0)
    windows = [(0.1 * rng.standard_normal(64000)).astype(np.float32) for _ in range(2)]
    bundle = export_bundle(model, spec, tmp_path / "b", formats=("onnx", "tflite"), architecture="wave_cnn",
                           eval_windows=windows, profile=False)
    for fmt in ("onnx", "tflite"):
        assert bundle.meta.export_gates["results"][f"{fmt}/float32"]["max_abs_logit_diff"] <= 1e-4
    # The runtime instance-normalises the window as training did, so its logits are torch's.
    loud = windows[0] * np.float32(0.99 / np.abs(windows[0]).max())  # about twice as loud, within full scale
    with torch.no_grad():
        expected = model(torch.from_numpy(compute_features(spec, loud))[None]).numpy()[0]
    for backend in ("onnx", "tflite"):
        clip = edge_cm.load(tmp_path / "b", backend=backend).detect_array(loud, 16000)
        assert np.allclose(clip.windows[0].logits, expected, atol=1e-4)


def test_sinc_stem_is_a_fixed_bank_of_band_passes_tiling_0_to_8_khz():
    from training.models.wave_cnn import sinc_filterbank

    bank = sinc_filterbank(40, 129)
    response = np.abs(np.fft.rfft(bank, n=4096, axis=1))
    freqs = np.fft.rfftfreq(4096, 1 / 16000)
    for k in range(1, 39):  # each interior filter passes its own 200-Hz band and stops the far ones
        inside = response[k, (freqs > 200 * k + 40) & (freqs < 200 * k + 160)]
        far = response[k, (freqs < 200 * k - 600) | (freqs > 200 * k + 800)]
        assert inside.min() > 0.8 and far.max() < 0.05, k
    assert registry.count_params(registry.build("wave_cnn_sinc")) == 45_002 - 40 * 129

    torch.manual_seed(0)
    model = registry.build("wave_cnn_sinc_mt", n_sources=3).train()
    stem, blocks = model.encoder.stem.weight.detach().clone(), model.encoder.blocks[0].weight.detach().clone()
    assert torch.allclose(stem[:, 0], torch.from_numpy(bank))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    logits, sources = model(torch.randn(4, 16000))
    (logits.sum() + sources.sum()).backward()
    opt.step()
    assert torch.equal(model.encoder.stem.weight, stem) and not torch.equal(model.encoder.blocks[0].weight, blocks)
    with pytest.raises(registry.ArchitectureError, match="stem must be one of"):
        registry.build("wave_cnn", stem="mel")
