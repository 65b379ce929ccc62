"""The default model's architecture: registered, under 50k parameters, any window length, exports."""
from __future__ import annotations

import torch

from edge_cm.features import resnetse_spec
from training.models import registry


def test_registered_with_the_log_mel_front_end_and_under_50k_parameters():
    arch = registry.get("logmel_cnn")
    assert arch.feature_spec() == resnetse_spec()
    model = registry.build("logmel_cnn")
    assert registry.count_params(model) == 46_834 < 50_000
    assert registry.count_macs(model, arch.input_shape) == registry.count_flops_torch(model, arch.input_shape) // 2


def test_forward_shapes_for_4_s_and_other_lengths():
    model = registry.build("logmel_cnn").eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 40, 398)).shape == (3, 2)
        assert model(torch.randn(2, 40, 150)).shape == (2, 2)  # (B, bins, frames) also accepted
