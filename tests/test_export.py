"""Export stage: a small CNN trained here on real speech vs real TTS, exported to all four formats
through the CLI, gated, run in each real runtime, profiled, and checked for microcontrollers."""
from __future__ import annotations

import copy
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

from edge_cm.audio import read_audio  # noqa: E402
from edge_cm.bundle import load_bundle  # noqa: E402
from edge_cm.features import FrameAnalyzer, compute_features, resnetse_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LEGACY_PY = REPO / ".venv-tflite-legacy" / "bin" / "python"
WINDOW = 64000
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.", "Please call Stella and ask her to bring these things.",
    "My voice is my password, verify me.", "Transfer five hundred dollars to my savings account.",
    "The weather today is cloudy with a chance of rain.", "Open the front door and turn on the lights.",
    "She sells sea shells by the sea shore.", "We will meet at the station at seven thirty.",
    "Numbers like forty two and nineteen are easy to say.", "Remember to water the plants every morning.",
    "A journey of a thousand miles begins with one step.", "The museum opens at nine on weekdays.",
]
VOICES = ["en", "en-us", "en-gb-scotland", "en+f3", "en+m3", "en-us+f2"]


class TinyCNN(nn.Module):
    """A small spectrogram CNN: input (1, 1, 40, 398) log-mel, output logits (1, 2)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


def _espeak(text: str, voice: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text], check=True,
                   capture_output=True, timeout=60)
    return path


def _window(audio: np.ndarray) -> np.ndarray:
    if audio.size < WINDOW:
        audio = np.tile(audio, -(-WINDOW // audio.size))
        return audio[:WINDOW].astype(np.float32)
    off = (audio.size - WINDOW) // 2
    return audio[off:off + WINDOW].astype(np.float32)


def _write_manifest(path: Path, rows: list[tuple[Path, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for p, label in rows:
            w.writerow([str(p), label])
    return path


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, more threads only contend (6x slower measured)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bonafide_dir, bonafide_rows, one_torch_thread):
    """Train TinyCNN on real speech (train split) vs espeak-ng; write calibration/eval manifests of other files."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng)")
    tmp = tmp_path_factory.mktemp("export")
    spec = resnetse_spec()
    speech = [r for r in bonafide_rows if r["source"] == "resemblyzer_librispeech"]
    by_split = {s: [bonafide_dir / r["path"] for r in speech if r["split"] == s] for s in ("train", "dev", "test")}
    tts = [_espeak(SENTENCES[i % len(SENTENCES)], VOICES[i % len(VOICES)], tmp / f"tts_{i:02d}.wav")
           for i in range(36)]
    train_bona, train_tts = by_split["train"][:24], tts[:12]
    cal_bona, cal_tts = by_split["dev"][:12], tts[12:20]
    ev_bona, ev_tts = by_split["test"][:16], tts[20:36]

    analyzer = FrameAnalyzer(spec)
    feats = lambda paths: np.stack([compute_features(spec, _window(read_audio(p)), analyzer) for p in paths])  # noqa
    x = np.concatenate([feats(train_bona), feats(train_tts)])[:, None]
    y = np.array([0] * len(train_bona) + [1] * len(train_tts))
    torch.manual_seed(0)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    weights = torch.tensor([1.0, len(train_bona) / len(train_tts)])
    model.train()
    for _ in range(40):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt), yt, weight=weights)
        loss.backward()
        opt.step()
    model.eval()

    program = tmp / "tiny.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, spec.n_bins, spec.n_frames(WINDOW)),)),
                      str(program))
    spec_json = tmp / "spec.json"
    spec_json.write_text(spec.to_json(), encoding="utf-8")
    calib = _write_manifest(tmp / "calib.csv", [(p, "bonafide") for p in cal_bona] + [(p, "spoof") for p in cal_tts])
    evalm = _write_manifest(tmp / "eval.csv", [(p, "bonafide") for p in ev_bona] + [(p, "spoof") for p in ev_tts])
    ev_windows = [_window(read_audio(p)) for p in ev_bona + ev_tts]
    ev_labels = ["bonafide"] * len(ev_bona) + ["spoof"] * len(ev_tts)
    return {"tmp": tmp, "spec": spec, "model": model, "program": program, "spec_json": spec_json,
            "calib": calib, "eval": evalm, "ev_windows": ev_windows, "ev_labels": ev_labels}


