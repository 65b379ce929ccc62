"""The edge-cm command line, run as a user would (a subprocess of the installed console script)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge_cm.cli import EXIT_ERROR, EXIT_OK, EXIT_SPOOF, main
from edge_cm.demo import demo_clips

EDGE_CM = [sys.executable, "-m", "edge_cm.cli"]


def run(*args, **kw):
    return subprocess.run([*EDGE_CM, *map(str, args)], capture_output=True, text=True, timeout=300, **kw)


def test_console_script_is_installed():
    assert shutil.which("edge-cm", path=str(Path(sys.executable).parent)) is not None


def test_detect_json(float_bundle, tmp_path, real_speech):
    wav = tmp_path / "speech.wav"
    sf.write(wav, real_speech[:7 * 16000], 16000)
    res = run("detect", wav, "--bundle", float_bundle, "--json")
    assert res.returncode == EXIT_OK, res.stderr
    out = json.loads(res.stdout)
    assert out["backend"] == "onnx" and out["untrained"] is True
    clip = out["clips"][0]
    assert clip["duration"] == pytest.approx(7.0)
    assert [(w["start"], w["end"]) for w in clip["windows"]] == [(0.0, 4.0), (2.0, 6.0), (3.0, 7.0)]
    assert clip["verdict"] in ("spoof", "bonafide")
    assert clip["score"] == pytest.approx(np.mean([w["score"] for w in clip["windows"]]))


def test_detect_tflite_backend_and_hop(float_bundle, tmp_path, real_speech):
    wav = tmp_path / "speech.wav"
    sf.write(wav, real_speech[:6 * 16000], 16000)
    res = run("detect", wav, "--bundle", float_bundle, "--json", "--backend", "tflite", "--hop", "1")
    assert res.returncode == EXIT_OK, res.stderr
    out = json.loads(res.stdout)
    assert out["backend"] == "tflite"
    assert [w["start"] for w in out["clips"][0]["windows"]] == [0.0, 1.0, 2.0]


def test_untrained_bundle_is_marked_in_text_output(float_bundle, tmp_path, real_speech):
    wav = tmp_path / "speech.wav"
    sf.write(wav, real_speech[:5 * 16000], 16000)
    res = run("detect", wav, "--bundle", float_bundle, "--windows")
    assert res.returncode == EXIT_OK
    assert res.stdout.startswith("UNTRAINED MODEL")
    assert "0.00-   4.00 s" in res.stdout


def test_bad_input_exits_2_and_names_the_file(float_bundle, tmp_path, real_speech):
    good = tmp_path / "good.wav"
    sf.write(good, real_speech[:5 * 16000], 16000)
    bad = tmp_path / "broken.wav"
    bad.write_text("not audio")
    res = run("detect", good, bad, "--bundle", float_bundle)
    assert res.returncode == EXIT_ERROR
    assert "broken.wav" in res.stderr and "Traceback" not in res.stderr
    assert "good.wav" in res.stdout  # the good file is still scored and reported


def test_fail_on_spoof_exit_code(float_bundle, tmp_path, real_speech):
    wav = tmp_path / "speech.wav"
    sf.write(wav, real_speech[:5 * 16000], 16000)
    verdict = json.loads(run("detect", wav, "--bundle", float_bundle, "--json").stdout)["clips"][0]["verdict"]
    res = run("detect", wav, "--bundle", float_bundle, "--fail-on-spoof")
    assert res.returncode == (EXIT_SPOOF if verdict == "spoof" else EXIT_OK)


def test_usage_errors_exit_2(capsys):
    assert main(["detect"]) == EXIT_ERROR
    assert main(["frobnicate"]) == EXIT_ERROR
    assert main(["detect", "x.wav", "--backend", "coreml"]) == EXIT_ERROR


def test_missing_bundle_exits_2(tmp_path, capsys):
    assert main(["detect", str(tmp_path / "a.wav"), "--bundle", str(tmp_path / "nope")]) == EXIT_ERROR
    assert "bundle not found" in capsys.readouterr().err


def test_info(float_bundle):
    res = run("info", float_bundle)
    assert res.returncode == EXIT_OK, res.stderr
    assert "UNTRAINED" in res.stdout and "model.onnx" in res.stdout and "model.tflite" in res.stdout
    assert "dBFS" not in res.stdout  # a bundle without a level says nothing of one
    meta = json.loads(run("info", float_bundle, "--json").stdout)
    assert meta["feature_spec"]["kind"] == "log_spectrogram" and meta["window_samples"] == 64000


def test_info_of_the_default_bundle_separates_fixed_weights():
    """SpecMelCNN's mel projection is stored but not trained: info shows it apart from the parameters."""
    from edge_cm.bundle import default_bundle_path, load_bundle

    prof = load_bundle(default_bundle_path()).meta.profile
    res = run("info")
    assert res.returncode == EXIT_OK, res.stderr
    assert prof["fixed_parameters"] > 0
    assert f"{prof['parameters']:,} (+ {prof['fixed_parameters']:,} fixed, not trained)" in res.stdout
    assert "training_weights.npz" in res.stdout and "not used at run time" in res.stdout
    level = load_bundle(default_bundle_path()).meta.feature_spec.level_dbfs
    assert f"level {level:g} dBFS" in res.stdout


