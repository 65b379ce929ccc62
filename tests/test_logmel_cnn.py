"""The small CNNs of the default model: registered, under 50k parameters, any window length."""
from __future__ import annotations

import pytest
import torch

from edge_cm.features import resnetse_spec
from training.models import registry
from training.models.logspec_cnn import logspec_spec


@pytest.mark.parametrize("name, spec, params, global_stats", [
    ("logmel_cnn", resnetse_spec(), 46_834, False),
    ("logspec_cnn", logspec_spec(), 47_090, True),
])
def test_registered_with_their_front_end_and_under_50k_parameters(name, spec, params, global_stats):
    arch = registry.get(name)
    assert arch.feature_spec() == spec and arch.needs_global_stats is global_stats
    assert arch.input_shape == (1, *spec.output_shape(64000))
    model = registry.build(name)
    assert registry.count_params(model) == params < 50_000
    assert registry.count_macs(model, arch.input_shape) == registry.count_flops_torch(model, arch.input_shape) // 2


def test_forward_shapes_for_4_s_and_other_lengths():
    model = registry.build("logmel_cnn").eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 40, 398)).shape == (3, 2)
        assert model(torch.randn(2, 40, 150)).shape == (2, 2)  # (B, bins, frames) also accepted
    spec_model = registry.build("logspec_cnn").eval()
    with torch.no_grad():
        assert spec_model(torch.randn(2, 1, 257, 397)).shape == (2, 2)
        assert spec_model(torch.randn(1, 1, 257, 120)).shape == (1, 2)


def test_logspec_stem_is_strided_and_the_default_layout_unchanged():
    """stem_stride only changes the first conv, so LogMelCNN checkpoints (the bundled default) still load."""
    plain, strided = registry.build("logmel_cnn"), registry.build("logspec_cnn")
    assert plain.features[0].stride == (1, 1) and plain.features[0].kernel_size == (3, 3)
    assert strided.features[0].stride == (2, 2) and strided.features[0].kernel_size == (5, 5)
    assert [k for k in plain.state_dict()] == [k for k in strided.state_dict()]
