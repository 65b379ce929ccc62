"""Streaming equals offline scoring, on both backends, for any chunk size (TFLite Micro-style parity)."""
from __future__ import annotations

import numpy as np
import pytest

import edge_cm
from edge_cm.errors import EdgeCMError
from edge_cm.features import FrameAnalyzer, compute_features, normalize
from edge_cm.window import MIN_AUDIO_SECONDS, SpeechGate, loop_to_length, min_audio_samples, window_starts

BACKENDS = ["onnx", "tflite"]


def stream(detector, audio, chunk):
    out = []
    for i in range(0, audio.size, chunk):
        out += detector.process(audio[i:i + chunk])
    return out + detector.flush()


@pytest.fixture(scope="module", params=BACKENDS)
def detector(request, float_bundle):
    return edge_cm.load(float_bundle, backend=request.param)


@pytest.mark.parametrize("chunk", [1, 160, 1000, 16000, 64000])
def test_streaming_equals_offline(detector, real_speech, chunk):
    audio = real_speech[: 9 * 16000 + 777]  # 9.05 s: regular windows plus a tail window
    offline = detector.detect_array(audio, 16000).windows
    streamed = stream(detector, audio, chunk)
    assert [(w.start, w.end, w.verdict) for w in streamed] == [(w.start, w.end, w.verdict) for w in offline]
    assert len(offline) == len(window_starts(audio.size, 64000, detector.hop_samples)) == 4
    for s, o in zip(streamed, offline):
        assert s.score == pytest.approx(o.score, abs=1e-5)
        np.testing.assert_allclose(s.logits, o.logits, atol=1e-4)


def test_int16_chunks_equal_float_chunks(detector, real_speech):
    pcm = np.clip(np.round(real_speech[:80000] * 32768), -32768, 32767).astype(np.int16)
    as_float = pcm.astype(np.float32) / 32768
    a = stream(detector, pcm, 4000)
    b = stream(detector, as_float, 4000)
    assert [w.score for w in a] == [w.score for w in b]


def test_short_audio_is_looped_to_one_window(detector, real_speech):
    audio = real_speech[:24000]  # 1.5 s
    streamed = stream(detector, audio, 1000)
    assert len(streamed) == 1 and streamed[0].looped
    assert (streamed[0].start, streamed[0].end) == (0.0, 1.5)
    features = compute_features(detector.spec, loop_to_length(audio, 64000))
    direct = detector.backend.run(features)
    np.testing.assert_allclose(streamed[0].logits, direct, atol=1e-5)


def test_incremental_features_equal_full_window_features(float_bundle, real_speech):
    """Frames computed as samples arrive, reused by the next window, equal a fresh computation."""
    spec = edge_cm.load(float_bundle).spec
    analyzer = FrameAnalyzer(spec)
    hop, window = 32000, 64000
    audio = real_speech[: 2 * hop + window]
    pending, columns = np.zeros(0, np.float32), []
    for i in range(0, audio.size, 777):  # odd chunk size, frames straddle chunk edges
        pending = np.concatenate([pending, audio[i:i + 777]])
        cols = analyzer.frames(pending)
        columns.extend(cols.T)
        pending = pending[cols.shape[1] * spec.hop_length:]
    per_window = spec.n_frames(window)
    for start in (0, hop, 2 * hop):
        first = start // spec.hop_length
        incremental = normalize(spec, np.stack(columns[first:first + per_window], axis=1))
        full = compute_features(spec, audio[start:start + window])
        np.testing.assert_allclose(incremental, full, atol=1e-5)


def test_silence_is_reported_not_scored(detector, real_speech):
    audio = np.concatenate([np.zeros(80000, np.float32), real_speech[:64000]])
    results = stream(detector, audio, 16000)
    assert results[0].verdict == "no_speech" and results[0].score is None
    assert results[-1].verdict in ("spoof", "bonafide") and results[-1].score is not None
    assert all(0.0 <= w.speech_fraction <= 1.0 for w in results)


def test_speech_gate_counts_loud_frames():
    gate = SpeechGate(level_dbfs=-40.0, frame_samples=320, min_speech_fraction=0.2)
    x = np.zeros(3200, np.float32)
    x[:960] = 0.1 * np.sin(np.arange(960) * 0.3)  # three loud frames of ten (about -23 dBFS)
    assert gate.speech_fraction(x) == pytest.approx(0.3)
    assert gate.has_speech(0.3) and not gate.has_speech(0.1)


