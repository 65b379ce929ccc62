"""The runtime imports and runs where torch cannot be imported."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap

import edge_cm

BLOCK_TORCH = textwrap.dedent("""
    import sys
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
    sys.meta_path.insert(0, _NoTorch())
""")


def test_every_runtime_module_imports_and_runs_without_torch(float_bundle):
    modules = [m.name for m in pkgutil.walk_packages(edge_cm.__path__, "edge_cm.")]
    assert "edge_cm.detector" in modules and "edge_cm.backends.tflite" in modules
    script = BLOCK_TORCH + textwrap.dedent(f"""
        import importlib
        for name in {modules!r}:
            importlib.import_module(name)
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch was importable")
        import numpy as np, edge_cm
        for backend in ("onnx", "tflite"):
            det = edge_cm.load({str(float_bundle)!r}, backend=backend)
            rng = np.random.default_rng(0)
            res = det.process((0.1 * rng.standard_normal(64000)).astype(np.float32))
            assert len(res) == 1 and res[0].score is not None
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print("ok", len({modules!r}))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"ok {len(modules)}"
