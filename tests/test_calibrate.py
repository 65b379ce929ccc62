"""Choosing a threshold from real speech (`edge-cm calibrate`) and using it (`load(threshold=...)`,
`--threshold`), with the shipped model on real clips of the shared corpus heard through noise."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

import edge_cm
from edge_cm.calibrate import calibrate, false_alarm_rate, threshold_for
from edge_cm.cli import EXIT_ERROR, EXIT_OK, main
from edge_cm.errors import AudioError, EdgeCMError

from conftest import pick_clips


def test_threshold_for_allows_at_most_the_target_share_of_clips_at_or_above_it():
    scores = np.linspace(0.05, 0.95, 10)
    t = threshold_for(scores, 0.2)  # two of ten clips may stay spoof
    assert scores[7] < t <= scores[8] and false_alarm_rate(scores, t) == pytest.approx(0.2)
    assert threshold_for(scores, 0.25) == t  # 2.5 clips round down to two
    assert false_alarm_rate(scores, threshold_for(scores, 0.1)) == pytest.approx(0.1)
    tied = [0.5] * 10  # ties cannot be split: the threshold goes above all of them
    assert threshold_for(tied, 0.1) > 0.5 and false_alarm_rate(tied, threshold_for(tied, 0.1)) == 0.0
    assert round(t, 6) == t  # rounded up, so the printed value is the measured one
    with pytest.raises(EdgeCMError, match="cannot resolve a 5 % false-alarm rate"):
        threshold_for(scores, 0.05)  # ten clips, a 1-in-20 rate
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(EdgeCMError, match="fraction in"):
            threshold_for(scores, bad)


@pytest.fixture(scope="module")
def noisy_room(tmp_path_factory, bonafide_dir, bonafide_rows):
    """Twenty real dev clips with white noise at 10 dB SNR, as a device in a noisy room would record them."""
    from edge_cm.audio import read_audio

    folder = tmp_path_factory.mktemp("room")
    rng = np.random.default_rng(0)
    paths = []
    for k, row in enumerate(pick_clips(bonafide_rows, "dev", 20, 1.5, 8.0)):
        x = read_audio(bonafide_dir / row["path"]).astype(np.float64)
        noise = rng.standard_normal(x.size) * np.sqrt(np.mean(x ** 2) / 10.0)
        y = x + noise
        paths.append(folder / f"clip{k:02d}.wav")
        sf.write(paths[-1], (y / max(1.0, np.abs(y).max())).astype(np.float32), 16000)
    return paths


def test_calibrated_threshold_holds_false_alarms_to_the_target_on_the_same_clips(noisy_room):
    detector = edge_cm.load()
    cal = calibrate(detector, noisy_room, 0.1)
    scores = [detector.detect_file(p).score for p in noisy_room]
    assert cal.clips == 20 and cal.no_speech == ()
    assert cal.bundle_threshold == detector.threshold
    assert cal.bundle_false_alarms == pytest.approx(np.mean(np.array(scores) >= detector.threshold))
    assert cal.false_alarms <= 0.1 and cal.false_alarms == pytest.approx(false_alarm_rate(scores, cal.threshold))
    tuned = edge_cm.load(threshold=cal.threshold)
    verdicts = [tuned.detect_file(p).verdict for p in noisy_room]
    assert tuned.threshold == cal.threshold and verdicts.count("spoof") == round(20 * cal.false_alarms)
    # the window verdicts follow the same threshold as the clip's
    clip = tuned.detect_file(noisy_room[0])
    assert all(w.verdict == ("spoof" if w.score >= cal.threshold else "bonafide") for w in clip.speech_windows)


def test_calibrate_and_threshold_on_the_command_line(noisy_room, tmp_path, capsys):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, np.float32), 16000)
    files = [str(p) for p in noisy_room] + [str(silent)]
    assert main(["calibrate", *files, "--false-alarms", "10", "--json"]) == EXIT_OK
    cal = json.loads(capsys.readouterr().out)
    assert cal["clips"] == 20 and cal["no_speech"] == [str(silent)] and cal["false_alarms"] <= 0.1
    assert main(["calibrate", *files, "--false-alarms", "10"]) == EXIT_OK
    text = capsys.readouterr().out
    assert f"threshold {cal['threshold']:.6f}" in text and "without speech left out" in text
    assert main(["detect", *map(str, noisy_room), "--threshold", str(cal["threshold"]), "--json"]) == EXIT_OK
    clips = json.loads(capsys.readouterr().out)["clips"]
    assert {c["threshold"] for c in clips} == {cal["threshold"]}
    assert sum(c["verdict"] == "spoof" for c in clips) == round(20 * cal["false_alarms"])
    # bad input: a typed one-line error, exit 2
    assert main(["calibrate", *files[:5], "--false-alarms", "10"]) == EXIT_ERROR
    assert "cannot resolve" in capsys.readouterr().err
    assert main(["calibrate", str(silent)]) == EXIT_ERROR
    assert "no file holds speech" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00not audio")
    assert main(["calibrate", *files, str(corrupt)]) == EXIT_ERROR
    assert "corrupt.wav" in capsys.readouterr().err
    empty, nan = tmp_path / "empty.wav", tmp_path / "nan.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    sf.write(nan, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    for bad in (empty, nan):
        assert main(["calibrate", *files, str(bad)]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert bad.name in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for target in ("0", "100", "nan"):  # refused before any clip is scored
        assert main(["calibrate", *files, "--false-alarms", target]) == EXIT_ERROR
        assert f"false-alarm target must be a percent in (0, 100), got {target}" in capsys.readouterr().err
    assert main(["detect", files[0], "--threshold", "1.5"]) == EXIT_ERROR
    assert "threshold must be a spoof probability" in capsys.readouterr().err


def test_threshold_lies_strictly_above_the_score_it_must_exceed():
    """Rounding up to six decimals landed back on 0.30004 (a bona fide score): 2 of 20 false alarms, 10 %
    against a 5 % target. Every six-decimal score in a sweep now gets a threshold strictly above it."""
    scores = [0.05] * 18 + [0.30004, 0.9]
    t = threshold_for(scores, 0.05)
    assert t == 0.300041 and false_alarm_rate(scores, t) == 0.05
    for k in range(0, 1_000_000, 7):
        s = k / 1e6
        t = threshold_for([0.0] * 18 + [s, 1.0], 0.05)
        assert s < t <= s + 1.000001e-6 and round(t, 6) == t, (s, t)


def test_scores_saturated_at_one_have_no_threshold():
    """min(1.0, ...) returned 1.0 for two clips at 1.0, which are both judged spoof at 1.0 (10 % vs 5 %)."""
    with pytest.raises(EdgeCMError, match=r"2 of 20 clips with speech score 1, more than the 1 .* no threshold up"):
        threshold_for([0.1] * 18 + [1.0, 1.0], 0.05)
    assert threshold_for([0.1] * 19 + [1.0], 0.05) == 0.100001  # one such clip is the one allowed
    assert threshold_for([0.1] * 18 + [0.9999995, 1.0], 0.05) == 1.0


def test_calibrate_reports_a_bad_percent_in_percent(capsys):
    """--false-alarms 150 was reported as "got 1.5" beside a percent hint; it is refused before any scoring."""
    assert main(["calibrate", "never-read.wav", "--false-alarms", "150"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.strip() == ("edge-cm calibrate: error: false-alarm target must be a percent in (0, 100), got 150 "
                           "(e.g. --false-alarms 5 for 5 %)")


def test_load_refuses_a_threshold_that_is_not_a_probability():
    for bad in (0.0, -0.2, 1.01, float("nan"), "high"):
        with pytest.raises(EdgeCMError, match="threshold must be a spoof probability"):
            edge_cm.load(threshold=bad)
    assert edge_cm.load(threshold=1.0).threshold == 1.0


def test_calibrate_names_an_unreadable_file(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match="missing.wav"):
        calibrate(edge_cm.load(), [missing], 0.1)
