"""Do HiFi-GAN corpus files depend on the CPU? The same clip vocoded under different oneDNN ISA caps.

The corpus builder's HiFi-GAN copies (``training/corpus/hifigan.py``) run a TorchScript generator
whose convolutions go through oneDNN, which picks its kernels by the CPU's instruction set. This
vocodes one clip in a fresh process per cap (``ONEDNN_MAX_CPU_ISA``; ``ALL`` = what this CPU
offers) and counts the 16-bit samples (as the corpus writes them) that differ from the uncapped
run. A difference means the same build command writes slightly different test files on different
CPUs: the scores of a model on them then move in the last decimals. The clip is read as the runtime
reads audio (mono, resampled to 16 kHz) and its first ``--max-seconds`` are used.

    python benchmarks/hifigan_cpu_isa.py --clip CLIP.flac --out benchmarks/results/hifigan_cpu_isa.md
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
CAPS = ("ALL", "AVX512_CORE", "AVX2", "SSE41")

_CHILD = """
import sys
import numpy as np
from training.corpus.hifigan import hifigan
np.save(sys.argv[2], hifigan(np.load(sys.argv[1])))
"""


def pcm16(y: np.ndarray) -> np.ndarray:
    """Float samples as the corpus builder stores them: clipped, 16-bit FLAC (read back as int16)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 32767 / 32768), 16000, format="FLAC", subtype="PCM_16")
    buf.seek(0)
    return sf.read(buf, dtype="int16")[0]


def vocode_capped(samples: Path, cap: str, tmp: Path) -> np.ndarray:
    """HiFi-GAN output of the float32 samples saved at ``samples``, in a process whose oneDNN is capped at ``cap``."""
    from edge_cm.errors import EdgeCMError

    out = tmp / f"{cap}.npy"
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=cap, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", _CHILD, str(samples), str(out)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise EdgeCMError(f"the HiFi-GAN run capped at {cap} failed: {last}",
                          hint="run it without the cap (ALL) first; see training/corpus/hifigan.py")
    return np.load(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", required=True, type=Path, help="a 16 kHz speech clip")
    p.add_argument("--out", required=True, type=Path, help="markdown table")
    p.add_argument("--max-seconds", type=float, default=10.0, help="use the clip's first seconds (default 10)")
    args = p.parse_args(argv)
    if args.max_seconds <= 0:
        p.error("--max-seconds must be > 0")
    from edge_cm.audio import read_audio
    from edge_cm.errors import DependencyError
    from training.corpus.hifigan import SAMPLE_RATE, unavailable

    # Typed errors for a missing, corrupt, empty or NaN clip before any vocoder process starts.
    x = read_audio(args.clip, target_rate=SAMPLE_RATE)[: int(args.max_seconds * SAMPLE_RATE)]
    reason = unavailable()
    if reason:
        raise DependencyError(f"HiFi-GAN vocoder unavailable: {reason}")
    with tempfile.TemporaryDirectory(prefix="edge-cm-isa-") as tmp:
        samples = Path(tmp) / "clip.npy"
        np.save(samples, x)
        runs = {cap: vocode_capped(samples, cap, Path(tmp)) for cap in CAPS}
    ref = runs["ALL"]
    rows = ["| oneDNN ISA cap | max abs difference (float) | 16-bit samples differing |", "|---|---:|---:|"]
    for cap, y in runs.items():
        differing = int((pcm16(y) != pcm16(ref)).sum())
        rows.append(f"| `{cap}` | {float(np.abs(y - ref).max()):.3g} | {differing} of {len(ref)} |")
    text = "\n".join([
        "# HiFi-GAN copy-synthesis under oneDNN ISA caps", "",
        f"One clip (`{args.clip.name}`), each cap in a fresh process, against the uncapped run (`ALL`).", "",
        "    python benchmarks/hifigan_cpu_isa.py --clip CLIP --out OUT", "", *rows, ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "hifigan_cpu_isa.py"))
