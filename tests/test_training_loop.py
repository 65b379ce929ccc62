"""The shared training loop: config, data windows, one step, exact resume, evaluation."""
from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_cm.errors import DataError
from training import dataset as ds
from training.config import TrainConfig, load_config
from training.evaluate import ScoredSet, compute_metrics, evaluate, plot_det, plot_histogram
from training.train import (ClassificationLoss, Trainer, family_balanced_source_weights, inverse_frequency_weights,
                            load_checkpoint, prepare, run)


@pytest.fixture(scope="module")
def toy_manifest(tmp_path_factory, bonafide_dir):
    """Real bona fide clips + espeak-ng / flite speech: 4 files per class and system and split."""
    from training.toy_corpus import build_toy_corpus

    return build_toy_corpus(bonafide_dir / "manifest.csv", tmp_path_factory.mktemp("toy"), per_split=4)


def toy_config(manifest, **changes) -> TrainConfig:
    cfg = TrainConfig(architecture="efficientcnn_small_mt", manifest=str(manifest), batch_size=4, max_epochs=3,
                      num_workers=0, norm_stats_windows=8, max_val_files=8, progress=False, seed=3)
    return replace(cfg, **changes)


def test_fit_window_loops_short_and_crops_long_audio():
    short = np.arange(5, dtype=np.float32)
    assert ds.fit_window(short, 12, None).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    long = np.arange(100, dtype=np.float32)
    centre = ds.fit_window(long, 10, None)
    assert centre.tolist() == list(range(45, 55))
    rng = np.random.default_rng(1)
    offsets = {int(ds.fit_window(long, 10, rng)[0]) for _ in range(50)}
    assert len(offsets) > 10 and min(offsets) >= 0 and max(offsets) <= 90


def test_copy_lag_finds_a_shift_either_way(real_speech):
    quiet = (0.001 * np.random.default_rng(0).standard_normal(2400)).astype(np.float32)
    assert ds.copy_lag(np.concatenate([quiet, real_speech]), real_speech) == 2400
    assert ds.copy_lag(real_speech[1600:], real_speech) == -1600
    # a window that starts outside the clip is moved inside; a short clip is looped from ``start``
    assert ds.fit_window_from(np.arange(10.0), 4, 8).tolist() == [6, 7, 8, 9]
    assert ds.fit_window_from(np.arange(3.0), 5, 1).tolist() == [1, 2, 0, 1, 2]
    assert ds.window_start(10, 4, 0.0) == 0 and ds.window_start(10, 4, 0.999) == 6


def test_grouped_batches_keep_groups_whole_and_cover_every_index_once():
    groups = [[0, 5], [1], [2, 3, 4], [6], [7, 8], [9]]

    def batches(epoch):
        return ds.EpochBatchSampler(10, 4, epoch=epoch, seed=1, shuffle=True, groups=groups).batches()

    for epoch in range(8):
        got = batches(epoch)
        flat = [i for b in got for i in b]
        assert len(flat) == len(set(flat)) and all(len(b) <= 4 for b in got)
        dropped = set(range(10)) - set(flat)  # only a last batch of one may be dropped
        assert not dropped or (len(dropped) == 1 and [dropped.pop()] in groups)
        for g in groups:
            assert not set(g) & set(flat) or any(set(g) <= set(b) for b in got)
    assert batches(0) == batches(0) and batches(0) != batches(1)
    with pytest.raises(DataError, match="exactly once"):
        ds.EpochBatchSampler(10, 4, epoch=0, seed=1, shuffle=True, groups=[[0, 1]])


def test_paired_copies_need_copy_synthesis_spoofs(toy_manifest):
    with pytest.raises(DataError, match="paired_copies"):
        prepare(toy_config(toy_manifest, paired_copies=True))


def test_a_waveform_model_trains_on_instance_normalised_windows_without_a_channel_axis(toy_manifest, tmp_path):
    """wave_cnn_mt through the shared loop: its windows are the raw samples (no global stats, no
    channel axis), and best.pt rebuilds the same model."""
    cfg = toy_config(toy_manifest, architecture="wave_cnn_mt", max_epochs=1, max_steps_per_epoch=2)
    trainer = run(cfg, tmp_path / "wave")
    assert trainer.state.global_step == 2
    x = trainer.train_set[0]["features"]
    assert x.shape == (64000,) and abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1.0) < 1e-2
    model, meta = load_checkpoint(tmp_path / "wave" / "best.pt")
    assert meta["architecture"] == "wave_cnn_mt" and meta["feature_spec"].kind == "waveform"
    assert meta["feature_spec"].norm_mean is None
    with torch.no_grad():
        batch = torch.stack([trainer.val_set[i]["features"] for i in range(2)])
        trainer.model.eval()
        assert torch.equal(model(batch)[0], trainer.model(batch)[0])


def test_a_spectrogram_and_waveform_model_trains_with_statistics_for_the_spectrogram_rows_only(toy_manifest,
                                                                                             tmp_path):
    """spec_mel_wave_cnn_mt through the shared loop: global stats are computed on the training rows
    for the 257 spectrogram rows while the 160 sample rows stay as recorded, and best.pt rebuilds
    the same model."""
    cfg = toy_config(toy_manifest, architecture="spec_mel_wave_cnn_mt", max_epochs=1, max_steps_per_epoch=2)
    trainer = run(cfg, tmp_path / "specwave")
    assert trainer.state.global_step == 2
    model, meta = load_checkpoint(tmp_path / "specwave" / "best.pt")
    spec = meta["feature_spec"]
    assert spec.kind == "log_spec_wave" and spec.normalization == "global"
    assert len(set(spec.norm_mean[:257])) > 200 and spec.norm_mean[257:] == (0.0,) * 160
    x = trainer.train_set[0]["features"]
    assert x.shape == (1, 417, 397) and abs(float(x[0, :257].mean())) < 1.0
    assert 0 < float(x[0, 257:].abs().max()) <= 1.0  # raw samples, not z-scored
    with torch.no_grad():
        batch = torch.stack([trainer.val_set[i]["features"] for i in range(2)])
        trainer.model.eval()
        # to float rounding: the conv kernels chosen can differ between two runs of the same weights
        assert torch.allclose(model(batch)[0], trainer.model(batch)[0], atol=1e-5)


def test_inverse_frequency_weights():
    w = inverse_frequency_weights(np.array([0, 0, 0, 1]), 2)
    torch.testing.assert_close(w, torch.tensor([4 / 6, 4 / 2]))
    # Weighted, each class contributes equally to the loss.
    assert float(w[0] * 3) == pytest.approx(float(w[1] * 1))


def test_family_balanced_weights_give_each_spoofing_family_the_same_share():
    from training.data.manifest import ManifestRow

    def row(system, family, label="spoof"):
        return ManifestRow(path=f"{system}.flac", label=label, system=system, family=family, split="train")

    rows = ([row("-", "bonafide", "bonafide")] * 5 + [row("tts_a", "tts")] * 3 + [row("tts_b", "tts")]
            + [row("voc_c", "vocoder")] * 2)
    w = family_balanced_source_weights(rows, ["none", "tts_a", "tts_b", "voc_c", "voc_unseen"])
    torch.testing.assert_close(w, torch.tensor([1.0, 0.75, 0.75, 1.5, 1.0]))
    tts_share, voc_share = float(3 * w[1] + w[2]), float(2 * w[3])
    assert tts_share == voc_share and tts_share + voc_share == 6  # equal family shares, same spoof total
    for power in (0.5, 0.0):  # milder: shares in proportion to clip count ** (1 - power)
        w = family_balanced_source_weights(rows, ["none", "tts_a", "tts_b", "voc_c"], power)
        tts_share, voc_share = float(3 * w[1] + w[2]), float(2 * w[3])
        assert tts_share / voc_share == pytest.approx((4 / 2) ** (1 - power))
        assert tts_share + voc_share == pytest.approx(6) and float(w[0]) == 1.0 and w[1] == w[2]
    assert torch.equal(w, torch.ones(4))  # power 0 changes nothing


def test_example_weights_reweight_the_veracity_loss_by_source():
    torch.manual_seed(0)
    logits = torch.randn(6, 2)
    batch = {"label": torch.tensor([0, 1, 1, 1, 0, 1]), "source": torch.tensor([0, 1, 2, 2, 0, ds.IGNORE_INDEX])}
    class_w = torch.tensor([0.8, 1.3])
    plain = ClassificationLoss(class_w)(logits, batch)[0]
    ones = ClassificationLoss(class_w, example_weights=torch.ones(3))(logits, batch)[0]
    torch.testing.assert_close(ones, plain)  # equal source weights: exactly the class-weighted loss
    src_w = torch.tensor([1.0, 3.0, 0.5])
    got = ClassificationLoss(class_w, example_weights=src_w)(logits, batch)[0]
    w = torch.tensor([0.8, 1.3 * 3.0, 1.3 * 0.5, 1.3 * 0.5, 0.8, 1.3])  # the unknown source weighs 1
    ce = torch.nn.functional.cross_entropy(logits, batch["label"], reduction="none")
    torch.testing.assert_close(got, (w * ce).sum() / w.sum())
    assert not torch.isclose(got, plain)


