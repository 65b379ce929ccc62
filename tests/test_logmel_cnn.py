"""The small CNNs of the default model: registered, under 50k parameters, any window length."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_cm.features import resnetse_spec
from training.models import registry

from conftest import check_source_head_export
from training.models.logspec_cnn import logspec_spec
from training.models.spec_mel_cnn import hires_spec
from training.models.spec_mel_mgd_cnn import spec_mgd_spec


@pytest.mark.parametrize("name, spec, params, global_stats", [
    ("logmel_cnn", resnetse_spec(), 46_834, False),
    ("logspec_cnn", logspec_spec(), 47_090, True),
    ("spec_mel_cnn", logspec_spec(), 46_742, True),
    ("spec_mel_cnn_fp", logspec_spec(), 48_566, True),
    ("spec_mel_cnn_fmax", logspec_spec(), 46_742, True),
    ("spec_mel_cnn_stats", logspec_spec(), 46_934, True),
    ("spec_mel_cnn_hires", hires_spec(), 46_742, True),
    ("spec_mel_cnn_sep", logspec_spec(), 46_802, True),
    ("spec_mel_mgd_cnn", spec_mgd_spec(), 47_042, True),
    ("spec_mel_cep_cnn", logspec_spec(), 49_874, True),
    ("spec_mel_cnn_se", logspec_spec(), 49_178, True),
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
    two_view = registry.build("spec_mel_cnn").eval()
    with torch.no_grad():
        assert two_view(torch.randn(2, 1, 257, 397)).shape == (2, 2)
        assert two_view(torch.randn(1, 257, 120)).shape == (1, 2)


def test_logspec_stem_is_strided_and_the_default_layout_unchanged():
    """stem_stride only changes the first conv, so LogMelCNN checkpoints (the bundled default) still load."""
    plain, strided = registry.build("logmel_cnn"), registry.build("logspec_cnn")
    assert plain.features[0].stride == (1, 1) and plain.features[0].kernel_size == (3, 3)
    assert strided.features[0].stride == (2, 2) and strided.features[0].kernel_size == (5, 5)
    assert [k for k in plain.state_dict()] == [k for k in strided.state_dict()]


def test_hires_band_branch_sees_the_same_mel_bands_as_the_default():
    """On the 513-bin front end the band branch projects onto the same 40 bands in Hz, so only the
    fine branch's view changes (the experiment's one change)."""
    from training.models.spec_mel_cnn import band_projection

    fine, coarse = band_projection(hires_spec()), band_projection(logspec_spec())
    assert fine.shape == (40, 513) and np.allclose(fine.sum(axis=1), 1.0, atol=1e-6)
    hz = lambda proj, n_fft: proj @ (np.arange(proj.shape[1]) * 16000 / n_fft)  # noqa: E731  band centroids
    assert np.allclose(hz(fine, 1024), hz(coarse, 512), atol=16000 / 512)
    model = registry.build("spec_mel_cnn_hires_mt", n_sources=5).eval()
    with torch.no_grad():
        logits, sources = model(torch.randn(2, 1, 513, 394))
    assert logits.shape == (2, 2) and sources.shape == (2, 5)
    assert registry.count_params(model.export_module()) == registry.count_params(registry.build("spec_mel_cnn"))
    # A config's model_args can only give a mapping, and the front end is the architecture's to fix.
    with pytest.raises(registry.ArchitectureError, match="spec_mel_cnn_hires"):
        registry.build("spec_mel_cnn_mt", n_sources=5, spec={"kind": "log_spectrogram", "n_fft": 1024})


def test_spec_mel_band_projection_is_fixed_mel_means():
    """The band branch's projection: 40 increasing mel triangles, each a weighted mean of bins, never trained."""
    from training.models.spec_mel_cnn import band_projection

    proj = band_projection(logspec_spec())
    assert proj.shape == (40, 257) and np.allclose(proj.sum(axis=1), 1.0, atol=1e-6)
    centres = proj.argmax(axis=1)
    assert np.all(np.diff(centres) > 0) and centres[0] < 5 and centres[-1] > 220  # 20 Hz .. 7.6 kHz
    model = registry.build("spec_mel_cnn")
    before = model.bands.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 1, 257, 120)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    opt.step()
    assert torch.equal(model.bands.weight, before) and model.bands.weight.grad is None
    from export.profile import count_parameters, parameters_text

    assert (count_parameters(model), count_parameters(model, fixed=True)) == (46_742, 40 * 257)
    assert parameters_text({"parameters": 46_742, "fixed_parameters": 10_280}) == "46,742 (+ 10,280 fixed, not trained)"
    frozen = registry.build("logmel_cnn").requires_grad_(False)
    assert (count_parameters(frozen), count_parameters(frozen, fixed=True)) == (46_834, 0)
    assert not torch.equal(model.fine[0].weight.grad, torch.zeros_like(model.fine[0].weight))