@pytest.fixture(scope="module")
def exported(trained):
    """The CLI run: all four formats, real calibration, gates, profile, TFLite Micro and the C array."""
    from export.cli import main

    out = trained["tmp"] / "bundle"
    carray = trained["tmp"] / "firmware"
    argv = ["--program", str(trained["program"]), "--feature-spec", str(trained["spec_json"]),
            "--architecture", "tiny_cnn", "--formats", "onnx,onnx-int8,tflite,tflite-int8",
            "--calibration", str(trained["calib"]), "--eval", str(trained["eval"]), "--out", str(out),
            "--c-array", str(carray)]
    try:
        import tflite_micro  # noqa: F401
        argv.append("--micro")
    except ImportError:
        pass
    rc = main(argv)
    assert rc == 0
    return {"bundle": load_bundle(out), "carray": carray}


def _torch_logits(model, spec, windows):
    analyzer = FrameAnalyzer(spec)
    with torch.no_grad():
        return np.stack([model(torch.from_numpy(compute_features(spec, w, analyzer)[None, None])).numpy()[0]
                         for w in windows])


def test_cli_writes_all_four_formats_with_passed_gates(exported, trained):
    meta = exported["bundle"].meta
    assert sorted((m.format, m.precision) for m in meta.models) == [
        ("onnx", "float32"), ("onnx", "int8"), ("tflite", "float32"), ("tflite", "int8")]
    gates = meta.export_gates["results"]
    assert set(gates) == {"onnx/float32", "onnx/int8", "tflite/float32", "tflite/int8"}
    for key in ("onnx/float32", "tflite/float32"):
        assert gates[key]["passed"] and gates[key]["max_abs_logit_diff"] <= 1e-4
        assert "real audio" in gates[key]["data"]
    for key in ("onnx/int8", "tflite/int8"):
        g = gates[key]
        assert g["passed"] and g["eer_increase_points"] <= 0.5 and g["decision_agreement"] >= 0.98
        assert g["bonafide_windows"] == 16 and g["spoof_windows"] == 16 and g["calibration_windows"] == 20
        assert g["float_ops"] == []  # full-integer model
    # the trained model separates real speech from espeak-ng on held-out files
    assert gates["tflite/int8"]["eer_float_percent"] < 25.0
    assert meta.feature_spec == trained["spec"]
    assert meta.architecture == "tiny_cnn"


def test_each_model_runs_in_its_runtime_and_matches_torch(exported, trained):
    from edge_cm.backends.onnx import OnnxBackend
    from edge_cm.backends.tflite import TFLiteBackend

    bundle = exported["bundle"]
    spec, windows = trained["spec"], trained["ev_windows"]
    ref = _torch_logits(trained["model"], spec, windows)
    analyzer = FrameAnalyzer(spec)
    feats = [compute_features(spec, w, analyzer) for w in windows]
    for m in bundle.meta.models:
        cls = OnnxBackend if m.format == "onnx" else TFLiteBackend
        backend = cls(m, bundle.model_path(m), threads=1)
        got = np.stack([backend.run(f) for f in feats])
        if m.precision == "float32":
            assert np.max(np.abs(got - ref)) <= 1e-4, m.file
        else:
            agree = np.mean(np.argmax(got, axis=1) == np.argmax(ref, axis=1))
            assert agree >= 0.95, (m.file, agree)
            assert np.max(np.abs(got - ref)) > 0  # it really is a different, quantised model