def test_system_tilt_weighs_each_spoofing_system_by_its_recent_loss():
    from training.system_tilt import SystemTilt

    # Sources: none (bona fide), sys_a (3 training clips), sys_b (1), an unseen system (no training clips).
    tilt = SystemTilt(torch.tensor([0.0, 3.0, 1.0, 0.0]), temperature=0.5, decay=0.9)
    torch.testing.assert_close(tilt.weights(), torch.ones(4))  # before any batch: the plain loss
    source = torch.tensor([0, 1, 1, 2, 3, ds.IGNORE_INDEX])
    tilt.observe(torch.tensor([5.0, 0.2, 0.4, 1.0, 9.0, 9.0]), source)
    torch.testing.assert_close(tilt.mean_loss, torch.tensor([0.0, 0.3, 1.0, 0.0]))  # first batch sets the mean
    p = torch.tensor([0.75, 0.25])
    e = torch.exp(torch.tensor([0.3, 1.0]) / 0.5)
    expected = e / (p * e).sum()
    w = tilt.weights()
    torch.testing.assert_close(w[1:3], expected)
    assert float(w[0]) == 1.0 and float(w[3]) == 1.0  # bona fide and unseen systems are not tilted
    assert float(w[2]) > float(w[1]) and float((p * w[1:3]).sum()) == pytest.approx(1.0)  # spoof total kept
    assert float(w[2] / w[1]) == pytest.approx(np.exp((1.0 - 0.3) / 0.5), rel=1e-5)
    tilt.observe(torch.tensor([0.0]), torch.tensor([2]))  # later batches move the mean by 1 - decay
    assert float(tilt.mean_loss[2]) == pytest.approx(0.9) and float(tilt.mean_loss[1]) == pytest.approx(0.3)
    tilt.observe(torch.tensor([7.0, 7.0]), torch.tensor([0, ds.IGNORE_INDEX]))  # nothing of a spoofing system
    assert float(tilt.mean_loss[2]) == pytest.approx(0.9)
    # A system not seen yet counts with the seen systems' mean loss.
    late = SystemTilt(torch.tensor([0.0, 1.0, 1.0, 2.0]), temperature=0.25)
    late.observe(torch.tensor([0.2, 0.6]), torch.tensor([1, 2]))
    normaliser = 0.25 * np.exp(0.2 / 0.25) + 0.25 * np.exp(0.6 / 0.25) + 0.5 * np.exp(0.4 / 0.25)
    assert float(late.weights()[3]) == pytest.approx(np.exp(0.4 / 0.25) / normaliser, rel=1e-5)
    flat = SystemTilt(torch.tensor([0.0, 3.0, 1.0]), temperature=1e6)
    flat.observe(torch.tensor([0.1, 3.0]), torch.tensor([1, 2]))
    torch.testing.assert_close(flat.weights(), torch.ones(3), atol=1e-4, rtol=0)  # a large tau: the plain loss
    for bad in ({"temperature": 0.0}, {"temperature": 1.0, "decay": 1.0}):
        with pytest.raises(ValueError):
            SystemTilt(torch.tensor([0.0, 1.0]), **bad)


def test_a_tilted_loss_learns_from_training_batches_only():
    from training.system_tilt import SystemTilt

    torch.manual_seed(0)
    logits = torch.randn(6, 2, requires_grad=True)
    batch = {"label": torch.tensor([0, 1, 1, 1, 0, 1]), "source": torch.tensor([0, 1, 2, 2, 0, ds.IGNORE_INDEX])}
    class_w = torch.tensor([0.8, 1.3])
    tilt = SystemTilt(torch.tensor([0.0, 2.0, 2.0]), temperature=0.5)
    loss_fn = ClassificationLoss(class_w, tilt=tilt)
    with torch.no_grad():  # validation: scored with the current weights, nothing learnt
        torch.testing.assert_close(loss_fn(logits, batch)[0], ClassificationLoss(class_w)(logits, batch)[0])
    assert not tilt.seen.any()
    first = loss_fn(logits, batch)[0]  # a training step: this batch's weights are the ones before it
    torch.testing.assert_close(first, ClassificationLoss(class_w)(logits, batch)[0])
    ce = torch.nn.functional.cross_entropy(logits.detach(), batch["label"], reduction="none")
    torch.testing.assert_close(tilt.mean_loss[1:], torch.stack([ce[1], ce[2:4].mean()]))
    second = loss_fn(logits, batch)[0]
    tilted = ClassificationLoss(class_w, example_weights=tilt.weights())(logits, batch)[0]
    torch.testing.assert_close(second, tilted)
    assert not torch.isclose(second, first)
    second.backward()  # the weights are constants: gradients flow through the cross-entropy only
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_a_tilted_run_logs_its_system_weights_and_refuses_what_it_cannot_combine(toy_manifest, tmp_path):
    cfg = toy_config(toy_manifest, system_tilt=0.5, max_epochs=2, max_steps_per_epoch=3)
    trainer = run(cfg, tmp_path / "r")
    spoof_systems = sorted({r.system for r in trainer.train_set.rows if not r.is_bonafide})
    import csv

    with open(tmp_path / "r" / "tilt.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1"] * len(spoof_systems) + ["2"] * len(spoof_systems)
    assert sorted(r["system"] for r in rows if r["epoch"] == "2") == spoof_systems
    last = [r for r in rows if r["epoch"] == "2"]
    assert sum(float(r["share"]) * float(r["weight"]) for r in last) == pytest.approx(1.0, abs=1e-3)
    heaviest = max(last, key=lambda r: float(r["weight"]))
    assert float(heaviest["mean_loss"]) == max(float(r["mean_loss"]) for r in last)
    saved = torch.load(tmp_path / "r" / "last.pt", weights_only=True)["train_state"]["tilt"]
    torch.testing.assert_close(saved["mean_loss"], trainer.tilt.mean_loss)
    run(toy_config(toy_manifest, max_epochs=1, max_steps_per_epoch=1), tmp_path / "plain")
    with pytest.raises(DataError, match="not trained with system_tilt"):  # resuming a plain run with a tilt
        run(replace(cfg, max_epochs=1), tmp_path / "plain", resume=True)
    with pytest.raises(DataError, match="was trained with system_tilt"):  # and a tilted run without one
        run(replace(cfg, system_tilt=0.0, max_epochs=3), tmp_path / "r", resume=True)
    assert load_config(tmp_path / "r" / "config.yaml").system_tilt == 0.5  # the refused resume left it alone
    names = trainer.train_set.systems  # the progress line: heaviest first, weight then average loss
    described = trainer.tilt.describe(names).split(", ")
    assert len(described) == len(spoof_systems) and described[0].startswith(f"{heaviest['system']} ")
    assert described[0].endswith(f" {float(heaviest['weight']):.2f} ({float(heaviest['mean_loss']):.3f})")
    with pytest.raises(DataError, match="one-class"):
        run(replace(cfg, architecture="spec_mel_cnn_mt", model_args={"head": "one_class"}), tmp_path / "oc")
    assert not (tmp_path / "oc").exists()
    for bad, match in (({"system_tilt": -1.0}, "system_tilt must"), ({"system_tilt": float("nan")}, "system_tilt must"),
                       ({"system_tilt": 0.5, "class_weighting": "family_balanced"}, "family_balanced"),
                       ({"system_tilt": 0.5, "sam_rho": 0.05}, "sam_rho"),
                       ({"system_tilt_decay": 1.0}, "system_tilt_decay")):
        with pytest.raises(DataError, match=match):
            toy_config(toy_manifest, **bad)


