"""ResNetSE recipe: GE2E loss, BIM, KD loss, model sizes, and the student exported and run by edge_cm."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from edge_cm.errors import DataError
from edge_cm.features import compute_features, resnetse_spec
from training.frontend_torch import TorchFrontEnd
from training.models import registry
from training.models.resnetse import PAPER_FIGURES, ResNetSE, ResNetSEConfig
from training.resnetse.bim import BIMConfig, bim, speaker_adversarial
from training.resnetse.families import CLASSES, class_index, family_of
from training.resnetse.ge2e import GE2ELoss
from training.resnetse.kd import KDConfig, kd_loss


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread: on a shared 2-core machine two threads mostly wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- GE2E ---------------------------------------------------------------------------------

def _ge2e_by_hand(e: np.ndarray, w: float, b: float) -> float:
    """Softmax GE2E loss written out for 2 speakers x 2 utterances (own centroid = the other utterance)."""
    def cos(u, v):
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    losses = []
    for j in range(2):
        for i in range(2):
            other_speaker = 1 - j
            own = e[j, 1 - i]  # centroid of speaker j without utterance i: the other utterance
            s_own = w * cos(e[j, i], own) + b
            s_other = w * cos(e[j, i], e[other_speaker].mean(axis=0)) + b
            losses.append(-s_own + math.log(math.exp(s_own) + math.exp(s_other)))
    return float(np.mean(losses))


def test_ge2e_loss_equals_hand_computed_case_and_trains_w():
    e = np.array([[[1.0, 0.2, 0.0], [0.8, 0.5, 0.1]],
                  [[0.1, 1.0, 0.3], [-0.2, 0.7, 0.9]]])
    loss_fn = GE2ELoss(init_w=3.0, init_b=-1.5)
    emb = torch.tensor(e, dtype=torch.float64, requires_grad=True)
    loss = loss_fn.double()(emb)
    assert float(loss.detach()) == pytest.approx(_ge2e_by_hand(e, 3.0, -1.5), abs=1e-10)
    loss.backward()
    # dL/dw by central differences of the hand formula.
    h = 1e-5
    numeric = (_ge2e_by_hand(e, 3.0 + h, -1.5) - _ge2e_by_hand(e, 3.0 - h, -1.5)) / (2 * h)
    assert float(loss_fn.w.grad) == pytest.approx(numeric, rel=1e-6)
    assert abs(numeric) > 1e-3
    # b shifts every similarity of a row equally, so the softmax loss cannot depend on it:
    # its gradient reaches b and is exactly zero.
    assert loss_fn.b.grad is not None and float(loss_fn.b.grad) == pytest.approx(0.0, abs=1e-12)
    assert emb.grad is not None and float(emb.grad.abs().sum()) > 0


def test_ge2e_w_is_clamped_positive():
    e = torch.randn(3, 4, 8, generator=torch.Generator().manual_seed(0))
    neg, tiny = GE2ELoss(init_w=-2.0), GE2ELoss(init_w=1e-6)
    assert float(neg(e)) == pytest.approx(float(tiny(e)), abs=1e-6)
    # With w ~ 0 every similarity is b: loss = log(N).
    assert float(neg(e)) == pytest.approx(math.log(3), abs=1e-4)


# -- BIM ----------------------------------------------------------------------------------

def _tiny_model() -> ResNetSE:
    torch.manual_seed(0)
    cfg = ResNetSEConfig(channels=(4, 4, 8, 8), blocks=(1, 1, 1, 1), embed_dim=16, attention_dim=8,
                         se_reduction=2)
    return ResNetSE(cfg).eval()


def test_bim_first_step_is_minus_alpha_sign_of_gradient(real_speech):
    model, front = _tiny_model(), TorchFrontEnd(resnetse_spec())
    wave = torch.from_numpy(real_speech[None, :8000].copy())
    x1 = model.embed(front(torch.from_numpy(real_speech[None, 8000:16000].copy()))).detach()

    def objective(w):
        return F.cosine_similarity(x1, model.embed(front(w)), dim=-1)

    cfg = BIMConfig(steps=1)
    delta = bim(objective, wave, cfg)
    probe = torch.zeros_like(wave, requires_grad=True)
    (grad,) = torch.autograd.grad(objective(wave + probe).sum(), probe)
    assert float((grad != 0).float().mean()) > 0.9
    # atol: (W + D) - W rounds at float32 resolution of W; a wrong sign would be off by 2 * alpha (1.8e-4).
    torch.testing.assert_close(delta, -cfg.alpha * grad.sign(), rtol=0, atol=1e-7)
    assert cfg.alpha == pytest.approx(3.0 / 32768)


def test_bim_stays_within_epsilon_and_lowers_similarity(real_speech):
    model, front = _tiny_model(), TorchFrontEnd(resnetse_spec())
    w1 = torch.from_numpy(np.stack([real_speech[:8000], real_speech[16000:24000]]).copy())
    w2 = torch.from_numpy(np.stack([real_speech[8000:16000], real_speech[24000:32000]]).copy())
    embed = lambda w: model.embed(front(w))  # noqa: E731
    cfg = BIMConfig(steps=5, epsilon_int16=7.0, threshold=0.4)
    attack = speaker_adversarial(embed, w1, w2, cfg, modules=(model,))
    delta = attack.waves - w2
    assert float(delta.abs().max()) <= cfg.epsilon + 1e-7
    assert float(delta.abs().max()) == pytest.approx(cfg.epsilon, rel=1e-3)  # the bound is reached, then held
    with torch.no_grad():
        before = F.cosine_similarity(embed(w1), embed(w2), dim=-1)
    assert torch.all(attack.similarity < before)
    assert torch.equal(attack.keep, attack.similarity <= 0.4)
    assert not model.training


# -- KD -----------------------------------------------------------------------------------

def test_kd_loss_matches_formula_and_reduces_to_nll():
    s = np.array([[2.0, -1.0, 0.5], [0.1, 0.3, -2.0]])
    t = np.array([[1.0, 0.0, 3.0], [-1.0, 2.0, 0.0]])
    y = np.array([2, 1])

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    temp, gamma = 5.0, 0.5
    lp_s, lp_t = log_softmax(s / temp), log_softmax(t / temp)
    kl = float(np.mean(np.sum(np.exp(lp_t) * (lp_t - lp_s), axis=1)))
    nll = float(-np.mean(log_softmax(s)[np.arange(2), y]))
    expected = gamma * temp ** 2 * kl + (1 - gamma) * nll
    got = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), KDConfig(temperature=temp, gamma=gamma))
    assert float(got) == pytest.approx(expected, rel=1e-10)
    got0 = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), KDConfig(temperature=temp, gamma=0.0))
    assert float(got0) == pytest.approx(nll, rel=1e-10)
    # Only the teacher's soft targets differ between these: gamma = 1 is pure distillation.
    got1 = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), KDConfig(temperature=temp, gamma=1.0))
    assert float(got1) == pytest.approx(temp ** 2 * kl, rel=1e-10)


# -- model, classes -----------------------------------------------------------------------

def test_teacher_and_student_sizes_match_the_paper():
    sizes = {}
    for name in ("resnetse_teacher", "resnetse_student"):
        arch = registry.get(name)
        model = registry.build(name)
        sizes[name] = (registry.count_params(model), registry.count_macs(model, arch.input_shape))
        paper = PAPER_FIGURES[name]
        assert sizes[name][0] == pytest.approx(paper["params"], rel=0.01)
        assert sizes[name][1] == pytest.approx(paper["macs"], rel=0.05)
        assert arch.input_shape == (1, 40, 398)
    ratio = sizes["resnetse_student"][0] / sizes["resnetse_teacher"][0]
    assert ratio == pytest.approx(0.225, abs=0.005)


def test_quarter_width_stand_ins_keep_each_layout_at_a_quarter_of_the_channels():
    from training.resnetse.ablation import WIDTHS, AblationConfig, Budget, BUDGETS

    for full_name, quarter_name in zip(WIDTHS["paper"], WIDTHS["quarter"]):
        full, quarter = registry.build(full_name).eval(), registry.build(quarter_name).eval()
        convs = [[m for m in net.modules() if isinstance(m, torch.nn.Conv2d)] for net in (full, quarter)]
        assert len(convs[0]) == len(convs[1]) > 30
        for a, b in zip(*convs):
            assert (a.out_channels, a.kernel_size, a.stride) == (4 * b.out_channels, b.kernel_size, b.stride)
        with torch.no_grad():
            assert quarter(torch.randn(2, 1, 40, 199)).shape == (2, len(CLASSES))
        assert registry.count_params(quarter) < 0.1 * registry.count_params(full)
    with pytest.raises(ValueError, match="width"):
        AblationConfig(bonafide_manifest="b.csv", spoof_manifest="s.csv", out="o", budget=Budget(**BUDGETS["tiny"]),
                       width="half")


def test_ablation_reuses_a_stage_only_when_its_saved_config_is_the_same(tmp_path, bonafide_dir):
    import dataclasses
    import os

    from training.resnetse import pipeline
    from training.resnetse.ablation import _stage

    cfg = pipeline.PretrainConfig(bonafide_manifest=bonafide_dir / "manifest.csv", out=tmp_path / "ge2e.pt",
                                  architecture="resnetse_student_quarter", speakers=2, utterances=2,
                                  crop_seconds=0.5, steps=1)
    results: dict = {}
    path = _stage(pipeline.pretrain, cfg, True, results)  # nothing there yet: trains
    assert "reused" not in results
    os.utime(path, (1, 1))
    assert _stage(pipeline.pretrain, cfg, True, results) == path
    assert os.stat(path).st_mtime == 1 and results["reused"] == ["ge2e.pt"]
    with pytest.raises(DataError, match=r"another config \(differs in \['steps'\]\)"):
        _stage(pipeline.pretrain, dataclasses.replace(cfg, steps=2), True, results)
    _stage(pipeline.pretrain, dataclasses.replace(cfg, steps=2), False, results)  # no reuse: trains again
    assert os.stat(path).st_mtime > 1 and len(pipeline.load_checkpoint(path)[1]["history"]) == 2


def test_ablation_markdown_has_a_per_system_table():
    from training.resnetse.ablation import markdown

    per = {"voc_lpc": {"eer": 0.1, "eer_bim": 0.5, "n": 40}, "tts_x": {"eer": 0.25, "eer_bim": None, "n": 12}}
    row = {"table": "teacher", "row": "nll_only", "eer": 0.2, "eer_bim": 0.6, "n_bonafide": 50, "n_spoof": 52,
           "params": 10, "train_s": 1.0, "eval_s": 2.0, "per_system": per}
    text = markdown({"config": {"budget": {}}, "rows": [row, dict(row, row="ge2e_nll", per_system={})]})
    assert "| row | tts_x (12) | voc_lpc (40) |" in text
    assert "| nll_only | 0.250 / - | 0.100 / 0.500 |" in text and "| ge2e_nll | - / - | - / - |" not in text
    assert "| ge2e_nll | - | - |" in text


def test_any_input_length_gives_one_logit_vector_per_item():
    model = registry.build("resnetse_student").eval()
    with torch.no_grad():
        for frames in (57, 398):
            out = model(torch.randn(2, 1, 40, frames))
            assert out.shape == (2, len(CLASSES))
            assert model.embed(torch.randn(2, 40, frames)).shape == (2, 512)


def test_classes_and_family_mapping():
    assert CLASSES[0] == "bonafide" and CLASSES[-1] == "adversarial" and len(CLASSES) == 8
    expected = {"tts_espeak_en": "tts_formant", "tts_festival_kal": "tts_concatenative",
                "tts_flite_slt": "tts_concatenative", "tts_piper_lessac": "tts_neural",
                "voc_world": "vocoder_source_filter",
                "voc_mlsa": "vocoder_source_filter", "voc_lpc": "vocoder_source_filter",
                "voc_griffinlim": "vocoder_spectrogram", "voc_hifigan": "vocoder_spectrogram",
                "voc_mel_griffinlim": "vocoder_spectrogram", "voc_mel40_griffinlim": "vocoder_spectrogram",
                "codec_lyra_3200": "codec_neural"}
    for system, family in expected.items():
        assert family_of(system) == family
    assert len(set(expected.values())) == 6
    assert class_index("bonafide") == 0 and class_index("codec_lyra_6000") == CLASSES.index("codec_neural")
    with pytest.raises(DataError, match="manifest.csv"):
        family_of("vc_unknown", source="manifest.csv")


# -- export --------------------------------------------------------------------------------

def test_student_checkpoint_exports_through_edge_cm_export_and_runs_in_edge_cm(tmp_path, real_speech, capsys):
    """A distillation-stage checkpoint -> `edge-cm-export --checkpoint` -> ONNX (torch.onnx.export) and
    TFLite (litert-torch) of the student, run by the edge_cm runtime with front end (b)."""
    from edge_cm.bundle import load_bundle
    from edge_cm.detector import load
    from export.cli import main
    from training.resnetse.pipeline import save_checkpoint

    torch.manual_seed(1)
    model = registry.build("resnetse_student").eval()
    # extra as the distill stage writes it (a JSON-able config), so the safe weights-only read is exercised
    ckpt = save_checkpoint(tmp_path / "student.pt", model, "resnetse_student", "distill", [{"loss": 1.5}],
                           {"config": {"out": str(tmp_path / "student.pt"), "aeg": "active"}, "seconds": 1.0})
    out = tmp_path / "bundle"
    assert main(["--checkpoint", str(ckpt), "--formats", "onnx,tflite", "--no-profile", "--out", str(out)]) == 0
    meta = load_bundle(out).meta
    assert meta.architecture == "resnetse_student" and meta.feature_spec == resnetse_spec()
    assert list(meta.classes) == list(CLASSES)
    assert meta.training_data["stage"] == "distill" and meta.training_data["final_train_loss"] == 1.5
    spec = resnetse_spec()
    window = real_speech[:64000]
    feats = compute_features(spec, window)
    with torch.no_grad():
        logits_torch = model(torch.from_numpy(feats)[None, None]).numpy()[0]
    raw = float(np.logaddexp.reduce(logits_torch[1:]) - logits_torch[0])
    for backend in ("onnx", "tflite"):
        result = load(out, backend=backend).detect_array(window, 16000)
        logits_rt = np.asarray(result.windows[0].logits)
        assert logits_rt.shape == (len(CLASSES),)
        np.testing.assert_allclose(logits_rt, logits_torch, atol=1e-3, err_msg=backend)
        assert result.windows[0].score == pytest.approx(1 / (1 + math.exp(-raw)), abs=1e-4)

    ge2e = save_checkpoint(tmp_path / "ge2e.pt", model, "resnetse_student", "ge2e", [])
    assert main(["--checkpoint", str(ge2e), "--formats", "onnx", "--no-profile", "--out", str(tmp_path / "no")]) == 1
    assert "GE2E pre-training" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_a_chosen_front_end_travels_from_the_checkpoint_into_the_bundle_and_the_runtime(tmp_path, real_speech):
    """A student trained on the 257-bin log STFT: the network's frequency size follows the front end,
    and the exported bundle makes the runtime compute that front end, not (b)."""
    from edge_cm.bundle import load_bundle
    from edge_cm.detector import load
    from export.cli import main
    from training.resnetse.frontends import front_end_spec
    from training.resnetse.pipeline import build_model, load_scorer, save_checkpoint

    spec = front_end_spec("logspec257")
    assert spec.n_bins == 257 and spec.normalization == "instance" and spec != resnetse_spec()
    torch.manual_seed(2)
    model = build_model("resnetse_student_quarter", spec).eval()
    ckpt = save_checkpoint(tmp_path / "s.pt", model, "resnetse_student_quarter", "distill", [{"loss": 1.0}],
                           front_end="logspec257")
    scorer, _ = load_scorer(ckpt)
    assert scorer.spec == spec
    window = real_speech[:64000]
    feats = compute_features(spec, window)
    assert feats.shape == (257, 398)
    with torch.no_grad():
        logits_torch = model(torch.from_numpy(feats)[None, None]).numpy()[0]
        np.testing.assert_allclose(scorer(torch.from_numpy(window)[None]).numpy()[0], logits_torch, atol=1e-4)
    out = tmp_path / "bundle"
    assert main(["--checkpoint", str(ckpt), "--formats", "onnx", "--no-profile", "--out", str(out)]) == 0
    assert load_bundle(out).meta.feature_spec == spec
    logits_rt = np.asarray(load(out, backend="onnx").detect_array(window, 16000).windows[0].logits)
    np.testing.assert_allclose(logits_rt, logits_torch, atol=1e-3)


def test_stages_refuse_a_teacher_or_init_of_another_front_end(tmp_path):
    from training.resnetse import pipeline
    from training.resnetse.frontends import front_end_spec

    b_ckpt = pipeline.save_checkpoint(tmp_path / "b.pt", registry.build("resnetse_student_quarter"),
                                      "resnetse_student_quarter", "finetune", [])
    data = pipeline.DataConfig(bonafide_manifest=tmp_path / "b.csv", spoof_manifest=tmp_path / "s.csv")
    with pytest.raises(DataError, match="GE2E checkpoint was trained on another front end than 'logspec257'"):
        pipeline.finetune(pipeline.FinetuneConfig(data=data, out=tmp_path / "t.pt", init=b_ckpt,
                                                  architecture="resnetse_student_quarter", front_end="logspec257"))
    with pytest.raises(DataError, match="teacher was trained on another front end than 'logmel40_levels'"):
        pipeline.distill(pipeline.DistillConfig(data=data, out=tmp_path / "s.pt", teacher=b_ckpt,
                                                architecture="resnetse_student_quarter",
                                                front_end="logmel40_levels"))
    with pytest.raises(DataError, match="unknown ResNetSE front end 'mfcc'"):
        pipeline.PretrainConfig(bonafide_manifest=tmp_path / "b.csv", out=tmp_path / "g.pt", front_end="mfcc")
    assert not (tmp_path / "t.pt").exists() and not (tmp_path / "s.pt").exists()
    # A checkpoint written before the choice existed carries no spec: it was trained on (b).
    old = torch.load(b_ckpt, weights_only=True)
    old["extra"] = {}
    torch.save(old, tmp_path / "old.pt")
    assert pipeline.load_scorer(tmp_path / "old.pt")[0].spec == resnetse_spec()
    levels = front_end_spec("logmel40_levels")
    assert levels.n_bins == 40 and levels.normalization == "none"


def test_stage_checkpoint_problems_are_typed_errors_naming_the_file(tmp_path):
    """Each stage starts from the previous one's checkpoint: a truncated file, a foreign
    dict, weights of another architecture and a bundle folder are DataErrors, not torch's."""
    from training.resnetse.pipeline import load_checkpoint, save_checkpoint

    good = save_checkpoint(tmp_path / "student.pt", registry.build("resnetse_student"), "resnetse_student",
                           "distill", [{"loss": 1.0}])
    assert load_checkpoint(good)[1]["stage"] == "distill"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    renamed = tmp_path / "renamed.pt"
    state = torch.load(good, weights_only=True)
    torch.save(dict(state, architecture="resnetse_teacher"), renamed)
    (tmp_path / "bundle").mkdir()
    for path, words in ((truncated, "cannot read checkpoint"), (foreign, "lacks ['architecture', 'state_dict']"),
                        (renamed, "do not fit"), (tmp_path / "bundle", "not a bundle"),
                        (tmp_path / "missing.pt", "not found")):
        with pytest.raises(DataError) as info:
            load_checkpoint(path)
        assert words in str(info.value) and path.name in str(info.value), (path.name, str(info.value))


