"""Shortcut check: cue measurements on known signals, and flagging on tiny manifests of real clips."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge_cm.audio import read_audio
from training.augment import AddNoise
from training.data.manifest import ManifestRow, write_manifest_csv
from training.shortcuts import CUES, ShortcutConfig, analyse, check_main, effective_bandwidth, measure_cues

SR = 16000


def test_measure_cues_on_a_known_signal():
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 500 * t) * (1 + 0.01 * rng.standard_normal(SR))
    audio = np.concatenate([np.zeros(SR // 2), tone, np.zeros(int(0.3 * SR))]).astype(np.float32)
    cues = measure_cues(audio)
    assert cues["duration_s"] == pytest.approx(1.8)
    assert cues["leading_silence_s"] == pytest.approx(0.5, abs=0.02)
    assert cues["trailing_silence_s"] == pytest.approx(0.3, abs=0.02)
    assert cues["active_rms_dbfs"] == pytest.approx(-3.01, abs=0.1)  # a full-scale sine
    assert cues["rms_dbfs"] == pytest.approx(-3.01 + 10 * np.log10(1 / 1.8), abs=0.15)
    assert cues["noise_floor_dbfs"] == ShortcutConfig().floor_dbfs  # digital-zero pauses
    # Stationary background noise 40 dB under the tone is not speech: the silences stay.
    noisy = audio + (0.01 * rng.standard_normal(audio.size)).astype(np.float32)
    cues = measure_cues(noisy)
    assert cues["leading_silence_s"] == pytest.approx(0.5, abs=0.02)
    assert cues["trailing_silence_s"] == pytest.approx(0.3, abs=0.02)
    assert cues["noise_floor_dbfs"] == pytest.approx(-40.0, abs=1.0)
    silent = measure_cues(np.zeros(SR, dtype=np.float32))
    assert silent["leading_silence_s"] == silent["duration_s"] == 1.0
    assert silent["rms_dbfs"] == silent["active_rms_dbfs"] == ShortcutConfig().floor_dbfs


@pytest.mark.parametrize("cutoff_hz", [3000.0, 4000.0, 5500.0, 7000.0])
def test_bandwidth_follows_a_brick_wall_low_pass(cutoff_hz):
    noise = np.random.default_rng(1).standard_normal(2 * SR)
    spectrum = np.fft.rfft(noise)
    spectrum[np.fft.rfftfreq(noise.size, 1 / SR) > cutoff_hz] = 0.0
    measured = effective_bandwidth(np.fft.irfft(spectrum, n=noise.size) * 0.1)
    assert abs(measured - cutoff_hz) <= 250.0  # within the 250 Hz smoothing
    assert effective_bandwidth(noise * 0.1) > 7800.0  # white noise fills the band


def test_bandwidth_of_real_narrowband_and_wideband_clips(bonafide_dir, bonafide_rows):
    # FSDD was recorded at 8 kHz (nothing above 4 kHz); LibriSpeech at 16 kHz.
    narrow = next(r for r in bonafide_rows if r["source"] == "fsdd" and r["orig_sample_rate"] == "8000")
    wide = next(r for r in bonafide_rows if r["source"] == "resemblyzer_librispeech" and float(r["seconds"]) > 3)
    assert effective_bandwidth(read_audio(bonafide_dir / narrow["path"])) < 4100.0
    assert effective_bandwidth(read_audio(bonafide_dir / wide["path"])) > 5000.0


@pytest.fixture(scope="module")
def clips(bonafide_dir, bonafide_rows) -> list[tuple[Path, np.ndarray]]:
    """Twelve real bona fide clips (1-5 s, several sources) with their paths."""
    rows = []
    for source in ("resemblyzer_librispeech", "picovoice_speech_to_intent", "mycroft_precise",
                   "deb_asterisk_core_sounds_g722_16k"):
        rows += [r for r in bonafide_rows if r["source"] == source and 1.0 <= float(r["seconds"]) <= 5.0][:3]
    return [(bonafide_dir / r["path"], read_audio(bonafide_dir / r["path"])) for r in rows]


def write_manifest(tmp_path: Path, clips, make_spoof, system: str) -> Path:
    """Manifest of the real clips (bona fide) and ``make_spoof(audio, i)`` of each (spoof)."""
    rows = [ManifestRow(path=str(p), label="bonafide", family="bonafide", split="train") for p, _ in clips]
    for i, (_, audio) in enumerate(clips):
        out = tmp_path / system / f"spoof_{i}.wav"
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, make_spoof(audio, i), SR, subtype="FLOAT")
        rows.append(ManifestRow(path=str(out), label="spoof", system=system, family="tts", split="train"))
    return write_manifest_csv(rows, tmp_path / f"{system}.csv", relative_to=tmp_path)


def test_added_leading_silence_is_flagged(tmp_path, clips):
    manifest = write_manifest(tmp_path, clips, lambda a, i: np.concatenate([np.zeros(SR, np.float32), a]),
                              "lead_silence")
    out = tmp_path / "report.md"
    per_file = tmp_path / "cues.csv"
    assert check_main(["--manifest", str(manifest), "--out", str(out), "--cues-csv", str(per_file)]) == 1
    report = json.loads(out.with_suffix(".json").read_text())
    with open(per_file, newline="") as f:
        files = list(csv.DictReader(f))
    assert len(files) == 2 * len(clips)
    by_path = {r["path"]: float(r["leading_silence_s"]) for r in files}
    for i, (path, _) in enumerate(clips):  # each spoof starts 1 s later than its bona fide clip
        spoof = str(tmp_path / "lead_silence" / f"spoof_{i}.wav")
        assert by_path[spoof] - by_path[str(path)] == pytest.approx(1.0, abs=0.02)
    flagged = {(f["comparison"], f["cue"]): f for f in report["flagged"]}
    lead = flagged[("all spoof", "leading_silence_s")]
    assert lead["auc"] > 0.95 and lead["higher_in"] == "spoof"
    assert ("all spoof", "trailing_silence_s") not in flagged
    stats = report["stats"]
    gap = stats["all spoof"]["leading_silence_s"]["median"] - stats["bonafide"]["leading_silence_s"]["median"]
    assert gap == pytest.approx(1.0, abs=0.05)
    text = out.read_text()
    assert "leading_silence_s" in text and "flagged" in text and "| bonafide | 12 |" in text


def test_light_noise_is_not_flagged_on_silence(tmp_path, clips):
    noise = AddNoise(snr_db=25.0, kinds=("white",))
    manifest = write_manifest(tmp_path, clips, lambda a, i: noise(a, i)[0], "noised")
    out = tmp_path / "report.md"
    code = check_main(["--manifest", str(manifest), "--out", str(out)])
    report = json.loads(out.with_suffix(".json").read_text())
    aucs = {a["cue"]: a["auc"] for a in report["aucs"] if a["comparison"] == "all spoof"}
    assert set(aucs) == set(CUES)
    assert aucs["leading_silence_s"] <= 0.75 and aucs["trailing_silence_s"] <= 0.75
    assert aucs["duration_s"] == 0.5  # same lengths: ties everywhere
    # The noise itself is a shortcut, and the noise-floor cue catches it.
    assert aucs["noise_floor_dbfs"] > 0.75 and code == 1
    assert {f["cue"] for f in report["flagged"]} <= {"noise_floor_dbfs", "bandwidth_hz"}


def test_identical_classes_pass_with_exit_0(tmp_path, clips, capsys):
    manifest = write_manifest(tmp_path, clips, lambda a, i: -a, "inverted")  # same cues, opposite polarity
    assert check_main(["--manifest", str(manifest)]) == 0
    printed = capsys.readouterr().out
    assert "No cue flagged" in printed and "| all spoof | 12 | 12 |" in printed


def test_input_errors_exit_2(tmp_path, clips, capsys):
    assert check_main(["--manifest", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    only_bona = write_manifest_csv([ManifestRow(path=str(p), label="bonafide", family="bonafide") for p, _ in clips],
                                   tmp_path / "bona.csv")
    assert check_main(["--manifest", str(only_bona)]) == 2
    assert "bonafide and spoof" in capsys.readouterr().err
    broken = tmp_path / "broken.csv"
    broken.write_text(f"path,label,system\n{clips[0][0]},bonafide,-\nnot_there.wav,spoof,A01\n")
    assert check_main(["--manifest", str(broken)]) == 2
    assert "not_there.wav" in capsys.readouterr().err
    assert check_main([]) == 2  # --manifest is required


def test_small_systems_are_reported_not_scored():
    rng = np.random.default_rng(0)
    cues = [dict.fromkeys(CUES, float(v)) for v in rng.normal(size=30)]
    labels = ["bonafide"] * 20 + ["spoof"] * 10
    systems = ["-"] * 20 + ["A"] * 7 + ["B"] * 3
    report = analyse(cues, labels, systems, config=ShortcutConfig(min_files=5))
    assert report.skipped == ["B"]
    assert {a.comparison for a in report.aucs} == {"all spoof", "A"}
    assert set(report.stats) == {"bonafide", "all spoof", "spoof:A", "spoof:B"}
    assert report.stats["spoof:B"]["duration_s"].n == 3