def test_a_family_balanced_run_weights_its_sources_and_refuses_a_one_class_head(toy_manifest, tmp_path, capsys):
    cfg = toy_config(toy_manifest, class_weighting="family_balanced", max_epochs=1, max_steps_per_epoch=1)
    # The toy corpus's spoofs are all TTS: call one engine's a vocoder, and keep half of its training
    # clips, so that the two families differ in size.
    rows = [replace(r, family="vocoder") if r.system == "flite_kal" else r for r in ds.read_rows(str(toy_manifest))]
    train_rows = [r for r in rows if r.split == "train"]
    voc_rows = [r for r in train_rows if r.system == "flite_kal"]
    train_rows = [r for r in train_rows if r not in voc_rows[len(voc_rows) // 2:]]
    prepared = prepare(cfg, train_rows=train_rows, val_rows=[r for r in rows if r.split == "dev"])
    trainer = run(cfg, tmp_path / "r", prepared=prepared)
    spoofs = [r for r in train_rows if not r.is_bonafide]
    n_voc = sum(r.family == "vocoder" for r in spoofs)
    assert 0 < n_voc < len(spoofs) - n_voc
    expected = [1.0 if name == ds.NONE_SOURCE else
                len(spoofs) / (2 * (n_voc if name == "flite_kal" else len(spoofs) - n_voc))
                for name in trainer.train_set.systems]
    torch.testing.assert_close(trainer.loss_fn.example_weights, torch.tensor(expected))
    n_tts = len(spoofs) - n_voc  # the run prints the weights it uses, per family
    assert (f"family weights of spoof examples: tts {len(spoofs) / (2 * n_tts):.2f} ({n_tts} clips), "
            f"vocoder {len(spoofs) / (2 * n_voc):.2f} ({n_voc} clips)") in capsys.readouterr().out
    assert trainer.state.global_step == 1 and np.isfinite(trainer.state.history[-1]["train_loss"])
    with pytest.raises(DataError, match="one-class"):
        run(replace(cfg, architecture="spec_mel_cnn_mt", model_args={"head": "one_class"}), tmp_path / "oc")
    assert not (tmp_path / "oc").exists()  # refused before the run folder is written
    with pytest.raises(DataError, match="class_weighting"):
        toy_config(toy_manifest, class_weighting="per_family")
    for power in (1.5, -0.1, float("nan")):
        with pytest.raises(DataError, match="family_power"):
            toy_config(toy_manifest, class_weighting="family_balanced", family_power=power)
    with pytest.raises(DataError, match="only applies"):
        toy_config(toy_manifest, family_power=0.5)


def test_config_round_trip_and_errors(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("architecture: efficientcnn_small\nmanifest: data/m.csv\nbatch_size: 16\n"
                        "augment:\n  noise_prob: 0.5\n  noise_snr_db: [0, 10]\n")
    cfg = load_config(cfg_path)
    assert cfg.manifest == str((tmp_path / "data" / "m.csv").resolve())
    assert cfg.augment.noise_snr_db == (0, 10) and cfg.augment.build() is not None
    cfg.save(tmp_path / "copy.yaml")
    assert load_config(tmp_path / "copy.yaml") == cfg
    # A --manifest override is relative to the working directory, and the copy saved in a run folder
    # (read again by --resume) still points at it.
    monkeypatch.chdir(tmp_path / "data")
    overridden = load_config(cfg_path, manifest="other.csv")
    assert overridden.manifest == str((tmp_path / "data" / "other.csv").resolve())
    (tmp_path / "run").mkdir()
    overridden.save(tmp_path / "run" / "config.yaml")
    assert load_config(tmp_path / "run" / "config.yaml").manifest == overridden.manifest
    (tmp_path / "bad.yaml").write_text("architecture: x\nmanifest: m.csv\nbatch_sise: 3\n")
    with pytest.raises(DataError, match=r"bad\.yaml.*batch_sise"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "broken.yaml").write_text("architecture: [x\n")
    with pytest.raises(DataError, match=r"broken\.yaml:\d"):
        load_config(tmp_path / "broken.yaml")


def test_shipped_configs_load_and_name_registered_architectures(toy_manifest):
    from pathlib import Path

    from training.models import registry

    configs = sorted((Path(__file__).resolve().parents[1] / "training" / "configs").glob("*.yaml"))
    assert len([p for p in configs if "efficientcnn" in p.name]) >= 4
    for path in configs:
        cfg = load_config(path, manifest=str(toy_manifest))
        assert registry.get(cfg.architecture).name == cfg.architecture
        babble_speech = (np.ones(1600, dtype=np.float32),) if cfg.augment.needs_babble else ()
        chain = cfg.augment.build(babble_speech)  # a bad augmentation setting is a DataError here, not in a worker
        assert (chain is None) == (not cfg.augment.enabled), path.name


def test_augmentation_changes_training_windows_only(toy_manifest):
    from training.config import AugmentConfig

    cfg = toy_config(toy_manifest, augment=AugmentConfig(noise_prob=1.0, noise_snr_db=(0.0, 5.0)))
    plain = toy_config(toy_manifest)
    rows = [r for r in ds.read_rows(toy_manifest) if r.split == "train"][:2]
    from edge_cm.features import efficientcnn_spec

    noisy = ds.WindowDataset(rows, efficientcnn_spec(), train=True, seed=1, augment=cfg.augment.build())
    clean = ds.WindowDataset(rows, efficientcnn_spec(), train=True, seed=1, augment=plain.augment.build())
    a, b = noisy.window(0, 0), clean.window(0, 0)
    assert a.shape == b.shape == (64000,)
    snr = 10 * np.log10(np.sum(b.astype(np.float64) ** 2) / np.sum((a - b).astype(np.float64) ** 2))
    assert -1.0 < snr < 6.0  # noise at 0-5 dB SNR was added
    evaluation = ds.WindowDataset(rows, efficientcnn_spec(), train=False, augment=cfg.augment.build())
    assert evaluation.augment is None


def test_babble_augmentation_mixes_talkers_the_channel_benchmark_does_not_use(toy_manifest, bonafide_dir,
                                                                             real_speech):
    from training import babble
    from training.config import AugmentConfig
    from training.train import training_babble

    train_bona = [r for r in ds.read_rows(bonafide_dir / "manifest.csv") if r.split == "train"]
    held_out = {babble.talker(r) for r in babble.benchmark_rows(train_bona)}
    picked = babble.training_rows(train_bona, 50)
    assert len(picked) == 50 and not held_out & {babble.talker(r) for r in picked}
    assert len({babble.talker(r) for r in picked}) > 10
    # a source without speaker IDs counts as one talker per language, never one per clip
    unlabelled = next(r for r in train_bona if not r.speaker)
    assert babble.talker(unlabelled) == f"{unlabelled.source}:{unlabelled.language}"

    augment = AugmentConfig(noise_prob=1.0, noise_snr_db=(5.0, 5.0), noise_kinds=("babble",), babble_clips=50)
    cfg = toy_config(toy_manifest, augment=augment)
    speech = training_babble(cfg, train_bona)
    assert len(speech) == 50  # the picked clips, in order (the manifest rounds durations to 1 ms)
    np.testing.assert_allclose([s.size for s in speech], [16000 * r.seconds for r in picked], atol=16)
    clip = real_speech[:64000]
    out, labels = cfg.augment.build(speech)(clip, 0)
    assert labels == ["noise_babble"]
    snr = 10 * np.log10(np.sum(clip.astype(np.float64) ** 2) / np.sum((out - clip).astype(np.float64) ** 2))
    assert snr == pytest.approx(5.0, abs=0.1)
    # the toy corpus's four train-split voices are all in the benchmark's babble: nothing left to mix
    with pytest.raises(DataError, match="outside the channel benchmark's babble"):
        prepare(cfg)
    with pytest.raises(DataError, match="babble"):
        cfg.augment.build()
    with pytest.raises(DataError, match="noise_kinds"):
        AugmentConfig(noise_kinds=("recorded",))
    with pytest.raises(DataError, match="babble_clips"):
        AugmentConfig(babble_clips=0)


def test_dataset_windows_are_deterministic_per_epoch(toy_manifest):
    cfg = toy_config(toy_manifest)
    prep = prepare(cfg)
    spec = prep.train_set.spec
    assert spec.normalization == "global" and len(spec.norm_mean) == 865
    item = prep.train_set[(0, 0)]
    assert item["features"].shape == (1, 865, 390)
    torch.testing.assert_close(prep.train_set[(0, 0)]["features"], item["features"])
    # The sources: none + the two training systems; the held-out dev system has no class.
    assert prep.meta["systems"] == ["none", "espeak_en", "flite_kal"]
    held_out = next(i for i, r in enumerate(prep.val_set.rows) if r.system == "espeak_f3")
    assert prep.val_set[held_out]["source"] == ds.IGNORE_INDEX
    # A long clip gets a different crop in another epoch.
    long_idx = next(i for i, r in enumerate(prep.train_set.rows) if (r.seconds or 0) > 4.5)
    assert not np.array_equal(prep.train_set.window(long_idx, 0), prep.train_set.window(long_idx, 1))


def test_one_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    from training.models.efficientcnn import EfficientCNN

    model = EfficientCNN("small", n_sources=3, n_bins=200, n_frames=200)
    x = torch.randn(4, 1, 200, 200)
    batch = {"features": x, "label": torch.tensor([0, 1] * 2), "source": torch.tensor([0, 1, 0, 2])}
    loss_fn = ClassificationLoss(torch.tensor([1.0, 1.0]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_now() -> float:
        torch.manual_seed(123)  # same dropout masks before and after
        with torch.no_grad():
            return float(loss_fn(model(x), batch)[0])

    model.train()
    before = loss_now()
    opt.zero_grad()
    loss_fn(model(x), batch)[0].backward()
    opt.step()
    assert loss_now() < before


def test_mixup_mixes_features_and_moves_every_target_with_its_example():
    from training.mixup import mix_batch

    torch.manual_seed(0)
    batch = {"features": torch.randn(8, 1, 5, 6), "label": torch.tensor([0, 1] * 4),
             "source": torch.arange(8), "index": torch.arange(100, 108), "name": "kept"}
    mixed, other, lam = mix_batch(batch, 0.4)
    perm = other["source"]  # source i belongs to example i, so it spells the permutation
    assert 0.0 < lam < 1.0 and sorted(perm.tolist()) == list(range(8)) and not torch.equal(perm, torch.arange(8))
    assert torch.allclose(mixed, lam * batch["features"] + (1 - lam) * batch["features"][perm])
    assert torch.equal(other["label"], batch["label"][perm]) and torch.equal(other["index"], batch["index"][perm])
    assert torch.equal(other["features"], batch["features"][perm]) and other["name"] == "kept"
    # With unweighted cross-entropy the two-target loss is the cross-entropy of the mixed soft labels.
    logits = torch.randn(8, 2)
    loss_fn = ClassificationLoss()
    two_targets = lam * loss_fn(logits, batch)[0] + (1 - lam) * loss_fn(logits, other)[0]
    soft = lam * torch.nn.functional.one_hot(batch["label"], 2) + (1 - lam) * torch.nn.functional.one_hot(other["label"], 2)
    assert torch.allclose(two_targets, torch.nn.functional.cross_entropy(logits, soft.float()))


@pytest.mark.parametrize("schedule", ["plateau", "cosine"])
def test_resume_reproduces_the_next_steps_exactly(toy_manifest, tmp_path, schedule):
    cfg = toy_config(toy_manifest, max_epochs=2, max_steps_per_epoch=2, lr_schedule=schedule)
    # Run A: 1 step, checkpoint, then on through an epoch boundary (validation + scheduler) to step 3.
    a = run(cfg, tmp_path / "a", max_steps=1)
    assert a.state.global_step == 1 and a.state.batch == 1
    a.fit(max_steps=3)
    # Run B: the same step, then fresh objects resume from its step-1 last.pt to step 3.
    b_dir = tmp_path / "b"
    b = run(cfg, b_dir, max_steps=1)
    b_resumed = run(cfg, b_dir, resume=True, max_steps=3)
    assert b_resumed is not b and b_resumed.state.global_step == 3
    assert b_resumed.state.epoch == a.state.epoch and b_resumed.state.batch == a.state.batch
    for (name, pa), pb in zip(a.model.state_dict().items(), b_resumed.model.state_dict().values()):
        assert torch.equal(pa, pb), name
    def no_time(history):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert len(a.state.history) == 1 and no_time(a.state.history) == no_time(b_resumed.state.history)
    assert b.state.global_step == 1


@pytest.mark.parametrize("changes", [{}, {"sam_rho": 0.05}, {"mixup_alpha": 0.4}, {"mixup_alpha": 0.4, "sam_rho": 0.05},
                                     {"system_tilt": 0.1}],
                         ids=["adam", "sam", "mixup", "sam+mixup", "tilt"])
def test_resume_in_the_middle_gives_the_same_next_loss(toy_manifest, tmp_path, changes):
    cfg = toy_config(toy_manifest, architecture="efficientcnn_small", **changes)
    a = run(cfg, tmp_path / "a", max_steps=2)
    rng_a = torch.get_rng_state()  # one process, one global RNG: keep A's for A's next step
    fresh = prepare(cfg, feature_spec=a.train_set.spec, systems=a.meta["systems"])
    b = Trainer(cfg, fresh.model, fresh.train_set, fresh.val_set, tmp_path / "a", meta=fresh.meta)
    next_a = next(iter(a.train_loader(a.state.epoch, a.state.batch)))
    torch.set_rng_state(rng_a)
    loss_a = a.train_step(next_a)
    b.load(tmp_path / "a" / "last.pt")  # everything B knows comes from the file
    next_b = next(iter(b.train_loader(b.state.epoch, b.state.batch)))
    assert torch.equal(next_a["index"], next_b["index"])
    assert b.train_step(next_b) == loss_a
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def test_a_finished_run_continues_when_resumed_with_more_epochs(toy_manifest, tmp_path):
    done = run(toy_config(toy_manifest, max_epochs=1, max_steps_per_epoch=2), tmp_path / "r")
    assert done.state.finished and done.state.epoch == 1
    again = run(toy_config(toy_manifest, max_epochs=1, max_steps_per_epoch=2), tmp_path / "r", resume=True)
    assert again.state.epoch == 1 and again.state.global_step == 2  # same budget: nothing more to do
    longer = run(toy_config(toy_manifest, max_epochs=2, max_steps_per_epoch=2), tmp_path / "r", resume=True)
    assert longer.state.finished and longer.state.epoch == 2 and longer.state.global_step == 4
    assert [h["epoch"] for h in longer.state.history] == [1, 2]


def test_cosine_schedule_anneals_from_lr_to_min_lr_whatever_the_validation_loss(toy_manifest, tmp_path):
    # patience 0: a plateau run would cut the rate after any epoch without a new best
    cfg = toy_config(toy_manifest, architecture="efficientcnn_small", max_epochs=4, max_steps_per_epoch=1,
                     lr=1e-3, min_lr=1e-5, lr_schedule="cosine", lr_patience=0)
    trainer = run(cfg, tmp_path / "r")
    logged = [h["lr"] for h in trainer.state.history]
    expected = [1e-5 + (1e-3 - 1e-5) * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)]
    assert trainer.state.epoch == 4 and logged == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("hold", [0, 3])
def test_plateau_rule_waits_for_the_hold_epochs(toy_manifest, tmp_path, hold):
    cfg = toy_config(toy_manifest, architecture="efficientcnn_small", max_epochs=5, max_steps_per_epoch=1,
                     lr=1e-3, lr_factor=0.5, lr_patience=0, lr_hold_epochs=hold)
    prepared = prepare(cfg)
    trainer = Trainer(cfg, prepared.model, prepared.train_set, prepared.val_set, tmp_path / "r", meta=prepared.meta)
    real_validate = trainer.validate

    def pinned_validate():  # the same validation loss every epoch: each epoch the rule sees is a plateau
        return {**real_validate(), "val_loss": 1.0}

    trainer.validate = pinned_validate
    trainer.fit()
    rates = [h["lr"] for h in trainer.state.history]  # the rate each epoch trained at
    # patience 0: the first epoch the rule sees sets the best loss, every later one halves the rate
    cuts = [max(0, e - hold - 2) for e in range(1, 6)]
    assert rates == pytest.approx([1e-3 * 0.5 ** c for c in cuts], rel=1e-12)
    assert trainer.lr == pytest.approx(1e-3 * 0.5 ** (5 - hold - 1), rel=1e-12)


def test_excluded_systems_leave_the_training_split_only(toy_manifest):
    cfg = toy_config(toy_manifest, exclude_systems=["flite_kal"])
    prepared = prepare(cfg)
    kept = {r.system for r in prepared.train_set.rows}
    assert "flite_kal" not in kept and "espeak_en" in kept and any(r.is_bonafide for r in prepared.train_set.rows)
    assert "flite_kal" not in prepared.meta["systems"]  # no source class for a system never trained on
    full = prepare(toy_config(toy_manifest))
    assert len(full.train_set.rows) - len(prepared.train_set.rows) == sum(
        r.system == "flite_kal" for r in full.train_set.rows) > 0
    assert {r.path for r in prepared.val_set.rows} == {r.path for r in full.val_set.rows}
    for names in (["flite_kall"], ["espeak_f3"], ["bonafide"]):  # a typo, a dev-only system, the bona fide rows
        with pytest.raises(DataError, match="exclude_systems"):
            prepare(toy_config(toy_manifest, exclude_systems=names))
    with pytest.raises(DataError, match="list"):
        toy_config(toy_manifest, exclude_systems="flite_kal")


@pytest.fixture(scope="module")
def trained_run(toy_manifest, tmp_path_factory):
    """A 2-epoch run with DataLoader worker processes: (config, trainer, run folder)."""
    cfg = toy_config(toy_manifest, max_epochs=2, max_steps_per_epoch=2, num_workers=2)
    out = tmp_path_factory.mktemp("run") / "run"
    return cfg, run(cfg, out), out


def test_full_run_writes_the_run_folder_and_evaluates(toy_manifest, trained_run, tmp_path):
    cfg, trainer, run_dir = trained_run
    files = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "metrics.csv", "best.pt", "last.pt"} <= files
    assert load_config(run_dir / "config.yaml") == cfg
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + trainer.state.epoch == 3
    model, meta = load_checkpoint(run_dir / "best.pt")
    assert meta["feature_spec"].normalization == "global"
    assert meta["classes"] == ["bonafide", "spoof"] and meta["systems"][0] == "none"
    with torch.no_grad():
        logits, _ = model(torch.zeros(1, 1, 865, 390))
    assert logits.shape == (1, 2)
    rows = [r for r in ds.read_rows(toy_manifest) if r.split == "dev"]
    result = evaluate(run_dir / "best.pt", rows, tmp_path / "eval", resamples=200)
    assert set(result["systems"]) == {"espeak_en", "flite_kal", "espeak_f3"}
    assert 0.0 <= result["pooled"]["eer"] <= 1.0
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["pooled"]["eer"] == result["pooled"]["eer"]
    lo, hi = saved["intervals"]["pooled"]
    assert lo <= saved["pooled"]["eer"] <= hi and set(saved["intervals"]["systems"]) == set(result["systems"])
    scores = (tmp_path / "eval" / "scores.csv").read_text().splitlines()
    assert len(scores) == 1 + len(rows)
    for png in ("det.png", "hist.png"):
        assert (tmp_path / "eval" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_benchmark_table_names_the_epoch_of_best_pt(trained_run):
    _, _, run_dir = trained_run
    spec = importlib.util.spec_from_file_location(
        "efficientcnn_table", Path(__file__).resolve().parents[1] / "benchmarks" / "efficientcnn_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    _, meta = load_checkpoint(run_dir / "best.pt")
    assert table.best_epoch(run_dir / "metrics.csv") == meta["metrics"]["epoch"]


def test_source_head_scoring_weighs_none_against_every_system_and_matches_eval(toy_manifest, trained_run, tmp_path):
    """The benchmark's binary score is `edge-cm-train eval`'s; its source score is log P(none) - log(1 - P(none));
    a run without a source head, a repeated name and a split of one class are refused, and nothing is written."""
    spec = importlib.util.spec_from_file_location(
        "source_head_scoring", Path(__file__).resolve().parents[1] / "benchmarks" / "source_head_scoring.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    g = torch.Generator().manual_seed(0)
    logits, source = torch.randn(6, 2, generator=g), torch.randn(6, 5, generator=g) * 3
    binary, odds = bench.head_log_odds(logits, source, 3)
    p = torch.softmax(source.double(), dim=1)[:, 3].numpy()
    np.testing.assert_allclose(odds, np.log(p) - np.log1p(-p), rtol=1e-9)
    np.testing.assert_allclose(binary, (logits[:, 0] - logits[:, 1]).numpy(), rtol=1e-6)
    assert not np.allclose(bench.head_log_odds(logits, source, 0)[1], odds)  # the index of none matters

    _, _, run_dir = trained_run
    manifest = release_manifest(toy_manifest, tmp_path)
    out = tmp_path / "heads.md"
    assert bench.main(["--checkpoint", f"toy={run_dir / 'best.pt'}", "--manifest", str(manifest),
                       "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    dev = [r for r in ds.read_rows(manifest) if r.split == "dev"]
    assert result["runs"]["toy"]["dev"]["binary"] == pytest.approx(evaluate(run_dir / "best.pt", dev)["pooled"]["eer"])
    assert "| toy |" in out.read_text() and set(result["against_binary"]) == {"dev source", "dev sum",
                                                                              "test source", "test sum"}
    with pytest.raises(DataError, match="--checkpoint names repeat"):
        bench.main(["--checkpoint", f"toy={run_dir / 'best.pt'}", "--checkpoint", f"toy={run_dir / 'last.pt'}",
                    "--manifest", str(manifest), "--out", str(tmp_path / "twice.md")])
    lines = manifest.read_text().splitlines()
    no_test_spoof = tmp_path / "no_test_spoof.csv"
    no_test_spoof.write_text("\n".join(ln for ln in lines if not (",spoof," in ln and ",test," in ln)) + "\n")
    with pytest.raises(DataError, match="no_test_spoof.csv.*test split needs bona fide and spoof rows"):
        bench.main(["--checkpoint", f"toy={run_dir / 'best.pt'}", "--manifest", str(no_test_spoof),
                    "--out", str(tmp_path / "one_class.md")])
    single = torch.load(run_dir / "best.pt", weights_only=False)
    single["architecture"] = "efficientcnn_small"
    single["model_state"] = {k: v for k, v in single["model_state"].items() if not k.startswith("source_head.")}
    torch.save(single, tmp_path / "single.pt")
    with pytest.raises(DataError, match="single.pt.*efficientcnn_small has no source head"):
        bench.main(["--checkpoint", f"one={tmp_path / 'single.pt'}", "--manifest", str(manifest),
                    "--out", str(tmp_path / "single.md")])
    assert not any((tmp_path / f).exists() for f in ("single.md", "twice.md", "one_class.md"))


def test_adapt_starts_from_the_checkpoint_and_scratch_does_not(toy_manifest, trained_run, tmp_path):
    from training.adapt import adapt, take_fraction

    assert len(take_fraction(list(range(16)), 0.0625, 0)) == 1
    assert take_fraction(list(range(16)), 0.25, 5) == sorted(take_fraction(list(range(16)), 0.25, 5))
    _, trainer, run_dir = trained_run
    rows = ds.read_rows(toy_manifest)
    bona = [r for r in rows if r.is_bonafide]
    held = [replace(r, split="train" if i % 2 else "dev")
            for i, r in enumerate(r for r in rows if r.system == "espeak_f3")]
    tuned = adapt(run_dir / "best.pt", bona, held, 0.5, tmp_path / "ft", max_epochs=1, batch_size=4,
                  num_workers=0, progress=False)
    n_train = sum(r.split == "train" for r in held)
    assert sum(not r.is_bonafide for r in tuned.train_set.rows) == -(-n_train // 2)
    assert tuned.train_set.spec == trainer.train_set.spec  # the checkpoint's normalisation
    assert tuned.cfg.lr == pytest.approx(trainer.cfg.lr / 10)
    assert load_config(tmp_path / "ft" / "config.yaml").init_from == str(run_dir / "best.pt")  # provenance
    scratch = adapt(run_dir / "best.pt", bona, held, 0.5, tmp_path / "sc", max_epochs=1, batch_size=4,
                    num_workers=0, progress=False, scratch=True)
    assert scratch.train_set.spec.norm_mean != trainer.train_set.spec.norm_mean  # recomputed
    assert scratch.cfg.init_from == ""
    assert (tmp_path / "ft" / "best.pt").is_file() and (tmp_path / "sc" / "best.pt").is_file()


def brute_force_eer(bona: np.ndarray, spoof: np.ndarray) -> float:
    """EER by sweeping every threshold: the point where FRR and FAR are closest."""
    best = (2.0, 0.0)
    for t in np.concatenate([[-np.inf], np.sort(np.concatenate([bona, spoof]))]):
        frr, far = np.mean(bona <= t) if np.isfinite(t) else 0.0, np.mean(spoof > t) if np.isfinite(t) else 1.0
        if abs(frr - far) < best[0]:
            best = (abs(frr - far), (frr + far) / 2)
    return best[1]


def test_eval_metrics_carry_bootstrap_intervals_by_clip_or_by_speaker():
    """Each EER gets an interval around it; an error-free system's is [0, 0]. When a speaker's clips
    share an offset, redrawing whole speakers gives a wider pooled interval than redrawing clips."""
    from edge_cm.errors import DataError

    rng = np.random.default_rng(0)
    offsets = rng.normal(0.0, 1.5, 10)  # 10 bona fide speakers, 20 clips each
    bona = np.repeat(offsets, 20) + rng.normal(2.0, 0.5, 200)
    easy, hard = rng.normal(-8.0, 0.5, 100), rng.normal(1.0, 1.0, 100)
    scored = ScoredSet(np.concatenate([bona, easy, hard]), np.array([0] * 200 + [1] * 200),
                       ["bonafide"] * 200 + ["easy"] * 100 + ["hard"] * 100, [f"f{i}" for i in range(400)],
                       [f"s{i // 20}" for i in range(200)] + ["easy"] * 100 + [f"h{i % 7}" for i in range(100)])
    by_clip = compute_metrics(scored, resamples=300)
    by_speaker = compute_metrics(scored, resamples=300, unit="speaker")
    for m in (by_clip, by_speaker):
        lo, hi = m["intervals"]["pooled"]
        assert lo <= m["pooled"]["eer"] <= hi
        assert m["intervals"]["systems"]["easy"] == [0.0, 0.0] and set(m["intervals"]["systems"]) == {"easy", "hard"}
    width = lambda m: m["intervals"]["pooled"][1] - m["intervals"]["pooled"][0]  # noqa: E731
    assert width(by_speaker) > 1.5 * width(by_clip) and by_speaker["intervals"]["unit"] == "speaker"
    assert "intervals" not in compute_metrics(scored)
    with pytest.raises(DataError, match="too few"):
        compute_metrics(scored, resamples=50)
    no_speakers = ScoredSet(scored.scores, scored.labels, scored.systems, scored.paths)
    with pytest.raises(DataError, match="speakers"):
        compute_metrics(no_speakers, resamples=200, unit="speaker")


def test_metrics_on_a_synthetic_scored_set(tmp_path):
    rng = np.random.default_rng(0)
    bona = rng.normal(2.0, 1.0, 200)
    easy = rng.normal(-6.0, 0.5, 100)  # well apart from bona fide
    hard = rng.normal(1.5, 1.0, 100)   # overlaps bona fide
    scored = ScoredSet(np.concatenate([bona, easy, hard]), np.array([0] * 200 + [1] * 200),
                       ["bonafide"] * 200 + ["easy"] * 100 + ["hard"] * 100, [f"f{i}" for i in range(400)])
    m = compute_metrics(scored)
    assert m["systems"]["easy"]["eer"] == 0.0 and m["systems"]["easy"]["auc"] == 1.0
    assert m["systems"]["hard"]["eer"] == pytest.approx(brute_force_eer(bona, hard), abs=1 / 200)
    assert m["systems"]["hard"]["eer"] > 0.2
    assert m["pooled"]["eer"] == pytest.approx(brute_force_eer(bona, np.concatenate([easy, hard])), abs=1 / 200)
    assert 0.5 < m["macro_f1_at_eer"] < 1.0
    assert "min_tdcf" not in m
    asv = {"target": rng.normal(3, 1, 100), "nontarget": rng.normal(-3, 1, 100), "spoof": rng.normal(1, 1, 100)}
    with_asv = compute_metrics(scored, asv)
    assert with_asv["min_tdcf"] is not None and 0 < with_asv["min_tdcf"] <= 1.0
    plot_det(scored, tmp_path / "det.png")
    plot_histogram(scored, tmp_path / "hist.png")
    import matplotlib.image as mpimg

    assert mpimg.imread(tmp_path / "det.png").shape[0] > 100
    assert mpimg.imread(tmp_path / "hist.png").shape[1] > 100


def test_bundle_carries_the_training_weights_and_adapt_starts_from_it(toy_manifest, trained_run, tmp_path):
    from edge_cm.errors import BundleError, BundleIntegrityError
    from export.api import export_bundle
    from training.adapt import adapt
    from training.checkpoint_npz import load_checkpoint_npz
    from training.train import read_checkpoint

    _, trainer, run_dir = trained_run
    model, meta = load_checkpoint(run_dir / "best.pt")
    kwargs = dict(formats=("onnx",), architecture=meta["architecture"], profile=False)
    bundle = export_bundle(model.export_module(), meta["feature_spec"], tmp_path / "b",
                           training_checkpoint=read_checkpoint(run_dir / "best.pt"), **kwargs)
    assert bundle.meta.training_weights["file"] == "training_weights.npz"
    restored, restored_meta = load_checkpoint(tmp_path / "b")
    assert restored_meta["systems"] == meta["systems"] and restored_meta["feature_spec"] == meta["feature_spec"]
    assert restored_meta["config"].manifest == toy_manifest.name  # no local path travels in the bundle
    x = torch.randn(2, 1, 865, 390)
    with torch.no_grad():
        for got, want in zip(restored(x), model(x)):  # class logits and the multi-task source head
            torch.testing.assert_close(got, want, rtol=0, atol=0)

    rows = ds.read_rows(toy_manifest)
    bona = [r for r in rows if r.is_bonafide]
    held = [replace(r, split="train" if i % 2 else "dev")
            for i, r in enumerate(r for r in rows if r.system == "espeak_f3")]
    tuned = adapt(tmp_path / "b", bona, held, 0.5, tmp_path / "ft", max_epochs=1, batch_size=4, num_workers=0,
                  progress=False)
    assert tuned.train_set.spec == trainer.train_set.spec and (tmp_path / "ft" / "best.pt").is_file()

    plain = export_bundle(model.export_module(), meta["feature_spec"], tmp_path / "plain", **kwargs)
    assert plain.meta.training_weights == {} and not (tmp_path / "plain" / "training_weights.npz").exists()
    with pytest.raises(BundleError, match="no training weights.*best.pt"):
        read_checkpoint(tmp_path / "plain")
    (tmp_path / "b" / "training_weights.npz").write_bytes(b"not an npz")
    with pytest.raises(BundleIntegrityError, match="training_weights.npz"):
        read_checkpoint(tmp_path / "b" / "bundle.json")
    with pytest.raises(DataError, match="cannot read training weights"):
        load_checkpoint_npz(tmp_path / "b" / "training_weights.npz")

    from training.checkpoint_npz import save_checkpoint_npz

    foreign = dict(read_checkpoint(run_dir / "best.pt"), architecture="logspec_cnn", model_args={})
    torch.save(foreign, tmp_path / "foreign.pt")
    with pytest.raises(DataError, match="foreign.pt.*do not fit architecture"):
        load_checkpoint(tmp_path / "foreign.pt")
    npz = save_checkpoint_npz(dict(foreign, feature_spec={}), tmp_path / "no_spec.npz")
    with pytest.raises(DataError, match=r"lack \['feature_spec'\]"):
        load_checkpoint_npz(npz)


def release_manifest(toy_manifest, tmp_path) -> Path:
    """The toy manifest with absolute paths and a test split: the toy corpus has train and dev
    only, so its dev clips stand in for test too."""
    import csv

    with open(toy_manifest, newline="") as f:
        reader = csv.DictReader(f)
        fields, records = reader.fieldnames, list(reader)
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        for rec in records:
            rec["path"] = str((Path(toy_manifest).parent / rec["path"]).resolve())
        writer.writerows(records + [dict(rec, split="test") for rec in records if rec["split"] == "dev"])
    return manifest


def test_release_of_a_run_without_some_systems_says_so_in_the_card(toy_manifest, trained_run, tmp_path):
    from training.release import main

    _, _, run_dir = trained_run
    ckpt = torch.load(run_dir / "best.pt", weights_only=False)
    ckpt["config"]["exclude_systems"] = ["flite_kal"]  # as if the run had been trained without it
    torch.save(ckpt, tmp_path / "without.pt")
    manifest = release_manifest(toy_manifest, tmp_path)
    train = [r for r in ds.read_rows(manifest) if r.split == "train"]
    assert main(["--checkpoint", str(tmp_path / "without.pt"), "--manifest", str(manifest), "--out",
                 str(tmp_path / "b"), "--formats", "onnx", "--gate-windows", "8", "--calibration-windows", "8"]) == 0
    card = (tmp_path / "b" / "model_card.md").read_text()
    kept = [r for r in train if not r.is_bonafide and r.system != "flite_kal"]
    n_systems = len({r.system for r in kept})
    assert f"and {len(kept)} spoofs" in card and f"from {n_systems} systems (left out: flite_kal)." in card
    assert len(kept) < sum(not r.is_bonafide for r in train)
    data = json.loads((tmp_path / "b" / "bundle.json").read_text())["training_data"]["splits"]
    assert data["train"]["excluded_systems"] == ["flite_kal"] and "flite_kal" not in data["train"]["spoof_systems"]


def test_release_refuses_a_manifest_without_a_system_the_run_left_out(toy_manifest, trained_run, tmp_path):
    """A run trained without system X, released on a manifest that has no X, is released on another
    corpus than its own: a DataError naming the manifest, and no bundle folder."""
    from training.release import main

    _, _, run_dir = trained_run
    ckpt = torch.load(run_dir / "best.pt", weights_only=False)
    ckpt["config"]["exclude_systems"] = ["tts_not_in_this_corpus"]
    torch.save(ckpt, tmp_path / "without.pt")
    manifest = release_manifest(toy_manifest, tmp_path)
    with pytest.raises(DataError, match="tts_not_in_this_corpus") as err:
        main(["--checkpoint", str(tmp_path / "without.pt"), "--manifest", str(manifest), "--out", str(tmp_path / "b"),
              "--formats", "onnx", "--gate-windows", "8", "--calibration-windows", "8"])
    assert str(manifest) in str(err.value) and not (tmp_path / "b").exists()


def test_release_sets_the_dev_eer_threshold_and_ships_the_weights(toy_manifest, trained_run, tmp_path, capsys):
    """`edge-cm-train release` (the command that made the default bundle) on a toy run: the
    threshold is the EER threshold of the runtime's dev clip scores, the card and evaluation
    are written, and the bundle's training weights are the checkpoint's."""
    from edge_cm.bundle import load_bundle
    from edge_cm.errors import ExportError
    from edge_cm.metrics import compute_eer
    from training.checkpoint_npz import load_checkpoint_npz
    from training.release import main, score_clips

    _, _, run_dir = trained_run
    manifest = release_manifest(toy_manifest, tmp_path)
    out = tmp_path / "bundle"
    argv = ["--checkpoint", str(run_dir / "best.pt"), "--manifest", str(manifest), "--out", str(out),
            "--formats", "onnx", "--gate-windows", "8", "--calibration-windows", "8", "--name", "toy"]
    assert main(argv) == 0
    bundle = load_bundle(out)
    rows = [r for r in ds.read_rows(manifest) if r.split == "dev"]
    _, scores = score_clips(out, rows)
    bona = np.array([s for r, s in zip(rows, scores) if r.is_bonafide and s is not None])
    spoof = np.array([s for r, s in zip(rows, scores) if not r.is_bonafide and s is not None])
    # compute_eer: higher = bona fide, so the spoof probability is negated
    eer, threshold = compute_eer(-bona, -spoof)
    assert bundle.meta.threshold == pytest.approx(-threshold)
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["dev"]["pooled"]["eer"] == pytest.approx(eer)
    assert set(evaluation["test"]["systems"]) == {r.system for r in rows if not r.is_bonafide}
    card = (out / "model_card.md").read_text()
    assert "| dev | **pooled** |" in card and "Release notes" not in card  # every format passed its gate
    shipped = load_checkpoint_npz(bundle.training_weights_path())
    saved = torch.load(run_dir / "best.pt", weights_only=True)["model_state"]
    assert shipped["model_state"].keys() == saved.keys()
    for name, value in saved.items():
        torch.testing.assert_close(shipped["model_state"][name], value, rtol=0, atol=0)
    capsys.readouterr()
    with pytest.raises(ExportError, match="exists|--force"):
        main(argv)  # a second release into the same folder needs --force


def test_weight_average_follows_the_formula_and_swaps_back():
    from training.weight_average import WeightAverage

    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
        model.bias.fill_(0.0)
    avg = WeightAverage(model, decay=0.9)
    expected = torch.zeros(1, 2)
    for step, value in enumerate([1.0, 2.0, 4.0, 8.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        d = min(0.9, (1 + step) / (10 + step))  # warm-up: 2/11, 3/12, ... then 0.9
        expected = d * expected + (1 - d) * value
        avg.update(model)
    assert torch.allclose(avg.params["weight"], expected)
    with avg.applied(model):
        assert torch.allclose(model.weight, expected)
    assert torch.equal(model.weight, torch.full((1, 2), 8.0))  # the raw weights are back
    restored = WeightAverage(model, decay=0.5)
    restored.load_state_dict(avg.state_dict())
    assert restored.updates == 4 and restored.decay == 0.9
    assert torch.equal(restored.params["weight"], avg.params["weight"])


def test_ema_run_saves_averaged_best_and_raw_last_and_resumes_exactly(toy_manifest, tmp_path):
    cfg = toy_config(toy_manifest, architecture="efficientcnn_small", max_epochs=2, max_steps_per_epoch=3,
                     ema_decay=0.5)
    one = run(replace(cfg, max_epochs=1), tmp_path / "one")
    best = torch.load(tmp_path / "one" / "best.pt", weights_only=True)  # epoch 1 is always the best so far
    last = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    averaged = last["train_state"]["weight_average"]["params"]
    assert last["train_state"]["weight_average"]["updates"] == one.state.global_step == 3
    raw = dict(one.model.named_parameters())
    for name, value in averaged.items():
        assert torch.equal(best["model_state"][name], value), name  # validated and saved: the average
        assert torch.equal(last["model_state"][name], raw[name].detach()), name  # resume point: the raw weights
    assert any(not torch.equal(averaged[n], raw[n].detach()) for n in averaged)
    # Two epochs straight, or interrupted after 4 steps and resumed: same weights, same average.
    a = run(cfg, tmp_path / "a")
    run(cfg, tmp_path / "b", max_steps=4)
    b = run(cfg, tmp_path / "b", resume=True)
    assert b.state.global_step == a.state.global_step == 6
    for name, p in a.model.named_parameters():
        assert torch.equal(p, dict(b.model.named_parameters())[name]), name
        assert torch.equal(a.weight_average.params[name], b.weight_average.params[name]), name


def test_averaging_does_not_change_the_training_steps(toy_manifest, tmp_path):
    # Step 3 comes after the first validation, so the averaged weights must have been swapped out again.
    cfg = toy_config(toy_manifest, architecture="efficientcnn_small", max_epochs=2, max_steps_per_epoch=2)
    plain = run(cfg, tmp_path / "plain", max_steps=3)
    averaged = run(replace(cfg, ema_decay=0.5), tmp_path / "ema", max_steps=3)
    for name, p in plain.model.named_parameters():
        assert torch.equal(p, dict(averaged.model.named_parameters())[name]), name


def test_a_saved_average_of_another_model_is_a_data_error(toy_manifest, tmp_path):
    cfg = toy_config(toy_manifest, architecture="efficientcnn_small", max_epochs=1, max_steps_per_epoch=2,
                     ema_decay=0.5)
    run(cfg, tmp_path / "r", max_steps=1)
    ckpt = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    params = ckpt["train_state"]["weight_average"]["params"]
    params["not_a_layer.weight"] = params.pop(next(iter(params)))
    torch.save(ckpt, tmp_path / "r" / "last.pt")
    with pytest.raises(DataError, match="another model"):
        run(cfg, tmp_path / "r", resume=True)


def test_averaging_switched_on_at_resume_starts_from_the_loaded_weights(toy_manifest, tmp_path):
    cfg = toy_config(toy_manifest, architecture="efficientcnn_small", max_epochs=1, max_steps_per_epoch=2)
    plain = run(cfg, tmp_path / "r", max_steps=1)
    fresh = prepare(replace(cfg, ema_decay=0.9), feature_spec=plain.train_set.spec, systems=plain.meta["systems"])
    trainer = Trainer(replace(cfg, ema_decay=0.9), fresh.model, fresh.train_set, fresh.val_set, tmp_path / "r",
                      meta=fresh.meta)
    trainer.load(tmp_path / "r" / "last.pt")
    for name, p in plain.model.named_parameters():
        assert torch.equal(trainer.weight_average.params[name], p.detach()), name


@pytest.mark.parametrize("changes, message", [({"ema_decay": 1.0}, "ema_decay"),
                                              ({"ema_decay": 0.99, "precise_bn_batches": 0}, "precise_bn"),
                                              ({"mixup_alpha": -0.1}, "mixup_alpha"),
                                              ({"mixup_alpha": float("nan")}, "mixup_alpha"),
                                              ({"mixup_alpha": 0.4, "teachers": ["t.pt"]}, "teachers"),
                                              ({"lr_schedule": "step"}, "lr_schedule"),
                                              ({"lr": 0.0}, "lr must"),
                                              ({"lr": float("nan")}, "lr must"),
                                              ({"weight_decay": -1e-4}, "weight_decay"),
                                              ({"weight_decay": float("inf")}, "weight_decay"),
                                              ({"lr_schedule": "cosine", "min_lr": 1e-3}, "min_lr"),
                                              ({"lr_hold_epochs": -1}, "lr_hold_epochs"),
                                              ({"lr_hold_epochs": 2.5}, "lr_hold_epochs"),
                                              ({"lr_hold_epochs": "thirty"}, "lr_hold_epochs"),
                                              ({"lr_hold_epochs": float("nan")}, "lr_hold_epochs"),
                                              ({"lr_schedule": "cosine", "lr_hold_epochs": 10}, "lr_hold_epochs")])
def test_bad_regulariser_settings_are_refused(toy_manifest, changes, message):
    with pytest.raises(DataError, match=message):
        toy_config(toy_manifest, **changes)


def test_a_run_distils_from_a_trained_checkpoint_and_refuses_a_foreign_front_end(toy_manifest, tmp_path):
    """The same seed, config and first batch: with a teacher the first loss differs, since half
    of it is the soft term; a teacher of another front end is refused by name before training."""
    from training.distill import DistillationLoss, load_teachers

    cfg = toy_config(toy_manifest, max_epochs=1)
    teacher_run = run(replace(cfg, max_steps_per_epoch=2), tmp_path / "teacher")
    best = tmp_path / "teacher" / "best.pt"
    plain = run(cfg, tmp_path / "plain", max_steps=1)
    taught = run(replace(cfg, teachers=[str(best)], kd_weight=0.5), tmp_path / "taught", max_steps=1)
    assert isinstance(taught.loss_fn, DistillationLoss) and len(taught.loss_fn.teachers) == 1
    assert teacher_run.state.global_step == 2
    first = plain.state.epoch_loss_sum, taught.state.epoch_loss_sum
    assert first[0] > 0 and first[1] > 0 and abs(first[0] - first[1]) > 1e-4
    ckpt = torch.load(best, weights_only=True)
    ckpt["feature_spec"] = dict(ckpt["feature_spec"], hop_length=ckpt["feature_spec"]["hop_length"] * 2)
    torch.save(ckpt, tmp_path / "foreign.pt")
    spec = ds.FeatureSpec.from_dict(torch.load(best, weights_only=True)["feature_spec"])
    with pytest.raises(DataError, match=r"foreign\.pt.*hop_length"):
        load_teachers([str(tmp_path / "foreign.pt")], spec)
    with pytest.raises(DataError, match="not found"):
        load_teachers([str(tmp_path / "missing.pt")], spec)
    per_window = replace(spec, normalization="none", norm_mean=None, norm_std=None)
    with pytest.raises(DataError, match=r"best\.pt.*normalization"):
        load_teachers([str(best)], per_window)  # statistics may differ, the kind of normalisation may not


def test_spec_mel_cnn_with_a_one_class_head_trains_and_exports_to_onnx(toy_manifest, tmp_path):
    """model_args {head: one_class}: the trainer uses the OC loss (not cross-entropy), the export
    copy drops the source head (46,644 parameters: 96 for the head instead of 194), and
    onnxruntime gives the torch logits."""
    import onnxruntime as ort

    from export.onnx_export import export_onnx
    from training.models import registry
    from training.models.one_class import OneClassHead, one_class_head_of

    model = registry.build("spec_mel_cnn_mt", n_sources=4, head="one_class")
    assert isinstance(one_class_head_of(model), OneClassHead)
    assert registry.count_params(model.export_module()) == 46_742 - 194 + 96
    with pytest.raises(registry.ArchitectureError, match="head must be one of"):
        registry.build("spec_mel_cnn", head="cosine")

    cfg = toy_config(toy_manifest, architecture="spec_mel_cnn_mt", model_args={"head": "one_class"}, max_epochs=1)
    trainer = run(cfg, tmp_path / "oc", max_steps=2)
    assert trainer.loss_fn.one_class_margin == pytest.approx(7.0)
    plain = run(replace(cfg, model_args={}), tmp_path / "linear", max_steps=1)
    assert plain.loss_fn.one_class_margin is None

    exported = trainer.model.export_module().eval()
    x = torch.randn(1, 1, 257, 397)
    path = export_onnx(exported, x, tmp_path / "oc.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = exported(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert got[0, 0] == pytest.approx(-got[0, 1], abs=1e-5)


def test_adapting_a_babble_trained_model_mixes_babble_from_the_whole_bonafide_train_split(
        toy_manifest, trained_run, bonafide_dir, tmp_path):
    """The adaptation sample is a handful of clips, all of whose talkers may be held out for the channel
    benchmark; babble then comes from every train-split clip of ``--bonafide``, not from the sample."""
    from training import babble
    from training.adapt import adapt

    _, _, run_dir = trained_run
    ckpt = torch.load(run_dir / "best.pt", weights_only=False)
    ckpt["config"]["augment"].update(noise_prob=1.0, noise_kinds=["babble"], babble_clips=20)
    torch.save(ckpt, tmp_path / "babble.pt")
    rows = ds.read_rows(toy_manifest)
    shared_train = [r for r in ds.read_rows(bonafide_dir / "manifest.csv") if r.split == "train"]
    bona = [r for r in rows if r.is_bonafide] + shared_train
    held = [replace(r, split="train" if i % 2 else "dev")
            for i, r in enumerate(r for r in rows if r.system == "espeak_f3")]
    tuned = adapt(tmp_path / "babble.pt", bona, held, 0.002, tmp_path / "ft", max_epochs=1, batch_size=4,
                  num_workers=0, progress=False)
    noise = tuned.train_set.augment.steps[0].transform
    assert noise.kinds == ("babble",) and len(noise.babble_speech) == 20
    assert len(babble.training_rows([r for r in tuned.train_set.rows if r.is_bonafide], 20)) < 20


def test_a_level_normalised_run_stores_the_training_level_and_sees_no_gain(toy_manifest, tmp_path):
    """``level_norm``: the FeatureSpec of the run carries the median level of the training windows, and its
    windows' features are those of any scaled copy (training, export and runtime share the spec)."""
    from edge_cm.features import compute_features, window_level_dbfs

    cfg = toy_config(toy_manifest, level_norm=True, max_epochs=1, max_steps_per_epoch=2)
    trainer = run(cfg, tmp_path / "level")
    _, meta = load_checkpoint(tmp_path / "level" / "best.pt")
    spec = meta["feature_spec"]
    train = [r for r in ds.read_rows(toy_manifest) if r.split == "train"]
    sample = ds.subset(train, cfg.norm_stats_windows, cfg.seed)
    centre = ds.WindowDataset(sample, spec, train=False, add_channel=False)
    levels = [window_level_dbfs(centre.window(i)) for i in range(len(sample))]
    assert spec.level_dbfs == pytest.approx(float(np.median(levels)), abs=0.005)
    assert trainer.val_set.spec == spec
    # The statistics describe the levelled features, not the raw ones (levelling narrows their spread).
    levelled = ds.global_stats(train, spec, n_windows=cfg.norm_stats_windows, seed=cfg.seed)
    raw = ds.global_stats(train, replace(spec, level_dbfs=None), n_windows=cfg.norm_stats_windows, seed=cfg.seed)
    assert np.allclose(spec.norm_mean, levelled[0], atol=1e-5) and np.allclose(spec.norm_std, levelled[1], atol=1e-5)
    assert np.abs(np.asarray(spec.norm_std) - raw[1]).max() > 1e-2
    window = trainer.val_set.window(0)
    assert np.abs(compute_features(spec, 0.2 * window) - compute_features(spec, window)).max() < 1e-3


def test_release_gives_a_trained_model_a_level_or_refuses_a_bad_one(toy_manifest, trained_run, tmp_path):
    from dataclasses import replace as with_changes

    from edge_cm.bundle import load_bundle
    from edge_cm.errors import FeatureSpecError
    from training.level import training_level_dbfs
    from training.release import main

    cfg, _, run_dir = trained_run
    manifest = release_manifest(toy_manifest, tmp_path)
    base = ["--checkpoint", str(run_dir / "best.pt"), "--manifest", str(manifest), "--formats", "onnx",
            "--gate-windows", "8", "--calibration-windows", "8"]
    assert main(base + ["--out", str(tmp_path / "auto"), "--level-dbfs", "auto"]) == 0
    spec = load_bundle(tmp_path / "auto").meta.feature_spec
    _, meta = load_checkpoint(run_dir / "best.pt")
    train = [r for r in ds.read_rows(manifest) if r.split == "train"]
    expected = training_level_dbfs(train, meta["feature_spec"], n_windows=cfg.norm_stats_windows, seed=cfg.seed)
    assert spec.level_dbfs == expected and with_changes(spec, level_dbfs=None) == meta["feature_spec"]
    assert load_checkpoint(tmp_path / "auto")[1]["feature_spec"] == spec  # adapt --from the bundle keeps it
    assert main(base + ["--out", str(tmp_path / "fixed"), "--level-dbfs", "-20"]) == 0
    assert load_bundle(tmp_path / "fixed").meta.feature_spec.level_dbfs == -20.0
    # A levelled bundle released again with --level-dbfs none gives back the run's own front end.
    again = ["--checkpoint", str(tmp_path / "auto")] + base[2:]
    assert main(again + ["--out", str(tmp_path / "none"), "--level-dbfs", "none"]) == 0
    assert load_bundle(tmp_path / "none").meta.feature_spec == meta["feature_spec"]
    for bad, message in (("loud", "keep, auto, none or a level"), ("5", "level_dbfs must be")):
        with pytest.raises(FeatureSpecError, match=message):
            main(base + ["--out", str(tmp_path / "bad"), "--level-dbfs", bad])
        assert not (tmp_path / "bad").exists()


def test_adapting_a_levelled_model_keeps_its_level_fine_tuned_or_from_scratch(toy_manifest, trained_run, tmp_path):
    """A front end with a level (``release --level-dbfs``) is part of the model: ``adapt`` keeps it, and
    ``--scratch`` levels its fresh statistics too."""
    from training.adapt import adapt

    _, _, run_dir = trained_run
    ckpt = torch.load(run_dir / "best.pt", weights_only=False)
    ckpt["feature_spec"] = dict(ckpt["feature_spec"], level_dbfs=-20.0)  # as release --level-dbfs -20 writes it
    torch.save(ckpt, tmp_path / "levelled.pt")
    rows = ds.read_rows(toy_manifest)
    bona = [r for r in rows if r.is_bonafide]
    held = [replace(r, split="train" if i % 2 else "dev")
            for i, r in enumerate(r for r in rows if r.system == "espeak_f3")]
    common = dict(max_epochs=1, batch_size=4, num_workers=0, progress=False)
    tuned = adapt(tmp_path / "levelled.pt", bona, held, 0.5, tmp_path / "ft", **common)
    assert tuned.train_set.spec.level_dbfs == -20.0
    scratch = adapt(tmp_path / "levelled.pt", bona, held, 0.5, tmp_path / "sc", scratch=True, **common)
    assert scratch.train_set.spec.level_dbfs is not None and scratch.cfg.level_norm


def test_a_run_starts_from_given_weights_and_keeps_their_front_end(toy_manifest, trained_run, tmp_path):
    from training.train import prepare_from

    cfg, _, run_dir = trained_run
    start, meta = load_checkpoint(run_dir / "best.pt")
    warm = prepare_from(replace(cfg, seed=9), run_dir / "best.pt")
    assert all(torch.equal(warm.model.state_dict()[n], w) for n, w in start.state_dict().items())
    assert warm.train_set.spec == meta["feature_spec"]
    assert prepare(replace(cfg, seed=9)).train_set.spec.norm_mean != meta["feature_spec"].norm_mean  # not recomputed
    tuned = run(replace(cfg, init_from=str(run_dir / "best.pt"), seed=9, max_epochs=1), tmp_path / "ft").model
    fresh = prepare(replace(cfg, seed=9)).model

    def distance(model) -> float:
        return sum(float((model.state_dict()[n].float() - w.float()).pow(2).sum())
                   for n, w in start.state_dict().items() if w.is_floating_point() and "running" not in n)

    assert 0 < distance(tuned) < distance(fresh) / 10
    assert load_config(tmp_path / "ft" / "config.yaml").init_from == str(run_dir / "best.pt")
    with pytest.raises(DataError, match="set architecture: efficientcnn_small_mt"):
        run(replace(cfg, architecture="efficientcnn_small", init_from=str(run_dir / "best.pt")), tmp_path / "a")
    with pytest.raises(DataError, match="no level"):
        run(replace(cfg, level_norm=True, init_from=str(run_dir / "best.pt")), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_interpolation_mixes_a_fine_tuned_model_with_its_start(toy_manifest, trained_run, tmp_path):
    from training.cli import main as cli
    from training.interpolate import interpolate, mix_states

    cfg, _, run_dir = trained_run
    start = run_dir / "best.pt"
    run(replace(cfg, init_from=str(start), lr=1e-2, max_epochs=1), tmp_path / "ft")
    end = tmp_path / "ft" / "best.pt"
    metrics = interpolate(start, end, 0.25, tmp_path / "mix.pt", num_workers=0)
    mix, meta = load_checkpoint(tmp_path / "mix.pt")
    a, b = load_checkpoint(start)[0].state_dict(), load_checkpoint(end)[0].state_dict()
    weights = [n for n, w in a.items() if w.is_floating_point() and "running" not in n]
    assert any(not torch.allclose(a[n], b[n]) for n in weights)
    for n in weights:
        assert torch.allclose(mix.state_dict()[n], 0.75 * a[n] + 0.25 * b[n], atol=1e-6)
    # BatchNorm statistics are measured for the mix, not mixed
    means = [n for n in a if n.endswith("running_mean")]
    assert any(not torch.allclose(mix.state_dict()[n], 0.75 * a[n] + 0.25 * b[n], atol=1e-4) for n in means)
    assert meta["metrics"]["alpha"] == 0.25 and meta["metrics"]["val_loss"] == metrics["val_loss"]
    assert meta["feature_spec"] == load_checkpoint(start)[1]["feature_spec"]

    # a soup: the uniform mean of two fine-tunes of the same start (another seed), then mixed with the start
    run(replace(cfg, init_from=str(start), lr=1e-2, max_epochs=1, seed=5), tmp_path / "ft2")
    end2 = tmp_path / "ft2" / "best.pt"
    c = load_checkpoint(end2)[0].state_dict()
    assert any(not torch.allclose(b[n], c[n]) for n in weights)
    interpolate(start, [end, end2], 0.5, tmp_path / "soup.pt", num_workers=0)
    soup, soup_meta = load_checkpoint(tmp_path / "soup.pt")
    for n in weights:
        assert torch.allclose(soup.state_dict()[n], 0.5 * a[n] + 0.25 * (b[n] + c[n]), atol=1e-6)
    assert soup_meta["metrics"]["end"] == [str(end), str(end2)]
    with pytest.raises(DataError, match="twice"):
        interpolate(start, [end, end], 1.0, tmp_path / "m8.pt")
    with pytest.raises(DataError, match="no init_from"):  # the start itself was trained from scratch
        interpolate(start, [end, start], 1.0, tmp_path / "m8.pt")
    moved_start = torch.load(end2, weights_only=True)
    moved_start["config"]["init_from"] = str(tmp_path / "ft" / "best.pt")
    torch.save(moved_start, tmp_path / "other_start.pt")
    with pytest.raises(DataError, match="started from"):
        interpolate(start, [end, tmp_path / "other_start.pt"], 1.0, tmp_path / "m8.pt")
    assert cli(["interpolate", "--start", str(start), "--end", str(end), str(end2), "--alpha", "1",
                "--out", str(tmp_path / "soup1.pt"), "--workers", "0"]) == 0
    soup1 = load_checkpoint(tmp_path / "soup1.pt")[0].state_dict()
    assert all(torch.allclose(soup1[n], 0.5 * (b[n] + c[n]), atol=1e-6) for n in weights)

    with pytest.raises(DataError, match="already exists"):
        interpolate(start, end, 0.5, tmp_path / "mix.pt")
    with pytest.raises(DataError, match="alpha"):
        interpolate(start, end, 1.5, tmp_path / "m2.pt")
    with pytest.raises(DataError, match="alpha"):  # checked before any file is read
        interpolate(tmp_path / "nope.pt", end, float("nan"), tmp_path / "m2.pt")
    moved = torch.load(end, weights_only=True)  # an end trained on a corpus that is not on this machine
    moved["config"]["manifest"] = "elsewhere/manifest.csv"
    torch.save(moved, tmp_path / "moved.pt")
    with pytest.raises(DataError, match="pass --manifest"):
        interpolate(start, tmp_path / "moved.pt", 0.5, tmp_path / "m6.pt")
    interpolate(start, tmp_path / "moved.pt", 0.5, tmp_path / "m7.pt", manifest=str(toy_manifest), num_workers=0)
    assert (tmp_path / "m7.pt").is_file()
    other = run(replace(cfg, seed=11, max_epochs=1), tmp_path / "other")  # its own normalisation statistics
    assert other.train_set.spec != meta["feature_spec"]
    with pytest.raises(DataError, match="differ in feature_spec"):
        interpolate(tmp_path / "other" / "best.pt", end, 0.5, tmp_path / "m3.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(DataError, match="cannot read checkpoint"):
        interpolate(tmp_path / "junk.pt", end, 0.5, tmp_path / "m5.pt")
    with pytest.raises(DataError, match="different layers"):
        mix_states({"w": torch.zeros(2)}, {"v": torch.zeros(2)}, 0.5, "x.pt")
    with pytest.raises(DataError, match="shape"):
        mix_states({"w": torch.zeros(2)}, {"w": torch.zeros(3)}, 0.5, "x.pt")
    assert cli(["interpolate", "--start", str(start), "--end", str(tmp_path / "nope.pt"), "--alpha", "0.5",
                "--out", str(tmp_path / "m4.pt")]) == 2
    assert not any((tmp_path / f"m{i}.pt").exists() for i in (2, 3, 4, 5, 6, 8))  # nothing written half
