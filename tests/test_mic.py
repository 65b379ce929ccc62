"""``edge-cm listen`` code path without a sound card.

What is faked: only the sound card. ``ScriptedStream`` stands in for
sounddevice.InputStream: it returns real speech at 48 kHz in the blocks asked for
and reports an input overflow on two reads. Everything after it - resampling to
16 kHz, the detector, the printed lines, the overflow count - is the real code.
"""
from __future__ import annotations

import io

import numpy as np
import pytest

import edge_cm
from edge_cm.audio import resample
from edge_cm.errors import DeviceError, EdgeCMError
from edge_cm.mic import listen


class ScriptedStream:
    def __init__(self, samples: np.ndarray, rate: int, overflow_reads=(3, 7)):
        self.samplerate = rate
        self._x = samples
        self._pos = 0
        self._reads = 0
        self._overflow_reads = set(overflow_reads)
        self.started = self.closed = False

    def start(self):
        self.started = True

    def stop(self):
        pass

    def close(self):
        self.closed = True

    def read(self, frames):
        block = self._x[self._pos:self._pos + frames]
        self._pos += frames
        self._reads += 1
        return block[:, None].astype(np.float32), self._reads in self._overflow_reads


def test_listen_scores_a_48k_stream_like_offline(float_bundle, real_speech):
    speech = real_speech[:10 * 16000]
    stream = ScriptedStream(resample(speech, 16000, 48000), 48000)
    out = io.StringIO()
    assert listen(bundle=float_bundle, stream=stream, seconds=10.0, out=out) == 0
    assert stream.started and stream.closed
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("UNTRAINED MODEL")
    assert "listening at 48000 Hz" in lines[1]
    window_lines = [ln for ln in lines if ln.strip().endswith("dBFS") or "overflows" in ln and "dBFS" in ln]
    offline = edge_cm.load(float_bundle).detect_array(resample(resample(speech, 16000, 48000), 48000, 16000), 16000)
    assert len(window_lines) == len(offline.windows) == 4
    for line, w in zip(window_lines, offline.windows):
        assert f"{w.end:8.1f}s" in line and f"{w.score:6.3f}" in line
    assert "overflows 2" in window_lines[-1]
    assert lines[-1].endswith("input overflows: 2")


def test_listen_judges_windows_by_the_threshold_it_is_given(float_bundle, real_speech):
    """A calibrated threshold (edge-cm calibrate) reaches the live verdicts: the same stream is all spoof
    below every window's score and all bona fide above it. The sound card is a scripted stream."""
    speech = real_speech[:8 * 16000]
    scores = [w.score for w in edge_cm.load(float_bundle).detect_array(speech, 16000).windows]
    verdicts = {}
    for name, threshold in (("low", min(scores) / 2), ("high", 1.0)):
        out = io.StringIO()
        assert listen(bundle=float_bundle, stream=ScriptedStream(speech, 16000, ()), seconds=8.0, out=out,
                      threshold=threshold) == 0
        verdicts[name] = {ln.split()[2] for ln in out.getvalue().splitlines() if ln.strip().endswith("dBFS")}
    assert verdicts == {"low": {"spoof"}, "high": {"bonafide"}}


def test_missing_device_is_a_clear_error(float_bundle, monkeypatch):
    pytest.importorskip("sounddevice")
    from edge_cm.mic import open_microphone

    with pytest.raises(DeviceError, match="no usable input device|PortAudio"):
        open_microphone("no such microphone 12345", 16000)


def test_listen_refuses_seconds_that_are_not_finite_and_positive(real_speech):
    """seconds=inf raised a bare OverflowError, NaN a ValueError; 0 or less listened to nothing."""
    for bad in (float("inf"), float("nan"), 0.0, -1.0):
        stream = ScriptedStream(real_speech[:16000], 16000, ())
        with pytest.raises(EdgeCMError, match="seconds to listen must be a finite number above 0"):
            listen(stream=stream, seconds=bad, out=io.StringIO())
        assert not stream.started