def test_demo_runs_the_default_bundle_over_every_clip():
    res = run("demo")
    assert res.returncode == EXIT_OK, res.stderr
    for clip in demo_clips():
        line = next(ln for ln in res.stdout.splitlines() if ln.startswith(clip["file"]))
        assert clip["label"] in line and ("spoof" in line.split()[-2:] or "bonafide" in line.split()[-2:])


def test_demo_clips_carry_attribution():
    clips = demo_clips()
    attribution = (Path(clips[0]["path"]).parent / "ATTRIBUTION.md").read_text()
    assert {c["label"] for c in clips} == {"bonafide", "spoof"}
    for clip in clips:
        assert clip["file"] in attribution and clip["license"]
        info = sf.info(clip["path"])
        assert info.samplerate == 16000 and info.channels == 1 and info.duration < 10


@pytest.mark.parametrize("script,args", [
    ("score_fusion.py", ["--bundle", "{tmp}/a", "--bundle", "{tmp}/b", "--manifest", "{tmp}/m.csv",
                         "--out", "{tmp}/out.md"]),
    ("int8_mixed_precision.py", ["--checkpoint", "{tmp}/best.pt", "--manifest", "{tmp}/m.csv",
                                 "--keep-float", "features.0", "--out", "{tmp}/out.md"]),
    ("compare_releases.py", ["--bundle", "a={tmp}", "--out", "{tmp}/out.md"]),
    ("error_sources.py", ["--bundle", "{tmp}/a", "--manifest", "{tmp}/m.csv", "--out", "{tmp}/out.md"]),
    ("efficientcnn_table.py", ["--manifest", "{tmp}/m.csv", "--runs", "{tmp}/runs", "--out", "{tmp}/out.md"]),
    ("hifigan_cpu_isa.py", ["--clip", "{tmp}/clip.flac", "--out", "{tmp}/out.md"]),
    ("bandwidth_sensitivity.py", ["--bundle", "{tmp}/a", "--manifest", "{tmp}/m.csv", "--out", "{tmp}/out.md"]),
    ("eer_uncertainty.py", ["--bundle", "a={tmp}/a", "--manifest", "{tmp}/m.csv", "--out", "{tmp}/out.md"]),
    ("channel_robustness.py", ["--bundle", "a={tmp}/a", "--manifest", "{tmp}/m.csv", "--out", "{tmp}/out.md"]),
    ("calibration_size.py", ["--bundle", "{tmp}/a", "--manifest", "{tmp}/m.csv", "--out", "{tmp}/out.md"]),
    ("source_head_scoring.py", ["--checkpoint", "a={tmp}/best.pt", "--manifest", "{tmp}/m.csv",
                                "--out", "{tmp}/out.md"]),
])
def test_benchmark_scripts_report_typed_errors_in_one_line(script, args, tmp_path):
    pytest.importorskip("torch", reason="these benchmarks need the training extra")
    repo = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, str(repo / "benchmarks" / script), *(a.format(tmp=tmp_path) for a in args)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    line, = res.stderr.strip().splitlines()
    assert line.startswith(f"{script}: error: {tmp_path}") and ("not found" in line or "No such file" in line)
    assert not (tmp_path / "out.md").exists()