def test_int8_tflite_interface_is_int8_with_stored_quantisation(exported):
    from ai_edge_litert.interpreter import Interpreter

    bundle = exported["bundle"]
    (m,) = bundle.select(fmt="tflite", precision="int8")
    interp = Interpreter(model_path=str(bundle.model_path(m)))
    ind, outd = interp.get_input_details()[0], interp.get_output_details()[0]
    assert np.dtype(ind["dtype"]) == np.int8 and np.dtype(outd["dtype"]) == np.int8
    assert m.input.dtype == "int8" and m.output.dtype == "int8"
    assert m.input.scale == pytest.approx(float(ind["quantization"][0]))
    assert m.input.zero_point == int(ind["quantization"][1])
    assert m.output.scale == pytest.approx(float(outd["quantization"][0]))
    assert m.input.shape == [1, 1, 40, 398] and m.input.layout == "NCFT"
    (q,) = bundle.select(fmt="onnx", precision="int8")
    import onnx

    ops = {n.op_type for n in onnx.load(str(bundle.model_path(q))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format


def test_int8_tflite_runs_in_legacy_tflite_runtime(exported, trained):
    if not LEGACY_PY.exists():
        pytest.skip(f"{LEGACY_PY.parent.parent} is absent (make test creates it: numpy<2 + tflite-runtime 2.14)")
    bundle = exported["bundle"]
    (m,) = bundle.select(fmt="tflite", precision="int8")
    spec = trained["spec"]
    feats = np.stack([compute_features(spec, w) for w in trained["ev_windows"][:8]]).astype(np.float32)
    np.save(trained["tmp"] / "feats.npy", feats)
    script = (
        "import sys, json, numpy as np\n"
        "from tflite_runtime.interpreter import Interpreter\n"
        "it = Interpreter(model_path=sys.argv[1], num_threads=1); it.allocate_tensors()\n"
        "i, o = it.get_input_details()[0], it.get_output_details()[0]\n"
        "out = []\n"
        "for f in np.load(sys.argv[2]):\n"
        "    s, z = i['quantization']\n"
        "    q = np.clip(np.round(f / s) + z, -128, 127).astype(np.int8).reshape(i['shape'])\n"
        "    it.set_tensor(i['index'], q); it.invoke()\n"
        "    out.append(it.get_tensor(o['index']).reshape(-1).tolist())\n"
        "print(json.dumps({'numpy': np.__version__, 'out': out}))\n")
    res = subprocess.run([str(LEGACY_PY), "-c", script, str(bundle.model_path(m)), str(trained["tmp"] / "feats.npy")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["numpy"].startswith("1.")
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # tflite-runtime 2.14 and LiteRT's reference kernels should agree; LiteRT's default XNNPACK
    # kernels round requantisation differently (measured: up to 3 LSB on these windows).
    interp = Interpreter(model_path=str(bundle.model_path(m)), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    i, o = interp.get_input_details()[0], interp.get_output_details()[0]
    for f, legacy in zip(feats, got["out"]):
        s, z = i["quantization"]
        interp.set_tensor(i["index"], np.clip(np.round(f / s) + z, -128, 127).astype(np.int8).reshape(i["shape"]))
        interp.invoke()
        ours = interp.get_tensor(o["index"]).reshape(-1).astype(int)
        assert np.max(np.abs(ours - np.array(legacy))) <= 1
        assert np.argmax(ours) == np.argmax(legacy)


def test_broken_calibration_fails_int8_gate_and_writes_no_bundle(trained, tmp_path, capsys):
    """Calibrating on digital silence collapses the activation ranges: the gate must refuse the model."""
    from export.cli import main

    silent = []
    for i in range(6):
        p = tmp_path / f"silence_{i}.flac"
        sf.write(p, np.zeros(WINDOW, dtype=np.float32), 16000)
        silent.append((p, "bonafide" if i % 2 else "spoof"))
    calib = _write_manifest(tmp_path / "silence.csv", silent)
    out = tmp_path / "broken_bundle"
    rc = main(["--program", str(trained["program"]), "--feature-spec", str(trained["spec_json"]),
               "--architecture", "tiny_cnn", "--formats", "tflite-int8",
               "--calibration", str(calib), "--eval", str(trained["eval"]), "--no-profile", "--out", str(out)])
    assert rc != 0
    err = capsys.readouterr().err
    assert "export gate failed, no bundle written" in err and "int8: EER" in err, err
    assert not out.exists()
    assert not list(tmp_path.glob(".broken_bundle.*"))  # no half-written temporary folder either


def test_broken_calibration_error_names_the_failed_gate(trained):
    from edge_cm.errors import ExportError
    from export.api import export_bundle

    huge = [np.full(WINDOW, 1e4 * (1 if i % 2 else -1), dtype=np.float32) for i in range(4)]
    out = trained["tmp"] / "never"
    with pytest.raises(ExportError, match=r"onnx/int8: EER"):
        export_bundle(trained["model"], trained["spec"], out, formats=("onnx-int8",), architecture="tiny_cnn",
                      onnx_exporter="torchscript",
                      calibration_windows=huge, eval_windows=trained["ev_windows"], eval_labels=trained["ev_labels"],
                      profile=False)
    assert not out.exists()


def test_profile_cli_reports_sizes_latency_and_targets(exported, tmp_path):
    from export.cli import main

    bundle = exported["bundle"]
    js = tmp_path / "profile.json"
    md = tmp_path / "profile.md"
    assert main(["profile", str(bundle.path), "--repeats", "5", "--json", str(js), "--markdown", str(md)]) == 0
    prof = json.loads(js.read_text())
    assert prof["file_sizes"] == {f"{m.format}/{m.precision}": (bundle.path / m.file).stat().st_size
                                  for m in bundle.meta.models}
    assert set(prof["latency"]["inference"]) == set(prof["file_sizes"])
    for st in prof["latency"]["inference"].values():
        assert 0 < st["median_ms"] <= st["p95_ms"] and st["real_time_factor"] < 1.0
    assert prof["macs"] == prof["macs_flop_counter"]
    assert set(prof["targets"]) == {"cortex_m7", "raspberry_pi_4_core", "android_midrange_big_core"}
    m7 = prof["targets"]["cortex_m7"]["tflite/int8"]
    assert m7["estimated_ms_per_window"] == pytest.approx(1000 * prof["macs"] / 480e6)
    assert m7["fits_flash"] is True  # a ~10 kB model in 2 MB flash
    assert "Cortex-M7" in md.read_text()
    # the export stored the same torch-side numbers in the bundle
    assert bundle.meta.profile["parameters"] == sum(p.numel() for p in TinyCNN().parameters())


def test_mac_convention_matches_flop_counter_and_hand_count():
    from export.profile import count_macs, flop_counter_macs

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, groups=2),
                          nn.Flatten(), nn.Linear(8 * 3 * 3, 5)).eval()
    x = torch.zeros(1, 1, 8, 8)
    hand = 4 * 8 * 8 * 1 * 9 + 8 * 3 * 3 * 2 * 9 + 72 * 5
    assert count_macs(model, x) == hand
    assert flop_counter_macs(model, x) == hand


def test_activation_memory_of_a_chain():
    from export.profile import activation_memory

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 2)).eval()
    act = activation_memory(model, torch.zeros(1, 1, 8, 8))
    # live at the ReLU: the conv output (256) and the ReLU output (256); the 64-element input is dead by then
    assert act["peak_live_elements"] == 512
    assert act["bytes"] == {"float32": 2048, "int8": 512}
    # The conv kept float32 in the int8 model (--int8-keep-float 0): its float input (64 x 4 B) and
    # output (256 x 4 B) are live together, then its output beside the int8 ReLU output (256 B).
    mixed = activation_memory(model, torch.zeros(1, 1, 8, 8), float_modules=("0",))
    assert mixed["bytes"] == {"float32": 2048, "int8": 1280} and mixed["int8_float_modules"] == ["0"]
    # A float head (2 x 4 B beside the 256-B ReLU output) stays under the conv/ReLU peak.
    assert activation_memory(model, torch.zeros(1, 1, 8, 8), float_modules=("3",))["bytes"]["int8"] == 512


def test_tflite_micro_arena_and_parity(exported):
    micro = exported["bundle"].meta.profile.get("micro")
    if micro is None:
        pytest.skip("tflite-micro is not installed (pip install tflite-micro)")
    assert micro["arena_bytes"] >= 40 * 398  # at least the int8 input tensor lives in the arena
    # TFLM's kernels are ports of LiteRT's reference kernels: at most one LSB of rounding apart
    assert micro["max_abs_diff_int8_lsb"] <= 1
    assert micro["argmax_agreement"] == 1.0
    assert micro["max_abs_diff_int8_lsb_vs_litert_default"] <= 8


def test_c_array_is_aligned_and_round_trips(exported, tmp_path):
    from export.c_array import read_c_array

    bundle, folder = exported["bundle"], exported["carray"]
    (m,) = bundle.select(fmt="tflite", precision="int8")
    src = (folder / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_model[]" in src
    assert f"const unsigned int g_model_len = {m.size_bytes};" in src
    assert read_c_array(folder / "model_data.cc") == bundle.model_path(m).read_bytes()
    if shutil.which("g++"):
        obj = tmp_path / "model_data.o"
        res = subprocess.run(["g++", "-std=c++11", "-c", str(folder / "model_data.cc"), "-I", str(folder),
                              "-o", str(obj)], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr


def test_float_export_without_real_windows_records_synthetic_data(trained, tmp_path):
    from export.api import export_bundle

    b = export_bundle(trained["model"], trained["spec"], tmp_path / "b", formats=("onnx",), architecture="tiny_cnn",
                      onnx_exporter="torchscript", profile=False)
    g = b.meta.export_gates["results"]["onnx/float32"]
    assert g["passed"] and "synthetic" in g["data"]
    assert b.meta.models[0].input.name == "features" and b.meta.models[0].output.shape == [1, 2]


def test_cli_exports_a_training_checkpoint(tmp_path, bonafide_dir):
    """An edge-cm-train checkpoint (EfficientCNN small) -> float ONNX, gated on real bona fide windows."""
    from edge_cm.features import efficientcnn_spec
    from export.cli import main
    from training.models import registry

    torch.manual_seed(0)
    model = registry.build("efficientcnn_small").eval()
    spec = efficientcnn_spec()
    spec = spec.with_global_stats(np.full(spec.n_bins, -4.0), np.full(spec.n_bins, 2.0))
    ckpt = tmp_path / "best.pt"
    torch.save({"architecture": "efficientcnn_small", "model_args": {}, "model_state": model.state_dict(),
                "feature_spec": spec.to_dict(), "classes": ["bonafide", "spoof"],
                "config": {"architecture": "efficientcnn_small", "manifest": "train.csv"},
                "metrics": {"threshold": 0.7, "threshold_method": "EER point on dev"}}, ckpt)
    out = tmp_path / "ecnn"
    rc = main(["--checkpoint", str(ckpt), "--formats", "onnx", "--onnx-exporter", "torchscript",
               "--eval", str(bonafide_dir / "manifest.csv"), "--eval-windows", "3", "--no-profile",
               "--out", str(out)])
    assert rc == 0
    meta = load_bundle(out).meta
    assert meta.architecture == "efficientcnn_small" and meta.feature_spec == spec
    assert meta.models[0].input.shape == [1, 1, 865, 390]
    assert meta.threshold == 0.7 and meta.threshold_method == "EER point on dev"
    gate = meta.export_gates["results"]["onnx/float32"]
    assert gate["passed"] and gate["windows"] == 3 and "real audio" in gate["data"]

    # the bundle carries the checkpoint, so it can itself be exported again: same model, same bytes
    assert meta.training_weights["file"] == "training_weights.npz"
    again = tmp_path / "again"
    assert main(["--checkpoint", str(out), "--formats", "onnx", "--onnx-exporter", "torchscript",
                 "--no-profile", "--out", str(again)]) == 0
    assert (again / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()
    assert load_bundle(again).meta.training_weights["sha256"] == meta.training_weights["sha256"]


def test_bundle_profile_needs_no_torch(exported):
    """edge-cm info can re-profile a bundle with the runtime alone: torch is never imported."""
    code = ("import json, sys\n"
            "from edge_cm.profile import load_default_targets, reprofile\n"
            "p = reprofile(sys.argv[1], load_default_targets(), repeats=3)\n"
            "print(json.dumps({'torch': 'torch' in sys.modules, 'keys': sorted(p['latency']['inference']),\n"
            "                  'targets': sorted(p['targets']), 'macs': p['macs']}))\n")
    res = subprocess.run([sys.executable, "-c", code, str(exported["bundle"].path)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["torch"] is False
    assert got["keys"] == ["onnx/float32", "onnx/int8", "tflite/float32", "tflite/int8"]
    assert got["targets"] == ["android_midrange_big_core", "cortex_m7", "raspberry_pi_4_core"]
    assert got["macs"] == exported["bundle"].meta.profile["macs"] > 0


def test_standalone_batchnorm_becomes_integer_ops(tmp_path):
    """EfficientCNN's conv -> ReLU -> BN order: the BN is rewritten as x * s + t so the int8 model is
    full-integer. (Left as BN it stays float - measured on efficientcnn_small: DEQUANTIZE / SUB / MUL /
    QUANTIZE islands and a 1.36 MB TFLM arena instead of 0.69 MB - and converting it takes ~50 s in
    torchao's QAT conv-bn matcher, so that variant is not converted here.)"""
    from export.prepare import affine_standalone_batchnorm
    from export.tflite_export import export_tflite_int8, tflite_float_ops

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4),
                          nn.Flatten(), nn.Linear(4 * 14 * 14, 6), nn.ReLU(), nn.BatchNorm1d(6), nn.Linear(6, 2)).eval()
    for bn in (model[2], model[4], model[8]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2.0)
    prepared, n = affine_standalone_batchnorm(model)
    assert n == 2  # the BN right after a conv is left for PT2E to fold into it
    # after conv/linear -> ReLU with positive scales: the scale moves into the layer, + t stays
    assert prepared[2].scale is None and prepared[8].scale is None
    negative = copy.deepcopy(model)
    with torch.no_grad():
        negative[2].weight[0] = -1.0  # ReLU(z) * s != ReLU(z * s) for s < 0: keep the multiply
    kept, _ = affine_standalone_batchnorm(negative)
    assert kept[2].scale is not None and torch.equal(kept[0].weight, negative[0].weight)
    with torch.no_grad():
        assert torch.max(torch.abs(kept(x := torch.randn(4, 1, 16, 16)) - negative(x))) < 1e-5
    assert not any(isinstance(m, nn.BatchNorm1d) for m in prepared.modules())
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        assert torch.max(torch.abs(prepared(x) - model(x))) < 1e-5
    calib = [np.random.default_rng(i).standard_normal((1, 1, 16, 16)).astype(np.float32) for i in range(4)]
    full = export_tflite_int8(prepared, x[:1], iter(calib), tmp_path / "full.tflite")
    assert tflite_float_ops(full) == []

    class Residual(nn.Module):  # RES-EfficientCNN's block: two conv -> ReLU -> BN paths, added
        def __init__(self):
            super().__init__()
            self.main = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4))
            self.shortcut = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU(), nn.BatchNorm2d(4))
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 16 * 16, 2))

        def forward(self, x):
            return self.head(self.main(x) + self.shortcut(x))

    residual = Residual().eval()
    for bn in (residual.main[2], residual.shortcut[2]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2.0)
    prepared, _ = affine_standalone_batchnorm(residual)
    full = export_tflite_int8(prepared, x[:1], iter(calib), tmp_path / "residual.tflite")
    assert tflite_float_ops(full) == []  # the BN shifts and the residual addition are int8 too