def test_student_int8_tflite_is_full_integer_residuals_and_means_included(tmp_path, real_speech):
    """Residual ADDs (with their ReLU) and the squeeze-excitation/pooling MEANs are quantised too,
    so no op of the int8 student runs in float, and its logits still follow torch."""
    from export.tflite_export import export_tflite_int8, run_tflite, tflite_float_ops, tflite_interpreter

    torch.manual_seed(2)
    model = registry.build("resnetse_student").eval()
    spec = resnetse_spec()
    starts = range(0, len(real_speech) - 64000, 8000)
    feats = np.stack([compute_features(spec, real_speech[s:s + 64000])[None, None] for s in starts])
    path = export_tflite_int8(model, torch.from_numpy(feats[0]), iter(feats[::2]), tmp_path / "student_int8.tflite")
    assert tflite_float_ops(path) == []
    held_out = feats[1::2]
    with torch.no_grad():
        want = np.concatenate([model(torch.from_numpy(x)).numpy() for x in held_out])
    got = run_tflite(tflite_interpreter(path), held_out)
    spread = want.max() - want.min()
    assert np.abs(got - want).max() < 0.1 * spread


# -- the stages end to end (slow: three trainings and a BIM evaluation) ----------------------

@pytest.mark.slow
def test_stages_run_end_to_end_on_a_toy_corpus(tmp_path, bonafide_dir):
    from training.resnetse import pipeline
    from training.resnetse.bim import BIMConfig
    from training.toy_corpus import build_toy_corpus

    manifest = build_toy_corpus(bonafide_dir / "manifest.csv", tmp_path / "toy", per_split=2)
    bona = bonafide_dir / "manifest.csv"
    ge2e = pipeline.pretrain(pipeline.PretrainConfig(
        bonafide_manifest=bona, out=tmp_path / "ge2e.pt", architecture="resnetse_student", speakers=2,
        utterances=2, crop_seconds=0.5, steps=2))
    data = pipeline.DataConfig(bonafide_manifest=bona, spoof_manifest=manifest, window_seconds=0.5, max_per_class=2)
    common = dict(data=data, adversarial_pairs=2, epochs=2, batch_size=4, bim=BIMConfig(threshold=1.0))
    teacher = pipeline.finetune(pipeline.FinetuneConfig(
        out=tmp_path / "teacher.pt", init=ge2e, architecture="resnetse_student", aeg="static", **common))
    student = pipeline.distill(pipeline.DistillConfig(
        out=tmp_path / "student.pt", teacher=teacher, aeg="active", **common))
    model, ckpt = pipeline.load_checkpoint(student)
    assert ckpt["stage"] == "distill" and len(ckpt["history"]) == 2
    # threshold 1.0 keeps every attacked pair, so each epoch trains on 2 adversarial examples.
    assert [row["adversarial"] for row in ckpt["history"]] == [2, 2]
    assert ckpt["history"][1]["lr"] == pytest.approx(3e-4 * 0.95)
    result = pipeline.evaluate(model, data, split="dev", max_per_class=2, batch_size=4)
    assert 0.0 <= result.eer <= 1.0 and 0.0 <= result.eer_bim <= 1.0
    assert result.n_bonafide == 2 and result.n_spoof == 4  # 2 per family: tts_formant, tts_concatenative


