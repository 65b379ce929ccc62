"""The bad-input table: every odd input gets a defined result or a typed error naming the file."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

import edge_cm
from edge_cm.audio import read_audio
from edge_cm.bundle import BUNDLE_FILE, load_bundle
from edge_cm.errors import (AudioReadError, BundleError, BundleIntegrityError, EmptyAudioError,
                            InvalidSamplesError)


@pytest.fixture(scope="module")
def detector(float_bundle):
    return edge_cm.load(float_bundle)


def tone_speech(real_speech, seconds):
    return np.resize(real_speech, int(seconds * 16000)).astype(np.float32)


def test_empty_file(tmp_path, detector):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match="empty.wav"):
        detector.detect_file(p)


def test_truncated_wav_header(tmp_path, detector, real_speech):
    good = tmp_path / "good.wav"
    sf.write(good, real_speech[:16000], 16000, subtype="PCM_16")
    bad = tmp_path / "truncated.wav"
    bad.write_bytes(good.read_bytes()[:30])
    with pytest.raises(AudioReadError, match="truncated.wav"):
        detector.detect_file(bad)


def test_text_file_named_wav(tmp_path, detector):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioReadError, match="notes.wav.*cannot decode"):
        detector.detect_file(p)


def test_missing_file(tmp_path, detector):
    with pytest.raises(AudioReadError, match="file not found"):
        detector.detect_file(tmp_path / "nope.flac")


def test_zero_samples(tmp_path, detector):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, np.int16), 16000, subtype="PCM_16")
    with pytest.raises(EmptyAudioError, match="zero.wav"):
        detector.detect_file(p)
    with pytest.raises(EmptyAudioError):
        read_audio(p)


def test_all_zero_audio_is_no_speech(tmp_path, detector):
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(16000 * 6, np.int16), 16000, subtype="PCM_16")
    clip = detector.detect_file(p)
    assert clip.verdict == "no_speech" and clip.score is None
    assert len(clip.windows) == 2 and all(w.verdict == "no_speech" for w in clip.windows)


def test_float_wav_with_nan(tmp_path, detector, real_speech):
    x = real_speech[:32000].copy()
    x[1000] = np.nan
    p = tmp_path / "nan.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.raises(InvalidSamplesError, match="nan.wav.*NaN"):
        detector.detect_file(p)


@pytest.mark.parametrize("rate,channels,subtype", [(8000, 1, "PCM_16"), (44100, 1, "PCM_16"),
                                                   (48000, 2, "PCM_16"), (16000, 1, "PCM_24"),
                                                   (16000, 1, "PCM_32"), (16000, 1, "FLOAT")])
def test_rates_channels_and_sample_formats_are_converted(tmp_path, detector, real_speech, rate, channels, subtype):
    """Other rates are resampled, stereo is averaged, 24/32-bit and float are scaled: scores match 16 kHz mono."""
    from edge_cm.audio import resample

    x = real_speech[:5 * 16000]
    y = resample(x, 16000, rate)
    data = np.stack([y, y], axis=1) if channels == 2 else y
    p = tmp_path / f"in_{rate}_{channels}_{subtype}.wav"
    sf.write(p, data, rate, subtype=subtype)
    clip = detector.detect_file(p)
    assert clip.duration == pytest.approx(5.0, abs=1e-3)
    assert [w.start for w in clip.windows] == [0.0, 1.0]
    reference = detector.detect_array(y, rate)  # the same samples, resampled in memory (8 kHz lost its top band)
    assert clip.score == pytest.approx(reference.score, abs=0.01)  # the file adds only PCM rounding


def test_mp3(tmp_path, detector, real_speech):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed: cannot make an MP3 to read")
    wav, mp3 = tmp_path / "x.wav", tmp_path / "x.mp3"
    sf.write(wav, real_speech[:5 * 16000], 16000)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-b:a", "64k", str(mp3)], check=True)
    if "MP3" not in sf.available_formats():
        with pytest.raises(AudioReadError, match="x.mp3"):
            detector.detect_file(mp3)
        return
    clip = detector.detect_file(mp3)
    assert clip.duration == pytest.approx(5.0, abs=0.1)  # decoder padding may add a few ms
    assert clip.score is not None


def test_wrong_chunk_dtype_and_shape(detector):
    with pytest.raises(InvalidSamplesError, match="dtype int32"):
        detector.process(np.zeros(100, np.int32))
    with pytest.raises(InvalidSamplesError, match="float64"):
        detector.process(np.zeros(100, np.float64))
    with pytest.raises(InvalidSamplesError, match="1-D"):
        detector.process(np.zeros((100, 2), np.float32))
    bad = np.zeros(100, np.float32)
    bad[3] = np.inf
    with pytest.raises(InvalidSamplesError, match="NaN or Inf"):
        detector.process(bad)


def copy_bundle(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_bundle_with_wrong_hash(tmp_path, float_bundle):
    b = copy_bundle(float_bundle, tmp_path / "b")
    with open(b / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleIntegrityError, match="sha256 of model.onnx"):
        edge_cm.load(b)


def test_bundle_with_missing_model_file(tmp_path, float_bundle):
    b = copy_bundle(float_bundle, tmp_path / "b")
    (b / "model.tflite").unlink()
    with pytest.raises(BundleIntegrityError, match="model.tflite.*missing"):
        load_bundle(b)


def test_bundle_metadata_that_does_not_match_the_model(tmp_path, float_bundle):
    b = copy_bundle(float_bundle, tmp_path / "b")
    meta = json.loads((b / BUNDLE_FILE).read_text())
    for m in meta["models"]:
        m["input"]["shape"] = [1, 1, 865, 400]
    (b / BUNDLE_FILE).write_text(json.dumps(meta))
    for backend in ("onnx", "tflite"):
        with pytest.raises(BundleIntegrityError, match="input shape"):
            edge_cm.load(b, backend=backend)


def test_bundle_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no bundle.json"):
        edge_cm.load(tmp_path)
    (tmp_path / BUNDLE_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="cannot parse"):
        edge_cm.load(tmp_path)


def test_one_hour_file_streams_with_bounded_memory(tmp_path, float_bundle, real_speech):
    """A 1-hour file is scored block by block; peak RSS stays far below the decoded file size."""
    import sys
    import textwrap

    p = tmp_path / "hour.wav"
    minute = (np.resize(real_speech, 16000 * 60) * 32767).astype(np.int16)
    minute[16000 * 20:16000 * 40] = 0  # some silence, as in real recordings
    with sf.SoundFile(p, "w", 16000, 1, subtype="PCM_16") as f:
        for _ in range(60):
            f.write(minute)
    script = textwrap.dedent(f"""
        import edge_cm
        det = edge_cm.load({str(float_bundle)!r}, hop_seconds=4.0)
        clip = det.detect_file({str(p)!r})
        # VmHWM (peak RSS) of this process image; ru_maxrss would include the forking parent's
        hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
        rss_mb = int(hwm.split()[1]) / 1024
        print(len(clip.windows), round(clip.duration), round(rss_mb))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    windows, duration, rss_mb = map(int, out)
    assert duration == 3600 and windows == 900
    decoded_float32_mb = 3600 * 16000 * 4 / 1e6  # 230 MB if the file were read whole
    assert rss_mb < 150, f"peak RSS {rss_mb} MB: the file was not streamed ({decoded_float32_mb:.0f} MB whole)"