def test_a_quiet_channel_before_batchnorm_survives_int8(tmp_path):
    """RES-EfficientCNN LARGE's int8 TFLite once agreed with float on half the windows: its classifier
    BN (after linear -> ReLU) scaled some channels up far more than others, and the per-tensor int8
    scale of the linear's output rounded those quiet channels to zero. Here one channel is 1000x quieter than the
    rest and BN restores it, and one is mostly negative before the ReLU; the int8 model must still
    follow the quiet channel."""
    from export.prepare import affine_standalone_batchnorm
    from export.tflite_export import export_tflite_int8, run_tflite

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 2))
    data = torch.randn(512, 1, 8, 8)
    with torch.no_grad():
        model[1].weight[0] *= 1e-3
        model[1].bias[0] = 0.0
        model[1].bias[1] = -1.0  # mostly below zero: after scaling, a wide range that ReLU cuts off
        model[3].momentum = None
        model.train()(data)  # BN statistics of the data: channel 0 gets a scale near 300
        model[4].weight.zero_()
        model[4].weight[0, 0] = 1.0  # logit 0 reads the quiet channel only
        model[4].weight[1, 2] = 1.0
    model.eval()
    prepared, _ = affine_standalone_batchnorm(model)
    assert prepared[3].scale is None  # the BN scale moved into the linear layer: only + t is left
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 1, 8, 8)).astype(np.float32) for _ in range(32)]
    test = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    path = export_tflite_int8(prepared, torch.from_numpy(test[:1]), iter(calib), tmp_path / "quiet.tflite")
    got = np.concatenate([run_tflite(str(path), test[i:i + 1]) for i in range(len(test))])
    with torch.no_grad():
        ref = model(torch.from_numpy(test)).numpy()
    for k in range(2):
        assert np.std(got[:, k]) > 0 and np.corrcoef(got[:, k], ref[:, k])[0, 1] > 0.98