def test_a_stage_run_depends_on_its_seed_not_on_what_the_process_drew_before(tmp_path, bonafide_dir):
    from training.resnetse import pipeline
    from training.toy_corpus import build_toy_corpus

    manifest = build_toy_corpus(bonafide_dir / "manifest.csv", tmp_path / "toy", per_split=2)

    def weights(seed: int, name: str) -> dict:
        data = pipeline.DataConfig(bonafide_manifest=bonafide_dir / "manifest.csv", spoof_manifest=manifest,
                                   window_seconds=0.5, max_per_class=2, seed=seed)
        out = pipeline.finetune(pipeline.FinetuneConfig(data=data, out=tmp_path / name, epochs=1, batch_size=4,
                                                        architecture="resnetse_student_quarter", augment=False))
        return pipeline.load_checkpoint(out)[0].state_dict()

    first = weights(0, "a.pt")
    torch.rand(1000)  # what an earlier stage in the same process would do to the global generator
    again = weights(0, "b.pt")
    other = weights(1, "c.pt")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.slow
def test_front_end_study_trains_each_front_end_and_seed_and_reuses_them(tmp_path, bonafide_dir):
    from training.resnetse.ablation import BUDGETS, Budget
    from training.resnetse.families import SPOOF_FAMILIES
    from training.resnetse.front_end_study import FrontEndStudyConfig, run
    from training.resnetse.frontends import front_end_spec
    from training.resnetse.pipeline import load_scorer
    from training.toy_corpus import build_toy_corpus

    manifest = build_toy_corpus(bonafide_dir / "manifest.csv", tmp_path / "toy", per_split=2)
    # The toy corpus has spoofs in train and dev only.
    config = FrontEndStudyConfig(bonafide_manifest=bonafide_dir / "manifest.csv", spoof_manifest=manifest,
                                 out=tmp_path / "study", budget=Budget(**BUDGETS["tiny"]),
                                 front_ends=("logmel40", "logspec257"), seeds=(0,), augment=False,
                                 splits=("train", "dev"))
    first = run(config)
    assert [(r["front_end"], r["seed"]) for r in first["runs"]] == [("logmel40", 0), ("logspec257", 0)]
    for r in first["runs"]:
        assert load_scorer(tmp_path / "study" / f"{r['front_end']}_s0.pt")[0].spec == front_end_spec(r["front_end"])
        for split in ("train", "dev"):
            assert 0.0 <= r["splits"][split]["eer"] <= 1.0 and r["splits"][split]["n_spoof"] > 0
            assert set(r["splits"][split]["families"]) <= set(SPOOF_FAMILIES)
    text = (tmp_path / "study" / "results.md").read_text()
    assert "| logspec257 | 1 |" in text and "Mean over seeds" in text and "dev EER" in text
    again = run(FrontEndStudyConfig(**{**config.__dict__, "reuse": True}))
    assert again["reused"] == ["logmel40_s0.pt", "logspec257_s0.pt"]
    # The same checkpoints on the same evaluation windows give the same figures.
    for a, b in zip(again["runs"], first["runs"]):
        assert [a["splits"][s]["eer"] for s in ("train", "dev")] == [b["splits"][s]["eer"] for s in ("train", "dev")]
    with pytest.raises(DataError, match="unknown front end"):
        FrontEndStudyConfig(**{**config.__dict__, "front_ends": ("mfcc",)})


