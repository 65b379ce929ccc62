"""training.uncertainty: bootstrap intervals of EER (used by edge-cm-train eval and
benchmarks/eer_uncertainty.py)."""
from __future__ import annotations

import numpy as np
import pytest

from edge_cm import metrics as M
from training import uncertainty as U


def _two_class_scores(rng, n_bona=60, per_system=20, systems=("a", "b", "c")):
    """P(spoof) of bona fide clips (lower) and of three systems' clips, overlapping."""
    is_bona = np.array([True] * n_bona + [False] * (per_system * len(systems)))
    names = np.array(["-"] * n_bona + [s for s in systems for _ in range(per_system)])
    p = np.where(is_bona, rng.normal(0.3, 0.15, is_bona.size), rng.normal(0.6, 0.2, is_bona.size))
    return np.clip(p, 0, 1), is_bona, names


def test_eer_bootstrap_resamples_within_strata_and_reports_the_audited_point_eer():
    rng = np.random.default_rng(1)
    p, is_bona, names = _two_class_scores(rng)
    strata = U.strata_of(is_bona, names)
    assert set(strata) == {U.BONAFIDE, "a", "b", "c"} and all(u.size == 1 for v in strata.values() for u in v)
    drawn = U.resample(strata, np.random.default_rng(0))
    for k, units in strata.items():
        v = np.concatenate(units)
        assert drawn[k].size == v.size and set(drawn[k]) <= set(v) and len(set(drawn[k])) < v.size
    res = U.bootstrap({"x": -p}, is_bona, names, n_resamples=300, seed=0)
    ref = M.breakdown(p, ["bonafide" if b else "spoof" for b in is_bona], names, higher_means="spoof")
    assert res["rows"]["pooled"]["x"]["eer"] == pytest.approx(ref["pooled"]["eer"])
    for s in ("a", "b", "c"):
        entry = res["rows"][s]["x"]
        assert entry["eer"] == pytest.approx(ref["systems"][s]["eer"])
        lo, hi = entry["interval"]
        assert lo <= entry["eer"] <= hi and hi - lo > 0.02  # 20 clips per system: a wide interval
    assert res["clips"] == {U.BONAFIDE: 60, "a": 20, "b": 20, "c": 20}
    again = U.bootstrap({"x": -p}, is_bona, names, n_resamples=300, seed=0)
    assert again["rows"]["pooled"]["x"]["interval"] == res["rows"]["pooled"]["x"]["interval"]


def test_eer_bootstrap_by_speaker_draws_whole_speakers_and_single_clips_of_one_voice():
    """--unit speaker: a speaker's clips come in or stay out together; a stratum with one speaker
    (a TTS voice) is drawn clip by clip; the point EER does not depend on the unit."""
    p, is_bona, names = _two_class_scores(np.random.default_rng(3))
    speakers = np.where(is_bona, np.arange(is_bona.size) % 6, np.where(names == "a", 100, np.arange(is_bona.size) % 4))
    strata = U.strata_of(is_bona, names, speakers.astype(str))
    assert len(strata[U.BONAFIDE]) == 6 and len(strata["a"]) == 20 and len(strata["b"]) == 4
    rng = np.random.default_rng(0)
    for _ in range(20):
        drawn = U.resample(strata, rng)
        for k in (U.BONAFIDE, "b"):
            counts = {c: np.sum(speakers[drawn[k]].astype(str) == c) for c in set(speakers[drawn[k]].astype(str))}
            whole = {c: int(np.sum(speakers[np.concatenate(strata[k])].astype(str) == c)) for c in counts}
            assert all(counts[c] % whole[c] == 0 for c in counts)  # whole speakers, possibly repeated
    by_clip = U.bootstrap({"x": -p}, is_bona, names, n_resamples=200, seed=0)
    by_speaker = U.bootstrap({"x": -p}, is_bona, names, n_resamples=200, seed=0, clusters=speakers.astype(str))
    assert by_speaker["rows"]["pooled"]["x"]["eer"] == by_clip["rows"]["pooled"]["x"]["eer"]
    assert by_speaker["units"] == {U.BONAFIDE: 6, "a": 20, "b": 4, "c": 4}


def test_eer_bootstrap_differences_are_paired():
    """The same model twice differs by exactly 0 in every resample; a model that separates the
    classes better is lower in (nearly) every resample; more clips give a narrower interval."""
    rng = np.random.default_rng(2)
    p, is_bona, names = _two_class_scores(rng)
    better = np.where(is_bona, p - 0.15, p + 0.15)
    res = U.bootstrap({"x": -p, "same": -p, "better": -better}, is_bona, names, n_resamples=300, seed=0)
    same, best = res["rows"]["pooled"]["same"], res["rows"]["pooled"]["better"]
    assert same["minus_first"] == 0.0 and same["minus_first_interval"] == (0.0, 0.0)
    assert same["lower_than_first_share"] == 0.0
    assert best["minus_first"] < 0 and best["minus_first_interval"][1] < 0 and best["lower_than_first_share"] > 0.95
    big_p, big_bona, big_names = _two_class_scores(np.random.default_rng(2), n_bona=600, per_system=200)
    big = U.bootstrap({"x": -big_p}, big_bona, big_names, n_resamples=300, seed=0)
    width = lambda r: np.subtract(*r["rows"]["pooled"]["x"]["interval"][::-1])  # noqa: E731
    assert width(big) < width(res)


def test_clips_without_a_speaker_are_units_of_their_own_and_too_few_draws_are_refused(tmp_path):
    """An empty speaker label (not known) must not lump those clips into one giant 'speaker'."""
    from edge_cm.errors import DataError
    from training.evaluate import main as eval_main

    is_bona = np.array([True] * 6 + [False] * 4)
    systems = np.array(["-"] * 6 + ["v"] * 4)
    speakers = np.array(["s1", "s1", "s2", "", "", ""] + ["a", "a", "b", "b"])
    strata = U.strata_of(is_bona, systems, speakers)
    assert sorted(u.size for u in strata[U.BONAFIDE]) == [1, 1, 1, 1, 2]
    assert sorted(u.size for u in strata["v"]) == [2, 2]
    with pytest.raises(DataError, match="too few"):
        U.bootstrap({"x": np.arange(10.0)}, is_bona, systems, n_resamples=10, seed=0)
    # the command refuses before it loads anything: the checkpoint need not exist
    with pytest.raises(DataError, match="too few"):
        eval_main(["--checkpoint", str(tmp_path / "none.pt"), "--manifest", str(tmp_path / "m.csv"),
                   "--out", str(tmp_path / "eval"), "--resamples", "10"])
    assert not (tmp_path / "eval").exists()


def test_a_row_without_a_speaker_is_drawn_with_its_recording_source():
    from training.data.manifest import ManifestRow

    named = ManifestRow(path="a.wav", label="bonafide", family="bonafide", split="dev", speaker="s1", source="x")
    unnamed = ManifestRow(path="b.wav", label="bonafide", family="bonafide", split="dev", source="mycroft_precise")
    nothing = ManifestRow(path="c.wav", label="bonafide", family="bonafide", split="dev")
    assert [U.speaker_unit(r) for r in (named, unnamed, nothing)] == ["s1", "source:mycroft_precise", ""]