def test_waveform_model_exports_with_samples_input(tmp_path, real_speech):
    """A waveform front end: the model takes (1, samples) and both runtimes match torch on real speech."""
    from edge_cm.features import waveform_spec
    from export.api import export_bundle

    torch.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (1, -1)), nn.Conv1d(1, 4, 400, stride=160), nn.ReLU(),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    window = real_speech[:WINDOW] if real_speech.size >= WINDOW else np.resize(real_speech, WINDOW)
    b = export_bundle(model, waveform_spec(), tmp_path / "wave", formats=("onnx", "tflite"), architecture="wave_cnn",
                      eval_windows=[window.astype(np.float32)], onnx_exporter="torchscript", profile=False)
    for m in b.meta.models:
        assert m.input.shape == [1, WINDOW] and m.input.layout == "NT"
        assert b.meta.export_gates["results"][f"{m.format}/float32"]["max_abs_logit_diff"] <= 1e-4


def test_gate_labels_take_spoof_for_any_non_bonafide_class_of_a_multiclass_model():
    """A manifest says bonafide/spoof; an 8-class ResNetSE bundle's gates score bona fide against the rest."""
    from edge_cm.errors import ExportError
    from export.api import _labels_to_spoof

    classes = ["bonafide", "tts_formant", "vocoder_source_filter"]
    assert _labels_to_spoof(["bonafide", "spoof", "vocoder_source_filter", 0, 2], classes).tolist() == [
        False, True, True, False, True]
    with pytest.raises(ExportError, match="neither 'spoof' nor"):
        _labels_to_spoof(["fake"], classes)