def test_stage_configs_refuse_a_recipe_they_cannot_run(tmp_path):
    from training.resnetse import pipeline

    data = pipeline.DataConfig(bonafide_manifest=tmp_path / "b.csv", spoof_manifest=tmp_path / "s.csv")
    with pytest.raises(DataError, match="aeg must be one of"):
        pipeline.FinetuneConfig(data=data, out=tmp_path / "t.pt", aeg="sometimes")
    with pytest.raises(DataError, match=r"static AEG needs the GE2E checkpoint \(init\)"):
        pipeline.FinetuneConfig(data=data, out=tmp_path / "t.pt", aeg="static")
    with pytest.raises(DataError, match=r"static AEG needs the GE2E checkpoint \(static_from\)"):
        pipeline.DistillConfig(data=data, out=tmp_path / "s.pt", teacher=tmp_path / "t.pt", aeg="static")
    with pytest.raises(DataError, match="static AEG needs the GE2E checkpoint"):
        pipeline.ClassifierStageConfig(data=data, out=tmp_path / "x.pt", aeg="static")
    with pytest.raises(DataError, match="KD needs the fine-tuned teacher"):
        pipeline.DistillConfig(data=data, out=tmp_path / "s.pt")
    ok = pipeline.DistillConfig(data=data, out=tmp_path / "s.pt", use_kd=False, aeg="static",
                                static_from=tmp_path / "g.pt")
    assert ok.architecture == "resnetse_student" and "static_field" not in pipeline.asdict(ok)


