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


def flite_clip():
    return next(c["path"] for c in __import__("edge_cm.demo", fromlist=["x"]).demo_clips()
                if c["file"] == "tts_flite.flac")


def test_each_spoof_stream_alerts_and_its_alert_clears_when_it_ends():
    """finish() kept the alert standing, so a second spoofed call never alerted. Now each stream alerts at its
    second spoof window and is cleared at its end (score None: no window decided it)."""
    detector = edge_cm.load()
    offline = detector.detect_file(flite_clip())
    assert [w.verdict for w in offline.windows] == ["spoof", "spoof"]
    guard = VoiceGuard(detector, consecutive=2)
    for _ in range(2):
        for chunk in file_chunks(flite_clip()):
            guard.feed(chunk)
        guard.finish()
    end = offline.windows[-1].end
    assert [(e.kind, e.time) for e in guard.events] == [("alert", end), ("clear", end)] * 2
    assert guard.events[0].score == pytest.approx(offline.windows[1].score) and guard.events[1].score is None


class ScriptedMicrophone:
    """Stands in for the sound card only: real audio at 48 kHz, then Ctrl-C when it runs out."""

    def __init__(self, samples, rate):
        self.samplerate, self._x, self._pos = rate, samples, 0

    def start(self):
        pass

    def stop(self):
        pass

    def close(self):
        pass

    def read(self, frames):
        if self._pos >= self._x.size:
            raise KeyboardInterrupt
        block = self._x[self._pos:self._pos + frames]
        self._pos += frames
        return block[:, None].astype("float32"), False


def test_live_microphone_branch_flushes_its_resampler(monkeypatch, capsys):
    """The live branch gives the guard the resampler's held-back tail (a few ms), so the last window ends
    where the audio does: the clear at the end of the stream is at the clip's full length."""
    import edge_cm.mic
    import voice_guard
    from edge_cm.audio import read_audio, resample

    audio = read_audio(flite_clip())
    mic = ScriptedMicrophone(resample(audio, 16000, 48000), 48000)
    monkeypatch.setattr(edge_cm.mic, "open_microphone", lambda device, rate: mic)
    seen = []
    monkeypatch.setattr(voice_guard, "print_event", seen.append)
    assert main([]) == 0
    assert [(e.kind, e.time) for e in seen] == [("alert", audio.size / 16000), ("clear", audio.size / 16000)]
    assert capsys.readouterr().out.splitlines()[-1] == "2 event(s)"