def test_a_tflite_file_the_interpreter_rejects_is_an_export_error(tmp_path):
    from edge_cm.errors import ExportError
    from export.tflite_export import tflite_interpreter

    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"TFL3" + bytes(60))
    with pytest.raises(ExportError, match="rejects the converted model"):
        tflite_interpreter(bad)


def test_int8_tflite_of_a_softmax_attention_pooling_loads_and_tracks_float(tmp_path):
    """torch.softmax exports as aten.softmax.int; without the fixed 1/256 output scale the TFLite
    int8 SOFTMAX kernel refuses the model at load time (what happened to the ResNetSE student)."""
    import torch
    from torch import nn

    from export.tflite_export import export_tflite_int8, run_tflite, tflite_interpreter

    class AttentivePool(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.score = nn.Conv1d(4, 4, 1)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            h = torch.relu(self.conv(x)).mean(dim=2)  # (B, 4, T)
            return self.head((h * torch.softmax(self.score(h), dim=2)).sum(dim=2))

    torch.manual_seed(0)
    model = AttentivePool().eval()
    rng = np.random.default_rng(0)
    windows = [rng.standard_normal((1, 1, 8, 40)).astype(np.float32) for _ in range(24)]
    path = export_tflite_int8(model, torch.from_numpy(windows[0]), windows[:16], tmp_path / "m.tflite")
    interp = tflite_interpreter(path)  # raised "SOFTMAX failed to prepare" before
    ops = {d["op_name"] for d in interp._get_ops_details()}
    assert "SOFTMAX" in ops
    with torch.no_grad():
        ref = np.stack([model(torch.from_numpy(w)).numpy()[0] for w in windows[16:]])
    got = np.stack([run_tflite(interp, w).reshape(-1) for w in windows[16:]])
    assert np.max(np.abs(got - ref)) < 0.1 * (np.max(np.abs(ref)) + 1e-3)


def _manifest_windows(manifest: Path) -> list[np.ndarray]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return [_window(read_audio(row["path"])) for row in csv.DictReader(f)]


def test_int8_keep_float_leaves_the_first_layer_float_in_both_formats(trained, exported, tmp_path):
    """Mixed precision: the named module stays float32 (its weights and input), the rest int8; a typo is an error."""
    import edge_cm
    from edge_cm.errors import ExportError
    from export.api import export_bundle

    calib = _manifest_windows(trained["calib"])
    kwargs = dict(formats=("onnx-int8", "tflite-int8"), architecture="tiny_cnn", calibration_windows=calib,
                  eval_windows=trained["ev_windows"], eval_labels=trained["ev_labels"], profile=False)
    b = export_bundle(trained["model"], trained["spec"], tmp_path / "mixed", int8_keep_float=["body.0"], **kwargs)
    gates = b.meta.export_gates["results"]
    full = exported["bundle"].meta.export_gates["results"]
    assert "Conv" not in full["onnx/int8"]["float_ops"] and full["tflite/int8"]["float_ops"] == []
    assert gates["onnx/int8"]["float_ops"] == ["Conv", "Relu"] and gates["onnx/int8"]["kept_float_modules"] == ["body.0"]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} & set(gates["tflite/int8"]["float_ops"])
    tfl = b.select(fmt="tflite")[0]
    assert tfl.input.dtype == "float32" and tfl.output.dtype == "int8"
    window = trained["ev_windows"][0]
    ref = _torch_logits(trained["model"], trained["spec"], [window])[0]
    for backend in ("onnx", "tflite"):
        (result,) = edge_cm.load(b.path, backend=backend, precision="int8").process(window)
        assert np.max(np.abs(np.array(result.logits) - ref)) < 0.1 * np.max(np.abs(ref)) + 0.05
    # The profile reads the kept modules from the gates: its int8 arena (and the target fit built
    # on it) counts body.0's float input and output at 4 bytes, above the all-int8 estimate.
    from export.profile import activation_memory, profile_bundle

    prof = profile_bundle(trained["model"], b, repeats=2)
    act = prof["activation_memory"]
    all_int8 = activation_memory(trained["model"], torch.zeros(prof["input_shape"]))["bytes"]["int8"]
    assert act["int8_float_modules"] == ["body.0"] and act["bytes"]["int8"] > all_int8
    assert all(rows["tflite/int8"]["arena_bytes"] == act["bytes"]["int8"] for rows in prof["targets"].values())
    for bad in ("body.9", "head.weight"):
        with pytest.raises(ExportError, match="body.9|head.weight"):
            export_bundle(trained["model"], trained["spec"], tmp_path / f"bad_{bad}", int8_keep_float=[bad], **kwargs)
        assert not (tmp_path / f"bad_{bad}").exists()