def test_evaluate_command_scores_a_checkpoint_on_a_chosen_split(tmp_path, bonafide_dir, bonafide_rows, capsys):
    from training.resnetse import pipeline
    from training.resnetse.cli import main

    # Real speech files stand in for two "spoof" systems: the command's contract, not a detector, is tested.
    train = [r for r in bonafide_rows if r["split"] == "train"][:4]
    corpus = tmp_path / "manifest.csv"
    systems = ["tts_flite_x", "voc_lpc"] * 2
    corpus.write_text("path,label,system,family,split\n" + "".join(
        f"{bonafide_dir / r['path']},spoof,{system},tts,train\n" for r, system in zip(train, systems)))
    model = registry.build("resnetse_student_quarter")
    ckpt = pipeline.save_checkpoint(tmp_path / "s.pt", model, "resnetse_student_quarter", "distill", [])
    args = ["evaluate", "--checkpoint", str(ckpt), "--bonafide-manifest", str(bonafide_dir / "manifest.csv"),
            "--spoof-manifest", str(corpus), "--split", "train", "--window-seconds", "0.5", "--max-per-class", "3"]
    assert main(args) == 0
    line, *system_lines = capsys.readouterr().out.strip().splitlines()[-3:]
    eer = float(line.split("EER ")[1].split(",")[0])
    want = pipeline.evaluate(model, pipeline.DataConfig(bonafide_manifest=bonafide_dir / "manifest.csv",
                                                        spoof_manifest=corpus, window_seconds=0.5),
                             "train", 3, robust=False)
    assert eer == pytest.approx(want.eer, abs=5e-4) and "3 bona fide / 4 spoof windows of 0.5 s" in line
    assert [ln.split()[0] for ln in system_lines] == ["tts_flite_x", "voc_lpc"]
    for ln, (system, r) in zip(system_lines, want.per_system.items()):
        assert float(ln.split("EER ")[1].split(",")[0]) == pytest.approx(r["eer"], abs=5e-4)
        assert "(2 spoof windows)" in ln and "under BIM -" in ln
    with pytest.raises(DataError, match="no bona fide clips in split 'nonsense'"):
        main(args[:-6] + ["--split", "nonsense"])


