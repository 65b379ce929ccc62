"""EfficientCNN / RES-EfficientCNN: shapes, parameter counts, MACs, export without the source head."""
from __future__ import annotations

import pytest
import torch

from training.models import efficientcnn as E
from training.models import registry

VARIANTS = [f"{res}efficientcnn_{size}{mt}" for res in ("", "res_") for size in ("small", "medium", "large")
            for mt in ("", "_mt")]
N_SOURCES = 4


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return registry.build(name, n_sources=N_SOURCES) if name.endswith("_mt") else registry.build(name)


def test_all_twelve_variants_are_registered():
    assert sorted(n for n in registry.names() if "efficientcnn" in n) == sorted(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_shapes_on_a_4s_window(name):
    model = build(name).eval()
    x = torch.randn(1, *E.INPUT_SHAPE)
    with torch.inference_mode():
        out = model(x)
    n_params = registry.count_params(model)
    print(f"{name}: {n_params} parameters (paper {registry.get(name).paper['params']})")
    if name.endswith("_mt"):
        logits, source = out
        assert source.shape == (1, N_SOURCES)
    else:
        logits = out
    assert logits.shape == (1, 2)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("size", ["small", "medium", "large"])
@pytest.mark.parametrize("residual", [False, True])
def test_parameter_counts_are_close_to_the_paper(size, residual):
    model = E.EfficientCNN(size, residual)
    ours, paper = registry.count_params(model), E.PAPER_PARAMS[(size, residual)]
    assert abs(ours - paper) / paper < 0.01, (ours, paper)


def test_export_module_drops_the_source_head():
    model = build("res_efficientcnn_small_mt").eval()
    exported = model.export_module().eval()
    hidden = model.config["hidden"]
    diff = registry.count_params(model) - registry.count_params(exported)
    assert diff == (hidden + 1) * N_SOURCES
    assert exported.source_head is None
    x = torch.randn(2, *E.INPUT_SHAPE)
    with torch.no_grad():
        full, _ = model(x)
        binary = exported(x)
    assert binary.shape == (2, 2)
    torch.testing.assert_close(binary, full)


def test_macs_agree_with_torch_flop_counter():
    macs = {}
    for name in ("efficientcnn_small", "res_efficientcnn_small_mt"):
        model = build(name)
        macs[name] = registry.count_macs(model, E.INPUT_SHAPE)
        assert registry.count_flops_torch(model, E.INPUT_SHAPE) == 2 * macs[name]
    macs["efficientcnn_medium"] = registry.count_macs(build("efficientcnn_medium"), E.INPUT_SHAPE)
    # MEDIUM doubles every width: the 3x3 convs (most of the cost) grow about 4x, the input conv 2x.
    assert 2 < macs["efficientcnn_medium"] / macs["efficientcnn_small"] < 4


def test_residual_shortcut_is_cropped_when_the_3x3_conv_is_unpadded():
    model = E.EfficientCNN("small", residual=True, padding=0).eval()
    plain = E.EfficientCNN("small", residual=False).eval()
    assert model.flat_features == plain.flat_features
    with torch.no_grad():
        assert model(torch.randn(2, *E.INPUT_SHAPE)).shape == (2, 2)


def test_xavier_init_scales_with_fan():
    model = E.EfficientCNN("large")
    w = model.hidden[2].weight  # the first linear layer
    fan_in, fan_out = w.shape[1], w.shape[0]
    expected = (2.0 / (fan_in + fan_out)) ** 0.5
    assert abs(float(w.detach().std()) - expected) / expected < 0.1
    assert float(model.hidden[2].bias.abs().max()) == 0.0


def test_unknown_architecture_names_the_registered_ones():
    with pytest.raises(registry.ArchitectureError, match="efficientcnn_small"):
        registry.get("efficientcnn_tiny")


def test_multitask_needs_sources():
    with pytest.raises(registry.ArchitectureError):
        registry.build("efficientcnn_small_mt")


def test_describe_prints_all_variants(capsys):
    from training import describe

    names = ["efficientcnn_small", "res_efficientcnn_small_mt"]
    assert describe.main(names + ["--sources", str(N_SOURCES)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in names:
        row = next(line for line in lines if line.startswith(f" {name} "))
        model = build(name)
        assert f"{registry.count_params(model):,}" in row
        assert f"{2 * registry.count_macs(model, E.INPUT_SHAPE) / 1e6:.2f}" in row
        assert row.rstrip().endswith("ok")