def test_spec_mel_band_branch_ignores_a_level_change_the_fine_branch_sees():
    """A constant added to every log bin (a gain change) leaves the per-window-normalised band view unchanged."""
    model = registry.build("spec_mel_cnn").eval()
    x = torch.randn(2, 1, 257, 200)

    def views(inp):
        bands = model.bands(inp.transpose(2, 3)).transpose(2, 3)
        bands = (bands - bands.mean(3, keepdim=True)) / torch.sqrt(bands.var(3, unbiased=False, keepdim=True) + model.eps)
        return model.fine(inp), model.band(bands)

    with torch.no_grad():
        (fine_a, band_a), (fine_b, band_b) = views(x), views(x + 3.0)
    assert torch.allclose(band_a, band_b, atol=1e-4)
    assert not torch.allclose(fine_a, fine_b, atol=1e-2)


@pytest.mark.parametrize("axis", ["frequency", "time"])
def test_spec_mel_masks_hide_one_band_in_training_only(axis):
    from training.models.spec_mel_cnn import FreqMask, TimeMask

    torch.manual_seed(0)
    x = torch.randn(64, 1, 257, 300) + 5.0  # no zeros of its own
    mask = (FreqMask(40) if axis == "frequency" else TimeMask(40)).train()
    zeros = mask(x) == 0
    # (examples, rows along the masked axis) hidden across the whole other axis
    hidden = zeros.all(dim=3)[:, 0] if axis == "frequency" else zeros.all(dim=2)[:, 0]
    assert int(zeros.sum()) == int(hidden.sum()) * (300 if axis == "frequency" else 257)  # nothing else hidden
    widths = hidden.sum(dim=1)
    assert widths.max() <= 40 and widths.max() > 20 and len(set(widths.tolist())) > 5
    for row in hidden[widths > 0]:
        where = torch.nonzero(row)[:, 0]
        assert int(where[-1] - where[0]) + 1 == len(where)  # one contiguous band
    assert torch.equal(mask.eval()(x), x)
    plain = registry.build("spec_mel_cnn")
    masked = registry.build("spec_mel_cnn", freq_mask_bins=40, time_mask_frames=40)
    assert registry.count_params(plain) == registry.count_params(masked)
    assert plain.state_dict().keys() == masked.state_dict().keys()  # old checkpoints still load
    with pytest.raises(registry.ArchitectureError, match="mask width"):
        registry.build("spec_mel_cnn", **{"freq_mask_bins" if axis == "frequency" else "time_mask_frames": -1})


def test_spec_mel_mgd_reads_group_delay_in_the_fine_branch_only():
    """The stem's second channel is the group delay: changing those rows changes the logits, and
    with the second channel's weights zeroed the model is a SpecMelCNN of the magnitude rows."""
    torch.manual_seed(0)
    model = registry.build("spec_mel_mgd_cnn").eval()
    x = torch.randn(2, 1, 514, 397)
    other = x.clone()
    other[:, :, 257:] = torch.randn(2, 1, 257, 397)
    with torch.no_grad():
        assert model(torch.randn(1, 514, 120)).shape == (1, 2)
        assert not torch.allclose(model(x), model(other), atol=1e-4)
        plain = registry.build("spec_mel_cnn").eval()
        state = {k: v for k, v in model.state_dict().items()}
        state["fine.0.weight"] = state["fine.0.weight"][:, :1]
        plain.load_state_dict(state)
        model.fine[0].weight[:, 1] = 0.0
        assert torch.allclose(model(x), plain(x[:, :, :257]), atol=1e-5)
        assert torch.allclose(model(other), model(x), atol=1e-5)