def test_per_system_eers_score_each_system_against_every_bona_fide_clip():
    from training.resnetse.pipeline import equal_error_rate, per_system_eers

    bona = np.array([0.1, 0.2, 0.3, 0.4])
    spoof = np.array([0.9, 0.05, 0.8, 0.15, 0.35])
    systems = ["voc_lpc", "tts_x", "voc_lpc", "tts_x", "tts_x"]
    perturbed = np.array([0.0, 0.05, 0.95, 0.15, 0.35])
    got = per_system_eers(bona, spoof, systems, perturbed)
    assert list(got) == ["tts_x", "voc_lpc"]  # sorted, whatever the input order
    assert got["voc_lpc"]["eer"] == 0.0 and got["voc_lpc"]["n"] == 2  # every spoof above every bona fide
    assert got["tts_x"]["n"] == 3
    assert got["tts_x"]["eer"] == pytest.approx(equal_error_rate(bona, spoof[[1, 3, 4]]))
    assert got["tts_x"]["eer"] > 0.5  # its spoofs mostly score below the bona fide clips
    # One of voc_lpc's two spoofs was pushed below every bona fide score by the attack.
    assert got["voc_lpc"]["eer_bim"] == pytest.approx(equal_error_rate(bona, perturbed[[0, 2]]))
    assert got["voc_lpc"]["eer_bim"] > got["voc_lpc"]["eer"]
    assert per_system_eers(bona, spoof, systems)["voc_lpc"]["eer_bim"] is None


