"""SpecMelWaveCNN: one input tensor, spectrogram rows over raw-sample rows; the waveform branch sees
the window's own samples, the frequency mask never reaches them, and the runtime scores as torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_cm.features import FrameAnalyzer, compute_features
from training.models import registry

from conftest import check_source_head_export
from training.models.spec_mel_wave_cnn import spec_wave_spec


def test_registered_on_the_stacked_front_end_under_50k_parameters():
    for name in ("spec_mel_wave_cnn", "spec_mel_wave_cnn_mt"):
        arch = registry.get(name)
        assert arch.feature_spec() == spec_wave_spec() and arch.feature_spec().kind == "log_spec_wave"
        assert arch.input_shape == (1, 417, 397) and arch.needs_global_stats
    model = registry.build("spec_mel_wave_cnn")
    assert registry.count_params(model) == 47_150 < 50_000
    # stem 16 x 129 taps and its BatchNorm, then four 3-tap blocks with BatchNorm: 16, 24, 32, 32
    widths = [(16, 16), (16, 24), (24, 32), (32, 32)]
    assert registry.count_params(model.wave) == 16 * 129 + 2 * 16 + sum(3 * i * o + 2 * o for i, o in widths)
    shape = (1, 417, 397)
    assert registry.count_macs(model, shape) == registry.count_flops_torch(model, shape) // 2
    with pytest.raises(registry.ArchitectureError, match="front end is fixed"):
        registry.build("spec_mel_wave_cnn", spec=spec_wave_spec())
    with pytest.raises(registry.ArchitectureError, match="linear head only"):
        registry.build("spec_mel_wave_cnn", head="one_class")


def test_the_source_head_is_dropped_at_export_and_any_window_length_works():
    check_source_head_export("spec_mel_wave_cnn_mt", torch.randn(3, 1, 417, 397), 47_150)
    exported = registry.build("spec_mel_wave_cnn_mt", n_sources=3).export_module().eval()
    with torch.no_grad():
        assert exported(torch.randn(1, 417, 247)).shape == (1, 2)  # (B, rows, frames), 2.5 s


def test_the_waveform_branch_reads_the_samples_at_any_level_and_the_mask_spares_them():
    """The branch gets the columns' samples end to end, instance-normalised: the same waveform 4x
    louder gives the same logits (to the 1e-5 variance floor), the same waveform 4 samples later does not. In training the
    frequency mask zeroes spectrogram rows only."""
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    spec = spec_wave_spec()
    audio = (0.3 * rng.standard_normal(64000 + 4)).astype(np.float32)
    feats = torch.from_numpy(np.stack([FrameAnalyzer(spec).frames(a) for a in (audio[4:], audio[:-4])]))
    model = registry.build("spec_mel_wave_cnn").eval()
    louder = feats.clone()
    louder[:, 257:] *= 4
    with torch.no_grad():
        same = model(feats)
        assert torch.allclose(model(louder), same, atol=1e-4)
        assert not torch.allclose(same[0], same[1], atol=1e-3)

    model = registry.build("spec_mel_wave_cnn", freq_mask_bins=257).train()
    seen = {}
    model.wave.register_forward_pre_hook(lambda m, args: seen.__setitem__("wave", args[0]))
    model.fine.register_forward_pre_hook(lambda m, args: seen.__setitem__("fine", args[0]))
    batch = torch.from_numpy(np.stack([FrameAnalyzer(spec).frames(audio[i:i + 64000]) for i in range(4)]))
    model(batch)
    wave = torch.from_numpy(np.stack([audio[i:i + 397 * 160] for i in range(4)]))[:, None]
    expected = (wave - wave.mean(dim=2, keepdim=True)) / torch.sqrt(wave.var(dim=2, unbiased=False,
                                                                              keepdim=True) + 1e-5)
    assert torch.allclose(seen["wave"], expected, atol=1e-5)
    hidden = (seen["fine"][:, 0] == 0).all(dim=2).sum(dim=1)  # masked spectrogram rows per example
    assert seen["fine"].shape == (4, 1, 257, 397) and int(hidden.max()) > 0


def test_exports_to_onnx_and_tflite_and_streaming_scores_as_torch(tmp_path, real_speech):
    from export.api import export_bundle

    import edge_cm

    torch.manual_seed(0)
    model = registry.build("spec_mel_wave_cnn_mt", n_sources=3).export_module().eval()
    audio = real_speech[:9 * 16000 + 777]
    cols = FrameAnalyzer(spec_wave_spec()).frames(audio)
    spec = spec_wave_spec().with_global_stats(cols.mean(axis=1), cols.std(axis=1))
    windows = [audio[:64000], audio[32000:96000]]
    bundle = export_bundle(model, spec, tmp_path / "b", formats=("onnx", "tflite"), architecture="spec_mel_wave_cnn",
                           eval_windows=windows, profile=False)
    assert bundle.meta.feature_spec == spec
    for fmt in ("onnx", "tflite"):
        assert bundle.meta.export_gates["results"][f"{fmt}/float32"]["max_abs_logit_diff"] <= 1e-4
    with torch.no_grad():
        expected = model(torch.from_numpy(compute_features(spec, audio[:64000]))[None]).numpy()[0]
    for backend in ("onnx", "tflite"):
        detector = edge_cm.load(tmp_path / "b", backend=backend)
        offline = detector.detect_array(audio, 16000).windows
        assert np.allclose(offline[0].logits, expected, atol=1e-4)
        streamed = []
        for i in range(0, audio.size, 1000):
            streamed += detector.process(audio[i:i + 1000])
        streamed += detector.flush()
        assert len(streamed) == len(offline) == 4
        for s, o in zip(streamed, offline):
            np.testing.assert_allclose(s.logits, o.logits, atol=1e-4)