def test_hop_option_and_read_only_properties(float_bundle, real_speech):
    det = edge_cm.load(float_bundle, hop_seconds=1.0)
    assert (det.sample_rate, det.window_samples, det.hop_samples) == (16000, 64000, 16000)
    with pytest.raises(AttributeError):
        det.sample_rate = 8000
    results = det.detect_array(real_speech[:96000], 16000).windows
    assert [w.start for w in results] == [0.0, 1.0, 2.0]


def test_reset_starts_a_new_stream(detector, real_speech):
    detector.process(real_speech[:50000])
    detector.reset()
    fresh = stream(detector, real_speech[:70000], 7000)
    assert fresh[0].start == 0.0 and fresh[0].end == 4.0


def test_memory_stays_bounded_on_a_long_stream(float_bundle, real_speech):
    """Internal buffers do not grow with stream length (ten minutes fed in 0.1-s chunks)."""
    det = edge_cm.load(float_bundle)
    chunk = np.resize(real_speech, 1600)
    sizes = []
    for i in range(6000):
        det.process(chunk)
        if i % 1000 == 999:
            sizes.append((det._ring.nbytes, det._pending.nbytes, len(det._columns)))
    assert len(set(sizes)) == 1, sizes


def window_keys(windows):
    return [(w.index, w.start, w.end, w.score, w.verdict) for w in windows]


def test_detect_file_leaves_a_stream_in_progress_untouched(tmp_path, real_speech):
    """An app checks a voicemail file while its microphone stream runs: the stream goes on as if nothing
    happened, and the file is scored as on an idle detector."""
    import soundfile as sf

    det = edge_cm.load()
    audio = real_speech[: 9 * 16000 + 777]
    voicemail = tmp_path / "voicemail.wav"
    sf.write(voicemail, real_speech[16000:6 * 16000], 16000, subtype="FLOAT")
    uninterrupted = stream(det, audio, 1000)
    alone = det.detect_file(voicemail)
    before = []
    for i in range(0, 70000, 1000):  # past the first window, into the second
        before += det.process(audio[i:i + 1000])
    during = det.detect_file(voicemail)
    after = stream(det, audio[70000:], 1000)
    assert len(before) == 1 and len(uninterrupted) == 4
    assert window_keys(before + after) == window_keys(uninterrupted)
    assert window_keys(during.windows) == window_keys(alone.windows) and len(alone.windows) == 2


def test_audio_shorter_than_the_minimum_is_no_speech_not_judged(tmp_path, real_speech):
    """0.1 s of speech (gate: mostly active frames) is not looped into a verdict; 0.4 s is, offline and streamed."""
    import soundfile as sf

    det = edge_cm.load()
    n_min = min_audio_samples(16000)
    assert n_min == round(MIN_AUDIO_SECONDS * 16000) == 4000
    speech = real_speech[16000:]
    assert det.gate.speech_fraction(speech[:1600]) >= 0.6  # it is speech: only its length keeps it unscored
    for n, scored in ((1, False), (1600, False), (n_min - 1, False), (n_min, True), (6400, True)):
        offline = det.detect_array(speech[:n], 16000).windows
        streamed = stream(det, speech[:n], 1000)
        assert window_keys(streamed) == window_keys(offline) and len(offline) == 1
        w = offline[0]
        assert (w.start, w.end) == (0.0, n / 16000)
        assert (w.score is not None, w.looped) == (scored, scored)
        assert w.verdict in (("spoof", "bonafide") if scored else ("no_speech",))
    p = tmp_path / "short_48k.wav"  # a file at another rate: the limit applies after resampling to 16 kHz
    sf.write(p, np.repeat(speech[:1600], 3), 48000, subtype="PCM_16")
    clip = det.detect_file(p)
    assert (clip.verdict, clip.score, len(clip.windows)) == ("no_speech", None, 1)
    assert clip.windows[0].end == pytest.approx(0.1)


def test_hop_must_be_finite_and_at_most_the_window():
    """A hop longer than the window skipped audio; inf/NaN crashed with OverflowError/ValueError."""
    for bad in (float("inf"), float("nan"), 0.0, -1.0, 4.01, 10.0, "two"):
        with pytest.raises(EdgeCMError, match=r"hop must be seconds in \(0, 4\] \(the window length\)"):
            edge_cm.load(hop_seconds=bad)
    assert edge_cm.load(hop_seconds=4.0).hop_samples == 64000