def test_corpus_bonafide_copies_win_over_the_shared_clips(tmp_path, bonafide_dir, bonafide_rows):
    from training.resnetse.data import classification_clips

    corpus = tmp_path / "manifest.csv"
    corpus.write_text("path,label,speaker,system,family,split\n"
                      "bonafide/a.flac,bonafide,spk1,-,bonafide,train\n"
                      "spoof/b.flac,spoof,,voc_lpc,vocoder,train\n"
                      "spoof/c.flac,spoof,,tts_piper_joe,tts,test\n")
    bona, spoofs = classification_clips(bonafide_dir / "manifest.csv", corpus, ("train",))
    assert [c.path for c in bona] == [tmp_path / "bonafide" / "a.flac"] and bona[0].speaker == "spk1"
    assert [(c.path.name, CLASSES[c.label]) for c in spoofs] == [("b.flac", "vocoder_source_filter")]
    only_spoofs = tmp_path / "spoofs.csv"
    only_spoofs.write_text("path,label,system,family,split\nspoof/b.flac,spoof,voc_lpc,vocoder,train\n")
    bona, _ = classification_clips(bonafide_dir / "manifest.csv", only_spoofs, ("train",))
    assert len(bona) == sum(r["split"] == "train" for r in bonafide_rows) > 0
    assert all(c.path.is_file() for c in bona[:3])
