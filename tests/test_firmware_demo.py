"""The embedding example: the debounced voice guard over a real detector."""
from __future__ import annotations

import sys

import pytest

import edge_cm
from edge_cm.detector import WindowResult

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "firmware_demo"))
from voice_guard import VoiceGuard, file_chunks, main  # noqa: E402


def window(i, verdict, score):
    return WindowResult(i, 2.0 * i, 2.0 * i + 4, None if verdict == "no_speech" else score, verdict, 0.5)


@pytest.fixture(scope="module")
def detector(float_bundle):
    return edge_cm.load(float_bundle)


def test_alert_needs_consecutive_spoof_windows_and_clears_on_bonafide(detector):
    guard = VoiceGuard(detector, consecutive=2)
    for i, (v, s) in enumerate([("spoof", 0.9), ("bonafide", 0.1), ("spoof", 0.8), ("no_speech", 0),
                                ("spoof", 0.7), ("spoof", 0.95), ("bonafide", 0.2)]):
        guard.decide(window(i, v, s))
    assert [(e.kind, e.time) for e in guard.events] == [("alert", 12.0), ("clear", 16.0)]


def test_guard_runs_on_a_real_file_stream(detector):
    clip = next(c for c in __import__("edge_cm.demo", fromlist=["x"]).demo_clips() if c["label"] == "spoof")
    seen = []
    guard = VoiceGuard(detector, consecutive=1, on_event=seen.append)
    for chunk in file_chunks(clip["path"]):
        guard.feed(chunk)
    guard.finish()
    offline = detector.detect_file(clip["path"])
    first_spoof = next((w for w in offline.windows if w.verdict == "spoof"), None)
    if first_spoof is None:
        assert seen == []
    else:
        assert seen[0].kind == "alert" and seen[0].time == first_spoof.end


def test_cli_alerts_by_the_threshold_it_is_given(capsys, float_bundle):
    clip = next(c for c in __import__("edge_cm.demo", fromlist=["x"]).demo_clips() if c["label"] == "spoof")
    counts = {}
    for threshold in ("1e-6", "1.0"):  # below every window score, then above every one
        assert main(["--bundle", str(float_bundle), "--file", str(clip["path"]), "--consecutive", "1",
                     "--threshold", threshold]) == 0
        counts[threshold] = capsys.readouterr().out.count("ALERT")
    assert counts == {"1e-6": 1, "1.0": 0}
    assert main(["--bundle", str(float_bundle), "--file", str(clip["path"]), "--threshold", "0"]) == 2
    assert "threshold must be a spoof probability" in capsys.readouterr().err


def test_cli_reports_bad_input(tmp_path, capsys, float_bundle):
    bad = tmp_path / "x.wav"
    bad.write_text("nope")
    assert main(["--bundle", str(float_bundle), "--file", str(bad)]) == 2
    assert "x.wav" in capsys.readouterr().err
