"""The bad-input table: every odd input gets a defined result or a typed error naming the file."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

import edge_cm
from edge_cm.audio import FLOAT_PEAK_LIMIT, StreamingResampler, iter_audio_blocks, read_audio, resample
from edge_cm.bundle import BUNDLE_FILE, load_bundle
from edge_cm.demo import demo_clips
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


def flite_spoof():
    """The bundled flite TTS clip (16 kHz float32), which the default model judges spoof."""
    path = next(c["path"] for c in demo_clips() if c["file"] == "tts_flite.flac")
    x, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    return x


def test_float_input_above_full_scale_is_refused_not_misjudged(tmp_path):
    """int16-scale values passed as float turned this spoof into a confident bona fide; arrays, chunks and
    float files above full scale now raise a typed error naming the source, the peak and the fix."""
    detector = edge_cm.load()
    x = flite_spoof()
    assert detector.detect_array(x, 16000).verdict == "spoof"
    for gain in (8.0, 32768.0):
        loud = x * np.float32(gain)
        with pytest.raises(InvalidSamplesError, match=r"^loud: float samples peak at .*divide by 32768"):
            detector.detect_array(loud, 16000, source="loud")
        with pytest.raises(InvalidSamplesError, match=r"^<array>: float samples peak at"):
            detector.detect_array(loud.astype(np.float64), 16000)
        with pytest.raises(InvalidSamplesError, match=r"^<chunk>: float samples peak at"):
            detector.process(loud[:16000])
        p = tmp_path / f"loud_{gain:g}.wav"
        sf.write(p, loud, 16000, subtype="FLOAT")
        with pytest.raises(InvalidSamplesError, match=rf"{p.name}: float samples peak at"):
            detector.detect_file(p)
        with pytest.raises(InvalidSamplesError, match=p.name):
            read_audio(p)
    assert detector.flush() == []  # the refused chunks left nothing in the stream


def test_float_overshoot_from_rounding_and_lossy_decoders_still_passes(tmp_path):
    """A float export 0.05 % over full scale is scored like the same audio at full scale; a Vorbis file of
    speech clipped at full scale decodes above 1.0 (decoder overshoot) and is still read."""
    detector = edge_cm.load()
    x = flite_spoof()
    full = x / np.abs(x).max()
    near = tmp_path / "near.wav"
    sf.write(near, full * np.float32(1.0005), 16000, subtype="FLOAT")
    assert 1.0 < np.abs(read_audio(near)).max() <= FLOAT_PEAK_LIMIT
    assert detector.detect_file(near).score == pytest.approx(detector.detect_array(full, 16000).score, abs=1e-3)
    streamed = detector.process(full * np.float32(1.0005)) + detector.flush()  # chunks within the tolerance
    assert [w.verdict for w in streamed] == [w.verdict for w in detector.detect_array(full, 16000).windows]
    ogg = tmp_path / "clipped.ogg"
    sf.write(ogg, np.clip(full * 1.5, -1.0, 1.0), 16000, format="OGG", subtype="VORBIS")
    assert np.abs(read_audio(ogg)).max() > FLOAT_PEAK_LIMIT
    assert detector.detect_file(ogg).verdict == "spoof"


def test_resampled_full_scale_audio_overshoots_and_is_still_scored(tmp_path):
    """Clipped int16 speech at 8 kHz overshoots full scale once resampled to 16 kHz: a file and a stream
    through StreamingResampler (as `edge-cm listen` and the voice guard feed chunks) are both scored."""
    detector = edge_cm.load()
    x = flite_spoof()
    clipped = np.clip(resample(x / np.abs(x).max() * 1.5, 16000, 8000), -1.0, 1.0)
    p = tmp_path / "clipped_8k.wav"
    sf.write(p, clipped, 8000, subtype="PCM_16")
    heard = read_audio(p)
    assert np.abs(heard).max() > FLOAT_PEAK_LIMIT  # the resampler's overshoot, not a scale error
    clip = detector.detect_file(p)
    resampler = StreamingResampler(8000, 16000)
    pcm, _ = sf.read(p, dtype="float32")
    streamed = []
    for i in range(0, pcm.size, 800):
        streamed += detector.process(resampler.feed(pcm[i:i + 800]))
    streamed += detector.process(resampler.flush()) + detector.flush()
    assert [w.end for w in streamed] == [w.end for w in clip.windows] and clip.score is not None
    assert [w.score for w in streamed] == pytest.approx([w.score for w in clip.windows], abs=1e-4)


def test_channels_first_arrays_are_refused(tmp_path, real_speech):
    """(2, n) as torchaudio/librosa return it is not n-channel audio of 2 samples."""
    detector = edge_cm.load()
    stereo = np.stack([real_speech, 0.5 * real_speech], axis=1)
    with pytest.raises(InvalidSamplesError, match=r"shape \(2, \d+\) reads as 2 sample\(s\).*transpose.*x\.T"):
        detector.detect_array(stereo.T, 16000)
    assert detector.detect_array(stereo, 16000).score == pytest.approx(
        detector.detect_array(0.75 * real_speech, 16000).score, abs=1e-5)
    # a file's last block may hold fewer frames than channels: soundfile's layout is known, so it is read
    p = tmp_path / "stereo.wav"
    sf.write(p, stereo[:16001], 16000, subtype="FLOAT")
    blocks = list(iter_audio_blocks(p, block_seconds=1.0))
    assert [b.size for b in blocks] == [16000, 1]
    np.testing.assert_array_equal(np.concatenate(blocks), read_audio(p))


@pytest.mark.parametrize("rate", ["44.1k", float("nan"), float("inf"), 0, -16000, 44100.5, None])
def test_sample_rate_must_be_a_positive_whole_number_of_hz(detector, real_speech, rate):
    with pytest.raises(InvalidSamplesError, match=r"invalid sample rate .*positive whole number"):
        detector.detect_array(real_speech[:16000], rate)


def test_whole_number_sample_rates_of_any_type_are_taken(detector, real_speech):
    x = real_speech[:5 * 16000]
    scores = {detector.detect_array(x, rate).score for rate in (16000, 16000.0, np.int64(16000), "16000")}
    assert len(scores) == 1


@pytest.mark.parametrize("threshold", [0, -0.2, 1.5, float("nan"), "high", None])
def test_bundle_threshold_must_be_a_probability(tmp_path, float_bundle, threshold):
    """At 0 every window would be spoof, above 1 none could be: such a bundle is refused by name."""
    b = copy_bundle(float_bundle, tmp_path / "b")
    meta = json.loads((b / BUNDLE_FILE).read_text())
    meta["threshold"] = threshold
    (b / BUNDLE_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"b/bundle\.json: threshold .* not a spoof probability in \(0, 1\]"):
        edge_cm.load(b)
    meta["threshold"] = 1.0
    (b / BUNDLE_FILE).write_text(json.dumps(meta))
    assert edge_cm.load(b).threshold == 1.0
