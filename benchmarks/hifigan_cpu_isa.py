"""Do HiFi-GAN corpus files depend on the CPU? The same clip vocoded under different oneDNN ISA caps.

The corpus builder's HiFi-GAN copies (``training/corpus/hifigan.py``) run a TorchScript generator
whose convolutions go through oneDNN, which picks its kernels by the CPU's instruction set. This
vocodes one clip in a fresh process per cap (``ONEDNN_MAX_CPU_ISA``; ``ALL`` = what this CPU
offers) and counts the 16-bit samples (as the corpus writes them) that differ from the uncapped
run. A difference means the same build command writes slightly different test files on different
CPUs: the scores of a model on them then move in the last decimals.

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
CAPS = ("ALL", "AVX512_CORE", "AVX2", "SSE41")

_CHILD = """
import sys
import numpy as np
import soundfile as sf
from training.corpus.hifigan import hifigan
x, rate = sf.read(sys.argv[1], dtype="float32", always_2d=True)
if rate != 16000:
    sys.exit(f"{sys.argv[1]}: need 16 kHz audio, got {rate} Hz")
np.save(sys.argv[2], hifigan(x.mean(axis=1)))
"""


def pcm16(y: np.ndarray) -> np.ndarray:
    """Float samples as the corpus builder stores them: clipped, 16-bit FLAC (read back as int16)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 32767 / 32768), 16000, format="FLAC", subtype="PCM_16")
    buf.seek(0)
    return sf.read(buf, dtype="int16")[0]


def vocode_capped(clip: Path, cap: str, tmp: Path) -> np.ndarray:
    out = tmp / f"{cap}.npy"
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=cap, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", _CHILD, str(clip), str(out)], env=env, check=True)
    return np.load(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", required=True, type=Path, help="a 16 kHz speech clip")
    p.add_argument("--out", required=True, type=Path, help="markdown table")
    args = p.parse_args(argv)
    if not args.clip.is_file():
        p.error(f"{args.clip}: no such file")
    with tempfile.TemporaryDirectory(prefix="edge-cm-isa-") as tmp:
        runs = {cap: vocode_capped(args.clip, cap, Path(tmp)) for cap in CAPS}
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
    sys.exit(main())