def test_int8_tflite_with_float_first_and_last_layers_keeps_a_float_interface(tmp_path):
    """Nothing forces an int8 interface onto float edge layers (the rewriter refuses such a model)."""
    from export.tflite_export import export_tflite_int8, run_tflite, tflite_float_ops, tflite_tensor_info

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2)).eval()
    rng = np.random.default_rng(0)
    windows = [rng.standard_normal((1, 1, 16, 16)).astype(np.float32) for _ in range(12)]
    path = export_tflite_int8(model, torch.from_numpy(windows[0]), windows[:8], tmp_path / "m.tflite",
                              keep_float=["0", "6"])
    inp, out = tflite_tensor_info(path)
    assert inp.dtype == "float32" and out.dtype == "float32"
    float_ops = set(tflite_float_ops(path))
    assert "DEPTHWISE_CONV_2D" in float_ops and "FULLY_CONNECTED" in float_ops  # a 1-channel conv is depthwise
    with torch.no_grad():
        ref = np.stack([model(torch.from_numpy(w)).numpy()[0] for w in windows[8:]])
    got = run_tflite(path, np.stack(windows[8:]))
    assert np.max(np.abs(got - ref)) < 0.1 * np.max(np.abs(ref)) + 0.02


def test_onnx_export_carries_no_source_paths_and_is_reproducible(tmp_path):
    """The exporter's per-node stack traces name this machine's files: they are dropped, so the
    same weights give the same bytes wherever and whenever they are exported."""
    import onnx
    import torch

    from export.onnx_export import export_onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    example = torch.zeros(1, 1, 20, 30)
    first = export_onnx(model, example, tmp_path / "a.onnx")
    second = export_onnx(model, example, tmp_path / "b.onnx")
    proto = onnx.load(str(first))
    assert all(len(n.metadata_props) == 0 for n in proto.graph.node)
    assert str(Path(__file__).resolve().parents[1]).encode() not in first.read_bytes()
    assert first.read_bytes() == second.read_bytes()