def test_spec_mel_multitask_head_trains_beside_the_veracity_head_and_is_dropped_at_export():
    """spec_mel_cnn_mt: the source head reads the same 96-d vector; the exported copy is SpecMelCNN
    itself (46,742 parameters, the same veracity logits); fewer than two sources is refused."""
    arch = registry.get("spec_mel_cnn_mt")
    assert arch.multitask and arch.feature_spec() == logspec_spec()
    check_source_head_export("spec_mel_cnn_mt", torch.randn(3, 1, 257, 397), 46_742)


def test_separable_blocks_are_depthwise_then_pointwise_and_widen_the_same_budget():
    """spec_mel_cnn_sep: each block after a branch's first is a depthwise 3x3 (groups = channels)
    then a 1x1 conv; the first convs are the default's. It ends 160 + 144 wide (the default 48 + 48)
    for about the default's parameters; its source head is dropped at export."""
    sep, plain = registry.build("spec_mel_cnn_sep"), registry.build("spec_mel_cnn")
    for branch, first_kernel in ((sep.fine, (5, 5)), (sep.band, (3, 3))):
        convs = [m for m in branch if isinstance(m, torch.nn.Conv2d)]
        assert convs[0].kernel_size == first_kernel and convs[0].groups == 1
        depthwise, pointwise = convs[1::2], convs[2::2]
        assert len(depthwise) == len(pointwise) == 3
        assert all(d.groups == d.in_channels == d.out_channels and d.kernel_size == (3, 3) for d in depthwise)
        assert all(p.kernel_size == (1, 1) and p.groups == 1 for p in pointwise)
    assert sep.head[1].in_features == 160 + 144 and plain.head[1].in_features == 96
    assert not any(m.groups > 1 for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    assert abs(registry.count_params(sep) - registry.count_params(plain)) < 100
    check_source_head_export("spec_mel_cnn_sep_mt", torch.randn(2, 1, 257, 397), 46_802)
    with torch.no_grad():
        assert sep.eval()(torch.randn(1, 1, 257, 120)).shape == (1, 2)  # any window length


def test_squeeze_excitation_scales_each_channel_by_a_gate_computed_from_the_input():
    from training.models.logmel_cnn import conv_blocks
    from training.models.resnetse import SqueezeExcite

    torch.manual_seed(0)
    plain, gated = conv_blocks((6, 8), se_reduction=0), conv_blocks((6, 8), se_reduction=2)
    layers = list(gated)
    gates = [m for m in layers if isinstance(m, SqueezeExcite)]
    assert len(gates) == 2 and all(isinstance(layers[layers.index(g) - 1], torch.nn.ReLU) for g in gates)
    # each gate: width -> max(width // 2, 4) -> width, with biases
    assert registry.count_params(gated) - registry.count_params(plain) == sum(
        2 * c * max(c // 2, 4) + max(c // 2, 4) + c for c in (6, 8))
    seen = []

    def keep(module, inputs, output):  # returns None, so the gate's output is left as it is
        seen.append((inputs[0], output))

    gates[0].register_forward_hook(keep)
    gated.eval()
    with torch.no_grad():
        gated(torch.randn(1, 1, 24, 30))
        gated(3.0 * torch.randn(1, 1, 24, 30) + 1.0)
    ratios = []
    for x, y in seen:
        on = x > 1e-3  # after ReLU: the gate is the ratio wherever the input is not zero
        ratio = torch.where(on, y / x.clamp_min(1e-3), torch.nan)
        per_channel = torch.nanmean(ratio.flatten(2), dim=2)[0]
        spread = (ratio - per_channel[None, :, None, None]).abs()[on]  # every live position, not a mean
        assert spread.max() < 1e-5 and bool(((per_channel > 0) & (per_channel < 1)).all())
        ratios.append(per_channel)
    assert (ratios[0] - ratios[1]).abs().max() > 1e-3  # another input, other gates
    # spec_mel_cnn_se's reduction 8 is the smallest that fits the budget (SE_REDUCTION's comment)
    assert registry.count_params(registry.build("spec_mel_cnn", se_reduction=4)) == 51_065 > 50_000
    for bad in (-1, 2.5):
        with pytest.raises(registry.ArchitectureError, match="se_reduction"):
            registry.build("spec_mel_cnn", se_reduction=bad)


def test_frequency_position_head_sees_where_a_cue_is_and_global_pooling_does_not():
    """spec_mel_cnn_fp pools over time only. Moving a blob up 32 bins (two rows of the fine branch,
    whose total stride is 16) leaves the global-pool fine vector unchanged but moves the fp model's
    rows by two, so its head, which weighs each row, gives other logits."""
    torch.manual_seed(0)
    plain, fp = registry.build("spec_mel_cnn").eval(), registry.build("spec_mel_cnn_fp").eval()
    assert fp.head[1].in_features == 48 * 16 + 48 * 5 and plain.head[1].in_features == 96
    x = torch.zeros(1, 1, 257, 100)
    x[:, :, 96:112, 40:60] = 3.0
    moved = torch.roll(x, 32, dims=2)
    with torch.no_grad():
        assert torch.allclose(plain.fine(x).flatten(), plain.fine(moved).flatten(), atol=1e-6)
        rows, rows_moved = fp.fine(x), fp.fine(moved)
        assert rows.shape == (1, 48, 16)
        assert torch.allclose(rows_moved[:, :, 2:], rows[:, :, :-2], atol=1e-6)
        assert not torch.allclose(rows_moved, rows, atol=1e-3)
        assert (fp(x) - fp(moved)).abs().max() > 1e-3
        assert fp(torch.randn(2, 1, 257, 120)).shape == (2, 2)  # any window length
    with pytest.raises(registry.ArchitectureError, match="pooling must be one of"):
        registry.build("spec_mel_cnn", pooling="freq")


def test_frequency_position_multitask_head_is_dropped_at_export():
    """spec_mel_cnn_fp_mt trains a source head on the same 1,008-d vector; export keeps 48,566 parameters."""
    model = registry.build("spec_mel_cnn_fp_mt", n_sources=19).eval()
    assert registry.count_params(model) == 48_566 + 1_009 * 19
    exported = model.export_module().eval()
    x = torch.randn(2, 1, 257, 397)
    with torch.no_grad():
        assert torch.equal(exported(x), model(x)[0])
    assert registry.count_params(exported) == 48_566


def test_frequency_max_pooling_keeps_a_one_band_cue_at_full_strength_wherever_it_is():
    """spec_mel_cnn_fmax takes the time mean, then the largest row. Moving a blob 32 bins (two fine
    rows) leaves its vector unchanged, as global pooling does, while a cue in one band scores more
    than global pooling's average over all 16 rows; the source head is dropped at export."""
    torch.manual_seed(0)
    fmax = registry.build("spec_mel_cnn_fmax").eval()
    fp = registry.build("spec_mel_cnn_fp").eval()
    convs = {k: v for k, v in fp.state_dict().items() if not k.startswith("head.")}
    fmax.load_state_dict(convs, strict=False)  # same convs; only the pooling and the head differ
    assert fmax.head[1].in_features == 96
    x = torch.zeros(1, 1, 257, 100)
    x[:, :, 96:112, 40:60] = 3.0
    moved = torch.roll(x, 32, dims=2)
    with torch.no_grad():
        rows = fp.fine(x)  # (1, 48, 16): the time means per row
        vec = fmax.fine(x)
        assert vec.shape == (1, 48) and torch.equal(vec, rows.amax(dim=2))
        assert torch.allclose(fmax.fine(moved), vec, atol=1e-6)
        assert (vec - rows.mean(dim=2)).max() > 0.1  # the average over rows dilutes the blob
        assert fmax(torch.randn(2, 1, 257, 120)).shape == (2, 2)
    mt = registry.build("spec_mel_cnn_fmax_mt", n_sources=19).eval()
    assert registry.count_params(mt) == 46_742 + 97 * 19
    exported = mt.export_module().eval()
    with torch.no_grad():
        assert torch.equal(exported(x), mt(x)[0])
    assert registry.count_params(exported) == 46_742


def test_statistics_pooling_tells_a_flickering_cue_from_a_steady_one_of_the_same_mean():
    """spec_mel_cnn_stats pools each channel to its mean over rows, then to its mean and standard
    deviation over frames. A cue that comes and goes and a steady one of the same time mean get the
    same mean half, which is all global pooling keeps, and different deviations; the source head
    is dropped at export."""
    from training.models.spec_mel_cnn import TimeStats

    steady = torch.full((1, 2, 4, 10), 0.5)
    flicker = torch.zeros(1, 2, 4, 10)
    flicker[..., ::2] = 1.0
    a, b = TimeStats()(steady), TimeStats()(flicker)
    assert a.shape == (1, 4) and torch.equal(a[:, :2], b[:, :2])
    assert torch.allclose(b[:, 2:], torch.full((1, 2), 0.5), atol=1e-4) and float(a[:, 2:].max()) < 0.01
    x = torch.randn(3, 5, 7, 11)
    ref = torch.cat([x.mean(dim=(2, 3)), x.mean(dim=2).std(dim=2, unbiased=False)], dim=1)
    assert torch.allclose(TimeStats(eps=0.0)(x), ref, atol=1e-5)
    mt = registry.build("spec_mel_cnn_stats_mt", n_sources=19).eval()
    assert mt.head[1].in_features == 192 and registry.count_params(mt) == 46_934 + 193 * 19
    exported = mt.export_module().eval()
    spec = torch.randn(2, 1, 257, 120)
    with torch.no_grad():
        assert torch.equal(exported(spec), mt(spec)[0])
    assert registry.count_params(exported) == 46_934


@pytest.mark.parametrize("name, make_spec", [("spec_mel_cnn", logspec_spec), ("spec_mel_cnn_fp", logspec_spec),
                                             ("spec_mel_cnn_fmax", logspec_spec), ("spec_mel_cnn_hires", hires_spec),
                                             ("spec_mel_cnn_sep", logspec_spec),
                                             ("spec_mel_cnn_stats", logspec_spec),
                                             ("spec_mel_mgd_cnn", spec_mgd_spec),
                                             ("spec_mel_cep_cnn", logspec_spec),
                                             ("spec_mel_cnn_se", logspec_spec)])
def test_spec_mel_exports_to_onnx_and_tflite_matching_torch(tmp_path, name, make_spec):
    """The fixed projection, the in-model normalisation and the row split survive both exporters (float)."""
    from export.api import export_bundle

    torch.manual_seed(0)
    model = registry.build(name).eval()
    spec = make_spec()
    spec = spec.with_global_stats(np.full(spec.n_bins, -4.0, np.float32), np.full(spec.n_bins, 2.0, np.float32))
    rng = np.random.default_rng(0)
    windows = [(0.1 * rng.standard_normal(64000)).astype(np.float32) for _ in range(2)]
    bundle = export_bundle(model, spec, tmp_path / "b", formats=("onnx", "tflite"), architecture=name,
                           eval_windows=windows, profile=False)
    for fmt in ("onnx", "tflite"):
        assert bundle.meta.export_gates["results"][f"{fmt}/float32"]["max_abs_logit_diff"] <= 1e-4
    # The runtime computes the same front end from the bundle's spec: its window logits are torch's.
    import edge_cm
    from edge_cm.errors import InvalidSamplesError
    from edge_cm.features import compute_features

    with torch.no_grad():
        expected = model(torch.from_numpy(compute_features(spec, windows[0]))[None, None]).numpy()[0]
    for backend in ("onnx", "tflite"):
        clip = edge_cm.load(tmp_path / "b", backend=backend).detect_array(windows[0], 16000)
        assert len(clip.windows[0].logits) == 2 and np.allclose(clip.windows[0].logits, expected, atol=1e-4)
    with pytest.raises(InvalidSamplesError, match="NaN|finite"):
        edge_cm.load(tmp_path / "b", backend="onnx").detect_array(np.full(64000, np.nan, np.float32), 16000)