@pytest.mark.parametrize("content, message", [
    (b"not audio" * 20, "cannot decode audio"),
    (np.zeros(0, np.float32), "no samples"),
    (np.full(800, np.nan, np.float32), "NaN or Inf"),
], ids=["corrupt", "empty", "nan"])
def test_hifigan_isa_check_refuses_a_bad_clip_before_starting_the_vocoder(tmp_path, content, message):
    """Read as the runtime reads audio: a typed one-line error naming the clip, no table written."""
    clip = tmp_path / "clip.wav"
    if isinstance(content, bytes):
        clip.write_bytes(content)
    else:
        sf.write(clip, content, 16000, subtype="FLOAT")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "hifigan_cpu_isa.py"
    res = subprocess.run([sys.executable, str(script), "--clip", str(clip), "--out", str(tmp_path / "out.md")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    line, = res.stderr.strip().splitlines()
    assert line.startswith(f"hifigan_cpu_isa.py: error: {clip}: ") and message in line
    assert not (tmp_path / "out.md").exists()


def test_compare_releases_puts_each_bundles_own_figures_side_by_side(tmp_path):
    """Two bundles: the shipped default's evaluation and a copy with one test system's EER changed."""
    repo = Path(__file__).resolve().parents[1]
    shipped = repo / "edge_cm" / "assets" / "models" / "default"
    evaluation = json.loads((shipped / "evaluation.json").read_text())
    system = sorted(evaluation["test"]["systems"])[0]
    evaluation["test"]["systems"][system]["eer"] = 0.5
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "evaluation.json").write_text(json.dumps(evaluation))
    res = subprocess.run([sys.executable, str(repo / "benchmarks" / "compare_releases.py"), "--bundle", f"a={shipped}",
                          "--bundle", f"b={tmp_path / 'other'}", "--group", "ab=a,b", "--out", str(tmp_path / "t.md")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    original = json.loads((shipped / "evaluation.json").read_text())
    row = next(r for r in rows if r["split"] == "test" and r["row"] == system)
    assert row["eer"] == {"a": pytest.approx(100 * original["test"]["systems"][system]["eer"]), "b": 50.0}
    pooled = next(r for r in rows if r["split"] == "dev" and r["row"] == "pooled")
    assert pooled["eer"]["a"] == pooled["eer"]["b"] == pytest.approx(100 * original["dev"]["pooled"]["eer"])
    line = next(ln for ln in (tmp_path / "t.md").read_text().splitlines() if f"`{system}`" in ln)
    a = 100 * original["test"]["systems"][system]["eer"]
    assert line.split("|")[-3].strip() == f"{(a + 50) / 2:.2f}" and line.split("|")[-2].strip() == f"{abs(50 - a):.2f}"


def test_compare_releases_takes_a_gone_bundles_figures_from_an_earlier_comparison(tmp_path):
    """A column of an earlier comparison's JSON stands in for its bundle, figure for figure."""
    repo = Path(__file__).resolve().parents[1]
    script = str(repo / "benchmarks" / "compare_releases.py")
    shipped = repo / "edge_cm" / "assets" / "models" / "default"
    first = subprocess.run([sys.executable, script, "--bundle", f"a={shipped}", "--out", str(tmp_path / "first.md")],
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    res = subprocess.run([sys.executable, script, "--bundle", f"a={shipped}",
                          "--from-comparison", f"old={tmp_path / 'first.json'}:a", "--out", str(tmp_path / "t.md")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert len(rows) > 10 and all(r["eer"]["old"] == pytest.approx(r["eer"]["a"]) for r in rows)
    assert "(column a)" in (tmp_path / "t.md").read_text()
    bad = subprocess.run([sys.executable, script, "--from-comparison", f"old={tmp_path / 'first.json'}:nope",
                          "--out", str(tmp_path / "u.md")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "no column 'nope'" in bad.stderr
    assert "columns: a" in bad.stderr and not (tmp_path / "u.md").exists()


@pytest.mark.parametrize("content", [None, "", "{not json", '{"rows": [{"split": "dev"}]}', '[1, 2]'],
                         ids=["missing", "empty", "corrupt", "row-without-eer", "not-a-table"])
def test_compare_releases_refuses_a_bad_earlier_comparison_by_name(tmp_path, content):
    source = tmp_path / "earlier.json"
    if content is not None:
        source.write_text(content)
    res = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "benchmarks" / "compare_releases.py"),
                          "--from-comparison", f"old={source}:a", "--out", str(tmp_path / "t.md")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    line, = res.stderr.strip().splitlines()
    assert str(source) in line and not (tmp_path / "t.md").exists()


def test_bandwidth_check_refuses_a_corrupt_clip_before_scoring(tmp_path, float_bundle):
    """A corrupt file in the manifest: one typed line naming it, no table written."""
    from training.data.manifest import ManifestRow, write_manifest_csv

    clip = tmp_path / "bad.wav"
    clip.write_bytes(b"not audio" * 20)
    manifest = write_manifest_csv([ManifestRow(path=str(clip), label="bonafide", family="bonafide", split="dev")],
                                  tmp_path / "m.csv")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bandwidth_sensitivity.py"
    res = subprocess.run([sys.executable, str(script), "--bundle", str(float_bundle), "--manifest", str(manifest),
                          "--out", str(tmp_path / "out.md")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    line, = res.stderr.strip().splitlines()
    assert line.startswith(f"bandwidth_sensitivity.py: error: {clip}: ") and "cannot decode audio" in line
    assert not (tmp_path / "out.md").exists()


def test_hop_and_listen_seconds_out_of_range_exit_2_in_one_line(tmp_path, real_speech, capsys):
    """--hop inf crashed with OverflowError, --hop 10 skipped audio; --seconds inf crashed in listen."""
    wav = tmp_path / "speech.wav"
    sf.write(wav, real_speech[:5 * 16000], 16000)
    res = run("detect", wav, "--hop", "inf")
    assert res.returncode == EXIT_ERROR and "Traceback" not in res.stderr
    assert res.stderr.strip() == ("edge-cm detect: error: hop must be seconds in (0, 4] (the window length), got inf "
                                  "(a longer hop would skip audio between windows; e.g. --hop 2.0)")
    for hop in ("nan", "10", "0"):
        assert main(["detect", str(wav), "--hop", hop]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert err.startswith("edge-cm detect: error: hop must be seconds in (0, 4]") and err.count("\n") == 1
    for seconds in ("inf", "nan", "0", "-3"):  # refused before any device is opened
        assert main(["listen", "--seconds", seconds]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert err.startswith("edge-cm listen: error: seconds to listen must be a finite number above 0, "
                              f"got {seconds}")