def test_float_gate_limit_scales_with_the_logits_and_still_catches_a_wrong_graph():
    from export.gates import float_gate

    rng = np.random.default_rng(0)
    small = rng.normal(0.0, 1.0, (32, 2)).clip(-1, 1)
    large = small * 300.0
    assert float_gate(small, small + 5e-5, data="t")["passed"]
    assert not float_gate(small, small + 5e-4, data="t")["passed"]
    # float32 rounding at |logit| = 300 is ~2e-5 per operation: 5e-4 is rounding, not a bug
    gate = float_gate(large, large + 5e-4, data="t")
    assert gate["passed"] and gate["limit"] == pytest.approx(1e-4 * np.max(np.abs(large)))
    assert not float_gate(large, large * 1.001, data="t")["passed"]  # a 0.1 % wrong scale is a bug


def _logits_with_eer(errors_per_class: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Window logits whose EER is exactly errors_per_class / n: that many bona fide windows score as
    spoofs and as many spoof windows as bona fide."""
    k = errors_per_class
    bona = np.concatenate([-5 - 0.01 * np.arange(n - k), 5 + 0.01 * np.arange(k)])
    spoof = np.concatenate([6 + 0.01 * np.arange(n - k), -4.5 - 0.01 * np.arange(k)])
    log_odds = np.concatenate([bona, spoof])
    return np.stack([np.zeros_like(log_odds), log_odds], 1), np.r_[np.zeros(n, bool), np.ones(n, bool)]


def test_int8_gate_passes_a_rise_equal_to_its_limit_and_fails_one_step_more():
    """6.5 -> 7.0 % is a rise of exactly 0.5 points, the limit, and passes; in floats 7.0 - 6.5 is
    0.500000000000001, which the gate once failed. 6.5 -> 7.5 % fails."""
    from export.gates import int8_gate

    reference, is_spoof = _logits_with_eer(13)
    kwargs = dict(is_spoof=is_spoof, threshold=0.5, data="synthetic", calibration_windows=0)
    at_limit = int8_gate(reference, _logits_with_eer(14)[0], **kwargs)
    assert (at_limit["eer_float_percent"], at_limit["eer_int8_percent"]) == (6.5, pytest.approx(7.0))
    assert at_limit["eer_increase_points"] == 0.5 and at_limit["passed"]
    beyond = int8_gate(reference, _logits_with_eer(15)[0], **kwargs)
    assert beyond["eer_increase_points"] == 1.0 and not beyond["passed"]
