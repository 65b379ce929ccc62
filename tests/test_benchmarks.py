"""Pure logic of the benchmark scripts (their command lines are in test_cli.py)."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge_cm import metrics as M
from edge_cm.errors import DataError
from training.corpus.pairs import copy_stem
from training.data.manifest import ManifestRow

from conftest import pick_clips

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    pytest.importorskip("torch", reason="the benchmark scripts need the training extra")
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_rows(bonafide_rows) -> list[ManifestRow]:
    """The shared corpus's real training speakers, laid out as a built corpus (paths only) with a
    vocoder copy of every third clip and two TTS voices."""
    root = Path("/corpus")
    rows = []
    for k, r in enumerate(x for x in bonafide_rows if x["split"] == "train"):
        rows.append(ManifestRow(path=str(root / "bonafide" / r["path"]), label="bonafide", speaker=r["speaker"],
                                family="bonafide", split="train"))
        if k % 3 == 0:
            rows.append(ManifestRow(path=str(root / "spoof" / "voc_a" / "train" / f"{copy_stem(r['path'])}.flac"),
                                    label="spoof", speaker=r["speaker"], system="voc_a", family="vocoder",
                                    split="train"))
    for voice in ("tts_a", "tts_b"):
        rows += [ManifestRow(path=str(root / "spoof" / voice / "train" / f"{voice}_{i:04d}.flac"), label="spoof",
                             speaker=voice, system=voice, family="tts", split="train") for i in range(60)]
    return rows


def test_seen_holdout_keeps_speakers_and_copies_on_one_side(train_rows):
    table = _script("efficientcnn_table")
    kept, seen = table.seen_holdout(train_rows, 0.15, seed=0)
    assert len(kept) + len(seen) == len(train_rows) and not {r.path for r in kept} & {r.path for r in seen}
    assert 0.10 * len(train_rows) <= len(seen) <= 0.15 * len(train_rows)
    speakers = [{r.speaker for r in part if r.is_bonafide and r.speaker} for part in (kept, seen)]
    assert speakers[1] and not speakers[0] & speakers[1]
    parts = (("kept", kept), ("seen", seen))
    side = {copy_stem(Path(r.path).relative_to("/corpus/bonafide").as_posix()): part
            for part, rows in parts for r in rows if r.is_bonafide}
    copies = [(part, r) for part, rows in parts for r in rows if r.system == "voc_a"]
    assert {part for part, _ in copies} == {"kept", "seen"}
    for part, r in copies:
        assert side[Path(r.path).stem] == part, r.path
    # the systems of the seen column are really seen: every one is also in training
    assert {r.system for r in seen if not r.is_bonafide} == {"voc_a", "tts_a", "tts_b"}
    assert {r.system for r in seen if not r.is_bonafide} <= {r.system for r in kept}


def test_seen_holdout_is_seeded_and_can_be_off(train_rows):
    table = _script("efficientcnn_table")
    first = [r.path for r in table.seen_holdout(train_rows, 0.15, seed=0)[1]]
    assert first == [r.path for r in table.seen_holdout(train_rows, 0.15, seed=0)[1]]
    assert first != [r.path for r in table.seen_holdout(train_rows, 0.15, seed=1)[1]]
    kept, seen = table.seen_holdout(train_rows, 0.0, seed=0)
    assert kept == train_rows and seen == []


def test_seen_holdout_of_one_class_is_a_data_error(train_rows):
    table = _script("efficientcnn_table")
    with pytest.raises(DataError, match="only one class"):
        table.seen_holdout([r for r in train_rows if r.is_bonafide], 0.15, seed=0)


def test_best_epoch_is_the_first_with_the_lowest_validation_loss(tmp_path):
    from training.train import METRIC_FIELDS

    table = _script("efficientcnn_table")
    csv_file = tmp_path / "metrics.csv"
    losses = [0.9, 0.5, 0.7, 0.5]  # a tie later must not move the checkpoint, as the loop keeps strict improvements
    csv_file.write_text(",".join(METRIC_FIELDS) + "\n" + "".join(
        ",".join(str(v) for v in (e, e * 10, 1e-3, 1.0, loss, 0.3, 0.7, 60.0)) + "\n"
        for e, loss in enumerate(losses, start=1)), encoding="utf-8")
    assert table.best_epoch(csv_file) == 2
    csv_file.write_text(",".join(METRIC_FIELDS) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="no epoch"):
        table.best_epoch(csv_file)
    with pytest.raises(DataError, match="cannot read"):
        table.best_epoch(tmp_path / "missing.csv")


def test_error_sources_pools_windows_and_splits_errors_by_source_and_length():
    errs = _script("error_sources")

    def eer_of(recs, rule):
        bona = [r[rule] for r in recs if r["label"] == "bonafide"]
        spoof = [r[rule] for r in recs if r["label"] == "spoof"]
        return 100 * M.compute_eer(-np.array(bona), -np.array(spoof))[0]

    pooled = errs.pooled_scores([0.2, 0.9, 0.5])
    assert pooled["mean_p"] == pytest.approx(1.6 / 3) and pooled["median"] == 0.5 and pooled["max"] == 0.9
    assert pooled["mean_log_odds"] == pytest.approx((np.log(0.25) + np.log(9.0)) / 3)

    def rec(label, source, score, seconds, split="dev"):
        return {"split": split, "label": label, "source": source, "seconds": seconds,
                "system": "-" if label == "bonafide" else source,
                "mean_p": score, "mean_log_odds": score, "median": score, "max": score}

    records = ([rec("bonafide", "quiet", 0.1 + 0.01 * i, 6.0) for i in range(10)]
               + [rec("bonafide", "codec", 0.7 + 0.01 * i, 1.0) for i in range(5)]
               + [rec("spoof", "tts", 0.6 + 0.03 * i, 3.0) for i in range(10)])
    result = errs.breakdown(records, threshold=0.65, no_speech={"dev": 2, "test": 0})
    assert set(result) == {"dev"}  # test has no records: no row rather than a crash
    dev = result["dev"]
    assert (dev["bonafide_clips"], dev["spoof_clips"], dev["no_speech_clips"]) == (15, 10, 2)
    assert dev["sources"]["quiet"]["error_percent"] == 0.0
    assert dev["sources"]["codec"]["error_percent"] == 100.0
    assert dev["sources"]["quiet"]["eer"] == 0.0 < dev["sources"]["codec"]["eer"]
    short, mid, long_ = dev["lengths"]["0-2 s"], dev["lengths"]["2-4 s"], dev["lengths"]["4-8 s"]
    assert (short["bonafide_clips"], short["spoof_clips"], short["eer"]) == (5, 0, None)
    assert mid["spoof_clips"] == 10 and mid["miss_percent"] == pytest.approx(20.0)  # 0.60 and 0.63 < 0.65
    assert long_["false_alarm_percent"] == 0.0
    assert dev["systems"]["tts"]["error_percent"] == pytest.approx(20.0) and set(dev["systems"]) == {"tts"}
    assert dev["systems"]["tts"]["eer"] == pytest.approx(eer_of(records, "mean_p"))
    assert dev["pooling_eer"]["mean_p"] == pytest.approx(eer_of(records, "mean_p")) and eer_of(records, "mean_p") > 0


def test_bandwidth_check_buckets_clips_by_their_measured_band():
    from training.augment import low_pass

    bw = _script("bandwidth_sensitivity")
    noise = (0.1 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)
    assert [bw.bandwidth_group(low_pass(noise, c)) for c in (3000.0, 6000.0)] == ["under 4.5 kHz", "4.5-7.5 kHz"]
    assert bw.bandwidth_group(noise) == "7.5 kHz and up"


def test_bandwidth_check_scores_real_clips_through_the_runtime(tmp_path, float_bundle, bonafide_dir, bonafide_rows):
    """Each clip scored as recorded equals the runtime's own clip score; the low-passed versions differ."""
    import json

    import edge_cm
    from edge_cm.audio import read_audio
    from training.data.manifest import write_manifest_csv

    bw = _script("bandwidth_sensitivity")
    picked = [r for r in bonafide_rows if r["source"] == "resemblyzer_librispeech" and r["split"] == "dev"][:3]
    rows = [ManifestRow(path=str(bonafide_dir / r["path"]), label="bonafide", family="bonafide", split="dev",
                        source=r["source"]) for r in picked]
    silent = tmp_path / "silent.wav"  # no speech: counted apart, in no cell
    sf.write(silent, np.zeros(32000, np.float32), 16000)
    rows_with_silence = rows + [ManifestRow(path=str(silent), label="bonafide", family="bonafide", split="dev")]
    manifest = write_manifest_csv(rows_with_silence, tmp_path / "m.csv")
    out = tmp_path / "bw.md"
    assert bw.main(["--bundle", str(float_bundle), "--manifest", str(manifest), "--cutoffs", "3000",
                    "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    det = edge_cm.load(float_bundle)
    (name, res), = result.items()
    groups = [g for g in (n for n, _ in bw.GROUPS) if res[g]["clips"]]
    assert sum(res[g]["clips"] for g in groups) == 3 and res["threshold"] == pytest.approx(det.threshold)
    assert sum(res[g]["no_speech_clips"] for g, _ in bw.GROUPS) == 1
    audios = [read_audio(r.path) for r in rows]
    for g in groups:
        part = [a for a in audios if bw.bandwidth_group(a) == g]
        as_recorded = [det.detect_array(a, 16000).score for a in part]
        cond = res[g]["conditions"]
        assert cond["as recorded"]["mean_p"] == pytest.approx(float(np.mean(as_recorded)), abs=1e-6)
        assert cond["low-passed at 3000 Hz"]["mean_p"] != pytest.approx(cond["as recorded"]["mean_p"], abs=1e-6)
    assert "low-passed at 3000 Hz" in out.read_text()


def test_eer_uncertainty_scores_real_clips_through_the_runtime(tmp_path, float_bundle, bonafide_dir, bonafide_rows):
    """Point EERs are the release's own (training.release.split_metrics on the runtime's scores);
    a bundle compared with itself differs by 0; too few resamples is a typed error."""
    import json

    from edge_cm.errors import EdgeCMError
    from training.data.manifest import write_manifest_csv
    from training.release import score_clips, split_metrics

    unc = _script("eer_uncertainty")
    dev = [r for r in bonafide_rows if r["split"] == "dev"]
    named = list(dict.fromkeys(r["speaker"] for r in dev if r["speaker"]))[:2]
    unnamed = next(r["source"] for r in dev if not r["speaker"])  # its clips: one unit, the source
    picked = ([r for s in named for r in [x for x in dev if x["speaker"] == s][:4]]
              + [x for x in dev if x["source"] == unnamed and not x["speaker"]][:4])  # 3 groups x 4 clips
    # Labels are arbitrary here: the check is that the script's figures are the release's.
    rows = [ManifestRow(path=str(bonafide_dir / r["path"]), label="bonafide" if k % 2 else "spoof",
                        family="bonafide" if k % 2 else "tts", system="" if k % 2 else f"s{k % 4}", split="dev",
                        speaker=r["speaker"], source=r["source"]) for k, r in enumerate(picked)]
    manifest = write_manifest_csv(rows, tmp_path / "m.csv")
    out = tmp_path / "u.md"
    args = ["--bundle", f"a={float_bundle}", "--bundle", f"b={float_bundle}", "--manifest", str(manifest),
            "--splits", "dev", "--resamples", "200", "--out", str(out)]
    assert unc.main(args) == 0
    res = json.loads(out.with_suffix(".json").read_text())["dev"]
    expected = split_metrics(*score_clips(float_bundle, rows))
    assert res["rows"]["pooled"]["a"]["eer"] == pytest.approx(expected["pooled"]["eer"])
    assert {k: v["a"]["eer"] for k, v in res["rows"].items() if k != "pooled"} == pytest.approx(
        {k: v["eer"] for k, v in expected["systems"].items()})
    assert res["rows"]["pooled"]["b"]["minus_first_interval"] == [0.0, 0.0]
    assert "b - a [95 %]" in out.read_text()
    assert unc.main(args[:-2] + ["--unit", "speaker", "--out", str(tmp_path / "s.md")]) == 0
    by_speaker = json.loads((tmp_path / "s.json").read_text())["dev"]
    assert by_speaker["rows"]["pooled"]["a"]["eer"] == res["rows"]["pooled"]["a"]["eer"]
    assert by_speaker["units"][unc.BONAFIDE] == 3 and by_speaker["clips"][unc.BONAFIDE] == 6  # 2 clips a unit
    with pytest.raises(EdgeCMError, match="names repeat"):
        unc.main(["--bundle", f"a={float_bundle}"] + args)
    with pytest.raises(EdgeCMError, match="too few"):
        unc.main(args[:-4] + ["--resamples", "10", "--out", str(tmp_path / "v.md")])
    assert not (tmp_path / "v.md").exists()


def test_channel_corruption_is_fixed_by_seed_clip_and_condition(real_speech):
    """Every bundle hears the same corrupted clip; noise lands at the condition's SNR; clean is untouched."""
    from training.augment.noise import power

    ch = _script("channel_robustness")
    clip = real_speech[:32000]
    conds = list(ch.conditions((real_speech[32000:], real_speech[::-1].copy())).items())  # longer than the clip
    assert conds[0] == (ch.CLEAN, None) and ch.corrupt(clip, None, 0, 3, 0) is clip
    for j, (name, transform) in enumerate(conds[1:], start=1):
        a, b = ch.corrupt(clip, transform, 0, 3, j), ch.corrupt(clip, transform, 0, 3, j)
        assert np.array_equal(a, b) and a.shape == clip.shape and not np.allclose(a, clip), name
        assert not np.array_equal(a, ch.corrupt(clip, transform, 0, 4, j))  # another clip, other noise
        assert not np.array_equal(a, ch.corrupt(clip, transform, 1, 3, j))  # another seed
    pink = ch.corrupt(clip, dict(conds)["pink noise 20 dB"], 0, 3, 1).astype(np.float64)
    snr = 10 * np.log10(power(clip) / power(pink - clip))
    assert snr == pytest.approx(20.0, abs=0.1)


def _room_rows(bonafide_dir, bonafide_rows) -> tuple[list, list, list]:
    """Train, dev and test rows of real clips: 20 dev bona fide clips (enough for a 5 % threshold) and
    3 dev spoofs, 4 + 4 test clips. Labels of the spoofs are arbitrary: the checks are on the arithmetic."""
    def row(r, split, spoof=False):
        return ManifestRow(path=str(bonafide_dir / r["path"]), label="spoof" if spoof else "bonafide",
                           family="tts" if spoof else "bonafide", system="s1" if spoof else "", split=split,
                           speaker=r["speaker"], source=r["source"])

    train = [row(r, "train") for r in pick_clips(bonafide_rows, "train", 4, 1.0, 4.0)]
    dev = [row(r, "dev", spoof=k >= 20) for k, r in enumerate(pick_clips(bonafide_rows, "dev", 23, 1.0, 4.0))]
    test = [row(r, "test", spoof=k % 2 == 1) for k, r in enumerate(pick_clips(bonafide_rows, "test", 8, 1.0, 4.0))]
    return train, dev, test


def test_calibration_size_draws_are_seeded_and_all_of_dev_matches_the_room_threshold(
        tmp_path, float_bundle, bonafide_dir, bonafide_rows):
    """With every dev clip the threshold is the channel benchmark's room threshold (one draw, the same
    test figures); with fewer clips there are ``--draws`` draws, fixed by the seed; bad sizes and
    targets are typed errors with nothing written."""
    import json

    from edge_cm.errors import EdgeCMError
    from training.data.manifest import write_manifest_csv

    ch, cs = _script("channel_robustness"), _script("calibration_size")
    train, dev, test = _room_rows(bonafide_dir, bonafide_rows)
    manifest = write_manifest_csv(train + dev + test, tmp_path / "m.csv")
    cond = "white noise 10 dB"
    assert cs.main(["--bundle", str(float_bundle), "--manifest", str(manifest), "--condition", cond,
                    "--sizes", "20", "--draws", "50", "--out", str(tmp_path / "s.md")]) == 0
    sizes = json.loads((tmp_path / "s.json").read_text())["sizes"]
    assert [(r["size"], r["draws"]) for r in sizes] == [(20, 1)]  # 20 is every dev bona fide clip here
    assert ch.main(["--bundle", f"a={float_bundle}", "--manifest", str(manifest), "--splits", "dev", "test",
                    "--resamples", "200", "--out", str(tmp_path / "c.md")]) == 0
    room = json.loads((tmp_path / "c.json").read_text())["test"]["a"]["conditions"][cond]["room_threshold"]
    assert sizes[0]["false_alarm_percent"]["median"] == pytest.approx(room["false_alarm_percent"])
    assert sizes[0]["miss_percent"]["median"] == pytest.approx(room["miss_percent"])
    more = write_manifest_csv(train + dev + [replace(r, split="dev") for r in train] + test, tmp_path / "n.csv")
    assert cs.main(["--bundle", str(float_bundle), "--manifest", str(more), "--condition", cond,
                    "--sizes", "20", "--draws", "50", "--out", str(tmp_path / "t.md")]) == 0
    drawn = json.loads((tmp_path / "t.json").read_text())["sizes"]
    assert [(r["size"], r["draws"]) for r in drawn] == [(20, 50), (24, 1)]  # and all of dev, once
    assert cs.main(["--bundle", str(float_bundle), "--manifest", str(more), "--condition", cond,
                    "--sizes", "20", "--draws", "50", "--out", str(tmp_path / "u.md")]) == 0
    assert json.loads((tmp_path / "u.json").read_text())["sizes"] == drawn  # the seed fixes the draws
    for extra, match in ((["--sizes", "10"], "must lie between 20"), (["--sizes", "30"], "and the 20 dev bona fide"),
                         (["--false-alarms", "0"], "false-alarm target"), (["--draws", "0"], "--draws")):
        with pytest.raises(EdgeCMError, match=match):
            cs.main(["--bundle", str(float_bundle), "--manifest", str(manifest), *extra,
                     "--out", str(tmp_path / "x.md")])
    assert not (tmp_path / "x.md").exists()


def test_channel_robustness_chooses_a_room_threshold_on_dev_and_judges_it_on_test(tmp_path, float_bundle,
                                                                                  bonafide_dir, bonafide_rows):
    """With dev and test scored, each condition gets the threshold edge-cm calibrate would choose from dev's
    real clips heard through it; test's false alarms and misses are then measured at that threshold."""
    import json

    from edge_cm.calibrate import threshold_for
    from training.data.manifest import write_manifest_csv
    from training.release import score_clips

    ch = _script("channel_robustness")
    train, dev, test = _room_rows(bonafide_dir, bonafide_rows)
    manifest = write_manifest_csv(train + dev + test, tmp_path / "m.csv")
    out = tmp_path / "c.md"
    assert ch.main(["--bundle", f"a={float_bundle}", "--manifest", str(manifest), "--splits", "dev", "test",
                    "--resamples", "200", "--out", str(out)]) == 0
    clean = json.loads(out.with_suffix(".json").read_text())["test"]["a"]["conditions"][ch.CLEAN]["room_threshold"]
    dev_rows, dev_scores = score_clips(float_bundle, dev)
    expected = threshold_for([s for r, s in zip(dev_rows, dev_scores) if r.is_bonafide], ch.ROOM_FALSE_ALARMS)
    test_rows, test_scores = score_clips(float_bundle, test)
    bona = np.array([s for r, s in zip(test_rows, test_scores) if r.is_bonafide])
    spoof = np.array([s for r, s in zip(test_rows, test_scores) if not r.is_bonafide])
    assert clean["threshold"] == expected
    assert clean["false_alarm_percent"] == pytest.approx(100 * np.mean(bona >= expected))
    assert clean["miss_percent"] == pytest.approx(100 * np.mean(spoof < expected))
    assert "A threshold chosen in the room" in out.read_text()
    too_few = write_manifest_csv(train + dev[15:] + test, tmp_path / "f.csv")  # 5 dev bona fide clips
    with pytest.raises(DataError, match="cannot resolve a 5 % false-alarm threshold"):
        ch.main(["--bundle", f"a={float_bundle}", "--manifest", str(too_few), "--splits", "dev", "test",
                 "--out", str(tmp_path / "g.md")])


def test_channel_robustness_scores_real_clips_through_the_runtime(tmp_path, float_bundle, bonafide_dir, bonafide_rows):
    """The clean condition is the release's own EER; bundles heard the same audio; bad input is typed."""
    import json

    from edge_cm.errors import EdgeCMError
    from training.data.manifest import write_manifest_csv
    from training.release import score_clips, split_metrics

    ch = _script("channel_robustness")
    train = [r for r in bonafide_rows if r["split"] == "train"][:6]
    dev = [r for r in bonafide_rows if r["split"] == "dev"][:10]
    rows = [ManifestRow(path=str(bonafide_dir / r["path"]), label="bonafide", family="bonafide", split="train",
                        speaker=r["speaker"], source=r["source"]) for r in train]
    # Labels are arbitrary here: the check is that the script's clean figures are the release's.
    dev_rows = [ManifestRow(path=str(bonafide_dir / r["path"]), label="bonafide" if k % 2 else "spoof",
                            family="bonafide" if k % 2 else ("tts", "vocoder")[k % 4 // 2],
                            system="" if k % 2 else f"s{k % 4}", split="dev", speaker=r["speaker"], source=r["source"])
                for k, r in enumerate(dev)]
    silent = tmp_path / "silent.wav"  # no speech: counted apart, in no condition
    sf.write(silent, np.zeros(32000, np.float32), 16000)
    silent_row = ManifestRow(path=str(silent), label="bonafide", family="bonafide", split="dev")
    manifest = write_manifest_csv(rows + dev_rows + [silent_row], tmp_path / "m.csv")
    out = tmp_path / "c.md"
    args = ["--bundle", f"a={float_bundle}", "--bundle", f"b={float_bundle}", "--manifest", str(manifest),
            "--out", str(out)]
    assert ch.main(args) == 0
    res = json.loads(out.with_suffix(".json").read_text())["dev"]
    paired = ("minus_first", "minus_first_interval", "lower_than_first_share")
    for cond, m in res["b"]["conditions"].items():  # the same bundle twice: no difference in any resample
        assert (m["minus_first"], m["minus_first_interval"], m["lower_than_first_share"]) == (0.0, [0.0, 0.0], 0.0)
        lo, hi = m["eer_interval"]
        assert lo <= m["eer"] <= hi and hi > lo, cond
        assert {k: v for k, v in m.items() if k not in paired} == res["a"]["conditions"][cond]
    assert (res["a"]["clips"], res["a"]["no_speech_clips"]) == (10, 1)
    assert list(res["a"]["conditions"]) == list(ch.conditions((np.ones(100, np.float32),)))
    clean = res["a"]["conditions"][ch.CLEAN]
    expected = split_metrics(*score_clips(float_bundle, dev_rows))
    assert clean["eer"] == pytest.approx(100 * expected["pooled"]["eer"])
    assert set(clean["families"]) == {"tts", "vocoder"}
    assert any(m != clean for c, m in res["a"]["conditions"].items() if c != ch.CLEAN)
    assert "white noise 10 dB" in out.read_text()
    bad = tmp_path / "d.md"
    with pytest.raises(EdgeCMError, match="names repeat"):
        ch.main(["--bundle", f"a={float_bundle}", "--bundle", f"a={float_bundle}", "--manifest", str(manifest),
                 "--out", str(bad)])
    with pytest.raises(DataError, match="too few"):
        ch.main(["--bundle", f"a={float_bundle}", "--manifest", str(manifest), "--resamples", "10", "--out", str(bad)])
    no_train = write_manifest_csv(dev_rows, tmp_path / "n.csv")
    with pytest.raises(DataError, match="babble"):
        ch.main(["--bundle", f"a={float_bundle}", "--manifest", str(no_train), "--out", str(bad)])
    one_class = write_manifest_csv(rows + [r for r in dev_rows if r.is_bonafide], tmp_path / "o.csv")
    with pytest.raises(DataError, match="needs bona fide and spoof"):
        ch.main(["--bundle", f"a={float_bundle}", "--manifest", str(one_class), "--out", str(bad)])
    corrupt_clip = tmp_path / "corrupt.wav"
    corrupt_clip.write_bytes(b"not audio" * 20)
    broken = write_manifest_csv(rows + dev_rows + [ManifestRow(path=str(corrupt_clip), label="spoof", family="tts",
                                                               system="s9", split="dev")], tmp_path / "b.csv")
    with pytest.raises(EdgeCMError, match="cannot decode audio") as err:
        ch.main(["--bundle", f"a={float_bundle}", "--manifest", str(broken), "--out", str(bad)])
    assert str(corrupt_clip) in str(err.value)
    assert not bad.exists()


def test_channel_robustness_level_conditions_rescale_each_clip(tmp_path, float_bundle, bonafide_dir, bonafide_rows):
    """``--conditions level``: each condition's clip scores are the runtime's scores of the clip scaled by
    that gain (or to that peak); no babble, so no train split is needed."""
    import json

    import edge_cm
    from edge_cm.audio import read_audio
    from training.data.manifest import write_manifest_csv

    ch = _script("channel_robustness")
    dev = [r for r in bonafide_rows if r["split"] == "dev"][:8]
    rows = [ManifestRow(path=str(bonafide_dir / r["path"]), label="bonafide" if k % 2 else "spoof",
                        family="bonafide" if k % 2 else "tts", system="" if k % 2 else "s0", split="dev",
                        speaker=r["speaker"], source=r["source"]) for k, r in enumerate(dev)]
    manifest = write_manifest_csv(rows, tmp_path / "m.csv")
    out = tmp_path / "l.md"
    assert ch.main(["--bundle", f"a={float_bundle}", "--manifest", str(manifest), "--conditions", "level",
                    "--resamples", "200", "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())["dev"]["a"]["conditions"]
    assert list(res) == list(ch.level_conditions()) and "Input level" in out.read_text()
    det = edge_cm.load(float_bundle)
    audio = [read_audio(r.path) for r in rows]
    quiet = [det.detect_array(a * np.float32(10 ** (-12 / 20)), 16000).score for a in audio]
    loud = [det.detect_array(a * np.float32(10 ** (-1 / 20) / np.abs(a).max()), 16000).score for a in audio]
    for cond, scores in (("-12 dB", quiet), ("peak at -1 dBFS", loud)):
        expected = ch.family_metrics(rows, scores, det.threshold)
        assert res[cond]["eer"] == pytest.approx(expected["eer"]), cond
        assert res[cond]["false_alarm_percent"] == pytest.approx(expected["false_alarm_percent"]), cond


def _release_card(path: Path, dev_eer: float, test_eer: float) -> Path:
    """A model card as ``edge-cm-train release`` writes it (its own writer), one system per split."""
    from training.release import model_card

    def split(eer: float) -> dict:
        result = {"eer": eer, "auc": 0.9, "n_bonafide": 10, "n_spoof": 12}
        return {"systems": {"voc_x": result}, "pooled": result}

    summary = {"train": {"bonafide_files": 1, "bonafide_minutes": 1.0, "spoof_files": 1, "spoof_minutes": 1.0,
                         "spoof_systems": ["voc_y"]}}
    path.write_text(model_card("m", "spec_mel_cnn", {}, split(dev_eer), split(test_eer), 0.5, summary, {}, None))
    return path


def _curve(path: Path, rates: list[float], losses: list[float]) -> Path:
    from training.train import METRIC_FIELDS

    path.write_text(",".join(METRIC_FIELDS) + "\n" + "".join(
        ",".join(str(v) for v in (e, e * 10, rate, 1.0, loss, 0.3, 0.7, 60.0)) + "\n"
        for e, (rate, loss) in enumerate(zip(rates, losses), start=1)), encoding="utf-8")
    return path


def test_lr_halving_reads_runs_and_ranks_the_first_reduced_epoch_against_outcomes(tmp_path):
    lrh = _script("lr_halving")
    args = []
    # first halving after epochs 2, 4, 6, 8 and never (a 10-epoch run); later halving, lower loss and EER here
    for i, halved_at in enumerate([3, 5, 7, 9, None]):
        rates = [1e-3 if halved_at is None or e < halved_at else 5e-4 for e in range(1, 11)]
        losses = [0.9] * 10
        losses[6] = 0.5 - 0.05 * i  # best at epoch 7, lower for runs halved later
        args += ["--run", f"r{i}", str(_curve(tmp_path / f"c{i}.csv", rates, losses)),
                 str(_release_card(tmp_path / f"m{i}.md", 0.12 - 0.01 * i, 0.10 + 0.01 * (i % 2)))]
    out = tmp_path / "lr_halving.md"
    assert lrh.main(args + ["--permutations", "2000", "--early", "5", "--out", str(out)]) == 0
    import json

    result = json.loads(out.with_suffix(".json").read_text())
    runs = {r["name"]: r for r in result["runs"]}
    assert [runs[f"r{i}"]["first_reduced_epoch"] for i in range(5)] == [3, 5, 7, 9, None]
    assert runs["r3"]["best_epoch"] == 7 and runs["r3"]["best_val_loss"] == pytest.approx(0.35)
    assert runs["r2"]["dev_eer"] == pytest.approx(10.0) and runs["r1"]["test_eer"] == pytest.approx(11.0)
    spearman = result["spearman_with_first_reduced_epoch"]
    assert spearman["best validation loss"]["rho"] == pytest.approx(-1.0)  # "never" ranks after every halving
    assert spearman["dev EER"]["p"] < 0.05  # 2 of the 120 orders are as extreme
    assert abs(spearman["test EER"]["rho"]) < 0.5
    text = out.read_text()
    assert "| r4 | 10 | never | 7 | 0.300 | 8.00 | 10.00 |" in text
    assert "| by epoch 5 | 2 |" in text and "| after epoch 5 | 3 |" in text
    assert lrh.ranks(np.array([2.0, 1.0, 2.0])).tolist() == [2.5, 1.0, 2.5]


def test_lr_halving_refuses_missing_or_foreign_files_with_a_typed_error(tmp_path):
    lrh = _script("lr_halving")
    curve = _curve(tmp_path / "c.csv", [1e-3, 5e-4], [0.5, 0.4])
    card = _release_card(tmp_path / "m.md", 0.1, 0.1)
    with pytest.raises(DataError, match="model card not found"):
        lrh.summarise("r", curve, tmp_path / "none.md")
    with pytest.raises(DataError, match="no pooled dev and test"):
        lrh.summarise("r", curve, curve)  # a curve passed as the card
    with pytest.raises(DataError, match="not a training curve"):
        lrh.summarise("r", card, card)
    with pytest.raises(DataError, match="training curve not found"):
        lrh.summarise("r", tmp_path / "none.csv", card)
    diverged = _curve(tmp_path / "nan.csv", [1e-3, 1e-3], [0.5, float("nan")])
    with pytest.raises(DataError, match="NaN or infinite"):
        lrh.summarise("r", diverged, card)
    (tmp_path / "empty.csv").write_text("")
    binary = tmp_path / "binary"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(DataError, match="not a training curve"):
        lrh.summarise("r", tmp_path / "empty.csv", card)
    with pytest.raises(DataError, match="not a text CSV"):
        lrh.summarise("r", binary, card)
    with pytest.raises(DataError, match="not a text file"):
        lrh.summarise("r", curve, binary)
    three = [a for i in range(3) for a in ("--run", f"r{i}", str(curve), str(card))]
    with pytest.raises(DataError, match="at least 3 runs"):
        lrh.main(three[:8] + ["--out", str(tmp_path / "o.md")])
    with pytest.raises(DataError, match="--run names repeat"):
        lrh.main(three[:4] * 3 + ["--out", str(tmp_path / "o.md")])
    assert not (tmp_path / "o.md").exists()
