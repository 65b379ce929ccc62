"""SpecMelCepCNN: the fixed DCT turns a harmonic comb into a peak at its quefrency, the cepstral
branch sees the masked frame, and the source head goes at export."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_cm.features import compute_features
from training.models import registry

from conftest import check_source_head_export
from training.models.logspec_cnn import logspec_spec
from training.models.spec_mel_cep_cnn import cepstral_projection


def test_the_cepstral_branch_fits_the_budget_and_the_front_end_is_fixed():
    model = registry.build("spec_mel_cep_cnn")
    plain = registry.build("spec_mel_cnn")
    # 5x5 stride-2 stem and three 3x3 blocks, each conv with its bias and BatchNorm; 16 more head inputs.
    widths = [(1, 4, 25), (4, 8, 9), (8, 12, 9), (12, 16, 9)]
    branch = sum(i * o * k + o + 2 * o for i, o, k in widths)
    assert registry.count_params(model.cep) == branch
    assert registry.count_params(model) == registry.count_params(plain) + branch + 16 * 2 == 49_874
    assert not model.cepstra.weight.requires_grad and model.head[1].in_features == 48 + 48 + 16
    with pytest.raises(registry.ArchitectureError, match="front end is fixed"):
        registry.build("spec_mel_cep_cnn", spec=logspec_spec())
    for widths in ((), (4, 0, 12, 16)):
        with pytest.raises(registry.ArchitectureError, match="cep_widths must be one or more positive"):
            registry.build("spec_mel_cep_cnn", cep_widths=widths)
    with pytest.raises(registry.ArchitectureError, match="fine_in_channels must be 1"):
        registry.build("spec_mel_cep_cnn", fine_in_channels=2)


def test_the_dct_is_orthonormal_and_puts_a_voice_at_its_quefrency():
    """Rows 1..256 of the orthonormal DCT-II: with c0 they are a basis. A 200-Hz pulse train's log
    spectrum (harmonics 200 Hz apart) peaks at coefficient 16,000 / 200 = 80; at 125 Hz, at 128."""
    proj = cepstral_projection(257)
    assert proj.shape == (256, 257)
    np.testing.assert_allclose(proj @ proj.T, np.eye(256), atol=1e-5)
    np.testing.assert_allclose(proj.sum(axis=1), 0.0, atol=1e-4)  # orthogonal to c0, the constant row
    spec = logspec_spec()
    for f0, quefrency in ((200.0, 80), (125.0, 128)):
        pulses = np.zeros(16000, np.float32)
        pulses[::int(16000 / f0)] = 1.0
        frames = compute_features(spec, pulses + 1e-3 * np.random.default_rng(0).standard_normal(16000))
        ceps = proj @ frames  # (256, frames): row k - 1 is coefficient k
        peak = 1 + 20 + int(np.argmax(np.abs(ceps[20:]).mean(axis=1)))  # above the envelope's quefrencies
        assert abs(peak - quefrency) <= 1, (f0, peak)


def test_the_cepstral_branch_sees_the_masked_frame_normalised_over_the_window():
    torch.manual_seed(0)
    model = registry.build("spec_mel_cep_cnn", freq_mask_bins=257).train()
    seen = {}
    model.cepstra.register_forward_pre_hook(lambda m, args: seen.__setitem__("spec", args[0]))
    model.cep.register_forward_pre_hook(lambda m, args: seen.__setitem__("ceps", args[0]))
    model.fine.register_forward_pre_hook(lambda m, args: seen.__setitem__("fine", args[0]))
    x = torch.randn(4, 1, 257, 120) + 3.0
    model(x)
    assert torch.equal(seen["spec"].transpose(2, 3), seen["fine"])  # one masked frame for both branches
    hidden = (seen["fine"][:, 0] == 0).all(dim=2).sum(dim=1)
    assert int(hidden.max()) > 0
    ceps = seen["ceps"]
    assert ceps.shape == (4, 1, 256, 120)
    assert torch.allclose(ceps.mean(dim=3), torch.zeros(4, 1, 256), atol=1e-4)
    assert torch.allclose(ceps.std(dim=3, unbiased=False), torch.ones(4, 1, 256), atol=1e-3)


def test_the_source_head_is_dropped_at_export_and_any_window_length_works():
    check_source_head_export("spec_mel_cep_cnn_mt", torch.randn(3, 1, 257, 397), 49_874)
    exported = registry.build("spec_mel_cep_cnn_mt", n_sources=3).export_module().eval()
    with torch.no_grad():
        assert exported(torch.randn(1, 257, 247)).shape == (1, 2)
