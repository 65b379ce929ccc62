"""On-the-fly augmentation: realised SNR, RT60 of simulated rooms, codec round trips, speed, seeding."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, sosfilt, welch

from edge_cm.audio import read_audio
from edge_cm.errors import DataError, DependencyError, InvalidSamplesError
from training.augment import (
    BITRATES_KBPS, CODEC_LABELS, CODECS, SPEED_LABELS, AddNoise, CodecAugment, Compose, RandomAugment, RoomReverb,
    SpeedChange, Step,
    apply_rir, codec_label, codec_round_trip, colored_noise, pseudo_labels, schroeder_rt60, simulate_rir, speed_label,
)
from training.augment._common import power
from training.augment.codec import leftover_delay, parse_codec_label

from conftest import pick_clips

SR = 16000


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    return 10 * np.log10(power(clean) / power(noisy.astype(np.float64) - clean))


@pytest.fixture(scope="module")
def speech(real_speech: np.ndarray) -> np.ndarray:
    """Real speech scaled to a 0.25 peak, so no mix below needs rescaling."""
    return (real_speech * (0.25 / np.max(np.abs(real_speech)))).astype(np.float32)


@pytest.fixture(scope="module")
def other_speech(bonafide_dir, bonafide_rows) -> list[np.ndarray]:
    """Four real clips from other speakers (train split), for babble."""
    return [read_audio(bonafide_dir / r["path"]) for r in pick_clips(bonafide_rows, "train", 4, 2.0, 8.0)]


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble"])
@pytest.mark.parametrize("target", [0.0, 10.0, 25.0])
def test_noise_realised_snr_within_half_db(speech, other_speech, kind, target):
    aug = AddNoise(snr_db=target, kinds=(kind,), babble_speech=tuple(other_speech))
    noisy, label = aug(speech, 7)
    assert label == f"noise_{kind}"
    assert noisy.dtype == np.float32 and noisy.shape == speech.shape
    assert abs(snr_db(speech, noisy) - target) < 0.5


def test_noise_from_recorded_files_realises_snr(tmp_path, speech, other_speech):
    path = tmp_path / "noise.wav"
    sf.write(path, other_speech[0], SR)  # a real recording on disk, shorter than the speech: it is looped
    noisy, label = AddNoise.from_files([path], snr_db=6.0)(speech, 0)
    assert label == "noise_recorded"
    assert abs(snr_db(speech, noisy) - 6.0) < 0.5
    ranged = AddNoise.from_files([path], snr_db=(3.0, 12.0))
    realised = [snr_db(speech, ranged(speech, seed)[0]) for seed in range(4)]
    assert all(2.5 < r < 12.5 for r in realised) and max(realised) - min(realised) > 0.5
    assert snr_db(speech, ranged(speech, 1)[0]) == realised[1]  # same seed, same draw


def test_loud_mix_is_scaled_not_clipped_and_keeps_snr(real_speech):
    loud = (real_speech / np.max(np.abs(real_speech)) * 0.99).astype(np.float32)
    noisy, _ = AddNoise(snr_db=0.0, kinds=("white",))(loud, 3)
    assert np.max(np.abs(noisy)) <= 0.999 + 1e-6
    gain = float(np.dot(noisy, loud) / np.dot(loud, loud))  # the common down-scaling
    assert gain < 0.9
    assert abs(snr_db(loud * gain, noisy) - 0.0) < 0.5


@pytest.mark.parametrize("kind, slope_db_per_octave", [("white", 0.0), ("pink", -3.01), ("brown", -6.02)])
def test_noise_colours_have_their_spectral_slope(kind, slope_db_per_octave):
    noise = colored_noise(kind, 4 * SR, 0)
    assert np.sqrt(power(noise)) == pytest.approx(1.0, rel=1e-4)
    f, pxx = welch(noise, fs=SR, nperseg=4096)
    band = (f >= 100) & (f <= 6000)
    slope = np.polyfit(np.log2(f[band]), 10 * np.log10(pxx[band]), 1)[0]
    assert abs(slope - slope_db_per_octave) < 0.5


def test_babble_or_recorded_without_sources_is_a_typed_error():
    with pytest.raises(DataError, match="babble"):
        AddNoise(kinds=("babble",))
    with pytest.raises(DataError, match="recorded"):
        AddNoise(kinds=("recorded",))
    with pytest.raises(DataError, match="snr_db"):
        AddNoise(snr_db=(20.0, 5.0))


@pytest.mark.parametrize("rt60", [0.25, 0.6, 1.2])
@pytest.mark.parametrize("drr_db", [None, 5.0])
def test_simulated_rir_has_requested_rt60(rt60, drr_db):
    for seed in range(3):
        measured = schroeder_rt60(simulate_rir(rt60, seed, drr_db=drr_db))
        assert measured == pytest.approx(rt60, rel=0.08)


@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.3])
def test_high_frequencies_decay_at_their_own_rt60(ratio):
    low = butter(6, 600, "lowpass", fs=SR, output="sos")
    high = butter(6, 6000, "highpass", fs=SR, output="sos")
    for seed in range(2):
        rir = simulate_rir(0.5, seed, drr_db=None, hf_rt60_ratio=ratio)
        assert schroeder_rt60(sosfilt(low, rir)) == pytest.approx(0.5, rel=0.12)
        assert schroeder_rt60(sosfilt(high, rir)) == pytest.approx(0.5 * ratio, rel=0.12)


def test_reverb_keeps_length_level_and_alignment(speech):
    wet, label = RoomReverb(rt60_s=0.5, drr_db=6.0)(speech, 11)
    assert label == "reverb" and wet.shape == speech.shape
    assert np.sqrt(power(wet)) == pytest.approx(np.sqrt(power(speech)), rel=0.01)
    lags = np.arange(-400, 401)
    corr = [np.dot(np.roll(wet, -k), speech) for k in lags]
    assert lags[int(np.argmax(corr))] == 0
    # Reverberation fills the pauses: the longer the RT60, the fewer quiet 20 ms frames remain.
    def quiet_share(y: np.ndarray) -> float:
        frames = y[: y.size // 320 * 320].reshape(-1, 320).astype(np.float64)
        level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        return float(np.mean(level < level.max() - 30))

    shares = [quiet_share(speech)] + [quiet_share(apply_rir(speech, simulate_rir(rt, 0, drr_db=0.0)))
                                      for rt in (0.2, 1.5)]
    assert shares[0] > shares[1] > shares[2]


@pytest.mark.parametrize("label", ["mp3_16k", "aac_32k", "opus_16k", "opus_64k"])
def test_codec_round_trip_keeps_length_and_alignment(speech, label):
    clip = speech[: int(1.5 * SR)]
    out, got = CodecAugment(choices=(label,))(clip, 0)
    assert got == label
    assert out.dtype == np.float32 and out.shape == clip.shape
    assert np.max(np.abs(out - clip)) > 1e-3  # it really went through a lossy codec
    lags = np.arange(-300, 301)
    corr = np.array([np.dot(np.roll(out, -k), clip) for k in lags])
    assert lags[int(np.argmax(corr))] == 0  # encoder delay removed
    rel_err = np.sqrt(power(out - clip) / power(clip))
    assert rel_err < 0.9


def test_alignment_guard_finds_a_leftover_encoder_delay(speech):
    clip = speech[:SR]
    decoded = codec_round_trip(clip, "aac", 16)
    for delay in (0, 1024, 1105):
        late = np.concatenate([np.zeros(delay, np.float32), decoded, np.zeros(2200, np.float32)])
        assert leftover_delay(clip, late) == delay
    assert leftover_delay(np.zeros(SR, np.float32), np.zeros(SR + 3000, np.float32)) == 0


def test_lower_bitrate_loses_more(speech):
    clip = speech[: SR]
    err = {kbps: power(codec_round_trip(clip, "opus", kbps) - clip) for kbps in (16, 64)}
    assert err[16] > err[64]


def test_every_codec_setting_has_its_label():
    labels = [codec_label(c, b) for c in CODECS for b in BITRATES_KBPS]
    assert labels == list(CODEC_LABELS[1:])
    assert [parse_codec_label(lab) for lab in labels] == [(c, b) for c in CODECS for b in BITRATES_KBPS]


def test_codec_errors_are_typed(speech):
    with pytest.raises(DependencyError, match="apt-get install ffmpeg"):
        CodecAugment(choices=("mp3_32k",), ffmpeg="no-such-ffmpeg-binary")(speech[:SR], 0)
    with pytest.raises(DataError, match="mp3_48k"):
        CodecAugment(choices=("mp3_48k",))
    assert CODEC_LABELS[0] == "none" and len(CODEC_LABELS) == 10


@pytest.mark.parametrize("factor, label", [(2.0, "speed_2"), (0.5, "speed_0.5"), (1.25, "speed_1.25")])
def test_speed_change_scales_duration_and_label(speech, factor, label):
    out, got = SpeedChange(factor=factor)(speech, 0)
    assert got == label
    assert abs(out.size - speech.size / factor) <= 1


def test_speed_change_shifts_pitch():
    t = np.arange(SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    out, _ = SpeedChange(factor=1.25)(tone, 0)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    peak_hz = np.argmax(spectrum) * SR / out.size
    assert peak_hz == pytest.approx(550.0, abs=3.0)


def test_speed_labels_are_buckets():
    assert speed_label(1.0) == speed_label(1.04) == "speed_1"
    assert speed_label(1.3) == "speed_1.25" and speed_label(0.52) == "speed_0.5" and speed_label(1.9) == "speed_2"
    assert set(speed_label(f) for f in np.linspace(0.5, 2.0, 200)) == set(SPEED_LABELS)
    with pytest.raises(DataError):
        speed_label(2.5)
    with pytest.raises(DataError):
        SpeedChange(factor=(0.3, 1.0))
    with pytest.raises(DataError, match="nan"):  # NaN compares False with both ends, so it is checked apart
        SpeedChange(factor=(float("nan"), 1.1))


def test_a_config_changes_speed_first_and_refuses_a_bad_range(speech, tmp_path):
    from training.augment import change_speed, low_pass
    from training.config import AugmentConfig, load_config

    x = speech[: 2 * SR]
    chain = AugmentConfig(speed_prob=1.0, speed_factor=(1.1, 1.1),
                          lowpass_prob=1.0, lowpass_hz=(3400.0, 3400.0)).build()
    out, labels = chain(x, 0)
    assert labels == ["speed_1.1", "lowpass"]  # the talker's speed, then the channel
    assert abs(out.size - x.size / 1.1) <= 1
    np.testing.assert_allclose(out, low_pass(change_speed(x, 1.1)[0], 3400.0), atol=1e-6)
    drawn = AugmentConfig(speed_prob=1.0, speed_factor=(0.9, 1.1)).build()
    factors = {label for seed in range(20) for label in drawn(x, seed)[1]}
    assert factors <= {"speed_0.9", "speed_1", "speed_1.1"} and len(factors) >= 2
    assert AugmentConfig(speed_prob=0.0).build() is None  # off by default: older configs draw as before
    for bad in [(0.3, 1.0), (1.1, 0.9), (0.9, 2.5), 1.1, (0.9, 1.0, 1.1), ("fast", 1.1), (float("nan"), 1.1)]:
        with pytest.raises(DataError, match="speed_factor"):
            AugmentConfig(speed_prob=0.3, speed_factor=bad)
    cfg = tmp_path / "bad_speed.yaml"
    cfg.write_text("architecture: spec_mel_cnn_mt\nmanifest: m.csv\naugment:\n  speed_prob: 0.3\n  speed_factor: 1.1\n")
    with pytest.raises(DataError, match="bad_speed.yaml: augment: speed_factor 1.1 is not a range"):
        load_config(cfg)


def test_random_augment_is_deterministic_per_seed(speech, other_speech):
    clip = speech[:SR]
    chain = RandomAugment([
        Step(SpeedChange(factor=(0.7, 1.4)), 0.7),
        Step(RoomReverb(), 0.7),
        Step(AddNoise(kinds=("pink", "babble"), babble_speech=tuple(other_speech)), 0.7),
        Step(CodecAugment(choices=("mp3_32k", "opus_16k")), 0.7),
    ])
    runs = {seed: [chain(clip, seed) for _ in range(2)] for seed in (1, 2)}
    for (a, la), (b, lb) in runs.values():
        assert la == lb and np.array_equal(a, b)
    outputs = [runs[s][0] for s in runs]
    assert len({tuple(lab) for _, lab in outputs}) > 1 or not np.array_equal(outputs[0][0], outputs[1][0])
    # A Generator passed in is used as is: the same seed gives the same stream.
    a, la = chain(clip, np.random.default_rng(5))
    b, lb = chain(clip, np.random.default_rng(5))
    assert la == lb and np.array_equal(a, b)
    applied = [lab for _, labs in outputs + [(a, la)] for lab in labs]
    assert any(lab in CODEC_LABELS for lab in applied) and any(lab in SPEED_LABELS for lab in applied)


def test_random_augment_applies_steps_with_their_probability(speech):
    clip = speech[:4000]
    chain = RandomAugment([Step(AddNoise(snr_db=30.0, kinds=("white",)), 0.3), Step(SpeedChange(1.1), 0.8)])
    rng = np.random.default_rng(0)
    counts = {"noise_white": 0, "speed_1.1": 0}
    for _ in range(300):
        _, labels = chain(clip, rng)
        for lab in labels:
            counts[lab] += 1
    assert counts["noise_white"] / 300 == pytest.approx(0.3, abs=0.08)
    assert counts["speed_1.1"] / 300 == pytest.approx(0.8, abs=0.08)
    _, none = RandomAugment([Step(SpeedChange(1.1), 0.0)])(clip, 0)
    _, capped = RandomAugment([Step(SpeedChange(1.1), 1.0), Step(SpeedChange(0.9), 1.0)], max_steps=1)(clip, 0)
    assert none == [] and len(capped) == 1


def test_compose_applies_all_in_order_and_pseudo_labels(speech):
    out, labels = Compose([SpeedChange(2.0), CodecAugment(choices=("aac_16k",))])(speech[: 2 * SR], 4)
    assert labels == ["speed_2", "aac_16k"] and out.size == SR
    assert pseudo_labels(labels) == {"codec": "aac_16k", "speed": "speed_2"}
    assert pseudo_labels(["noise_pink", "reverb"]) == {"codec": "none", "speed": "speed_1"}


# -- RawBoost -------------------------------------------------------------------------------

def _tone(freq_hz: float, seconds: float = 1.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq_hz * np.arange(int(SR * seconds)) / SR)).astype(np.float32)


def test_band_stop_filter_removes_its_band_and_passes_the_rest():
    from scipy.signal import fftconvolve

    from training.augment import band_stop_filter

    kernel = band_stop_filter([(800.0, 1200.0), (3800.0, 4200.0)], [101, 151])
    for freq, low_db, high_db in ((1000.0, -80.0, -20.0), (4000.0, -80.0, -20.0), (2500.0, -1.0, 0.5),
                                  (6000.0, -1.0, 0.5)):
        tone = _tone(freq)
        out = fftconvolve(tone, kernel, mode="same")[2000:-2000]
        gain = 10 * np.log10(power(out) / power(tone[2000:-2000]))
        assert low_db < gain < high_db, (freq, gain)
    with pytest.raises(DataError, match="band-stop"):
        band_stop_filter([(0.0, 500.0)], [101])
    with pytest.raises(DataError, match="odd tap count"):
        band_stop_filter([(100.0, 500.0)], [100])


def test_rawboost_lnl_keeps_length_and_level_and_reshapes_the_spectrum(speech):
    from training.augment import RawBoost

    out, label = RawBoost(mode="lnl")(speech, 3)
    assert label == "rawboost_lnl" and out.dtype == np.float32 and out.shape == speech.shape
    assert 10 * np.log10(power(out) / power(speech)) == pytest.approx(0.0, abs=0.05)
    # a convolutive channel, not a gain: the long-term spectrum is reshaped (by how much depends on
    # the drawn filters: a short FIR notch is shallow, so only most seeds give a deep one)
    _, p_in = welch(speech, SR, nperseg=512)
    band = slice(4, 240)  # 125 Hz - 7.5 kHz, where real speech has energy
    spreads = []
    for seed in range(8):
        _, p_out = welch(RawBoost(mode="lnl")(speech, seed)[0], SR, nperseg=512)
        ratio_db = 10 * np.log10(p_out[band] / p_in[band])
        spreads.append(ratio_db.max() - ratio_db.min())
    assert min(spreads) > 1.0 and sorted(spreads)[4] > 10.0, spreads
    np.testing.assert_array_equal(out, RawBoost(mode="lnl")(speech, 3)[0])
    assert not np.array_equal(out, RawBoost(mode="lnl")(speech, 4)[0])


def test_rawboost_isd_touches_at_most_its_share_of_samples(speech):
    from training.augment import RawBoost

    for seed in range(5):
        out, label = RawBoost(mode="isd", max_share=0.05)(speech, seed)
        changed = np.count_nonzero(out != speech)
        assert label == "rawboost_isd" and changed <= 0.05 * speech.size + 1
    assert changed > 0


def test_rawboost_ssi_adds_noise_at_the_requested_snr(speech):
    from training.augment import RawBoost

    out, label = RawBoost(mode="ssi", snr_db=(15.0, 15.0))(speech, 0)
    assert label == "rawboost_ssi" and snr_db(speech, out) == pytest.approx(15.0, abs=0.1)


def test_rawboost_in_the_training_config_and_bad_settings():
    from training.augment import RawBoost
    from training.config import AugmentConfig

    chain = AugmentConfig(rawboost_prob=1.0, rawboost_mode="lnl+isd").build()
    clip = _tone(440.0)
    out, labels = chain(clip, 0)
    assert labels == ["rawboost_lnl+isd"] and np.all(np.isfinite(out)) and not np.array_equal(out, clip)
    assert AugmentConfig(rawboost_prob=0.0).build() is None
    silent = np.zeros(SR, dtype=np.float32)
    for mode in ("lnl", "isd", "lnl+isd"):
        np.testing.assert_array_equal(RawBoost(mode=mode)(silent, 0)[0], silent)
    with pytest.raises(DataError, match="unknown RawBoost mode"):
        RawBoost(mode="lnl+ssi")
    with pytest.raises(DataError, match="max_share"):
        RawBoost(max_share=1.5)
    with pytest.raises(InvalidSamplesError, match="NaN"):
        RawBoost()(np.full(100, np.nan, dtype=np.float32), 0)


def test_low_pass_cuts_its_band_from_real_speech_and_keeps_the_rest(real_speech):
    from training.augment import LowPass, low_pass
    from training.config import AugmentConfig

    x = real_speech[:48000]
    y = low_pass(x, 4000.0)
    spec_x, spec_y = np.abs(np.fft.rfft(x)), np.abs(np.fft.rfft(y))
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    assert y.dtype == np.float32 and y.size == x.size
    assert spec_y[freqs > 4010].max() < 1e-3 * spec_x.max()  # float32 rounding only
    np.testing.assert_allclose(spec_y[freqs < 3990], spec_x[freqs < 3990], rtol=1e-3, atol=1e-3)

    step = LowPass(cutoff_hz=(3400.0, 7000.0))
    a, label = step(x, 5)
    assert label == "lowpass" and np.array_equal(a, step(x, 5)[0]) and not np.array_equal(a, step(x, 6)[0])
    _, psd_x = welch(x, fs=SR, nperseg=512)
    freqs_w, psd_a = welch(a, fs=SR, nperseg=512)
    assert psd_a[freqs_w > 7100].max() < 1e-6 * psd_x.max()  # never above the range's top
    chain = AugmentConfig(lowpass_prob=1.0, lowpass_hz=(3400.0, 3400.0)).build()
    out, labels = chain(x, 0)
    assert labels == ["lowpass"] and np.allclose(out, low_pass(x, 3400.0))
    with pytest.raises(DataError, match="cutoff_hz"):
        LowPass(cutoff_hz=(3400.0, 9000.0))
    with pytest.raises(InvalidSamplesError, match="NaN"):
        step(np.full(100, np.nan, dtype=np.float32), 0)
