"""``edge-cm demo``: the bundled model over the bundled clips, streamed in 100-ms chunks."""
from __future__ import annotations

import csv
import sys
from importlib.resources import files
from pathlib import Path

from .audio import read_audio

CHUNK_SECONDS = 0.1


def demo_clips() -> list[dict]:
    """Rows of the bundled ``clips.csv`` (file, label, origin, license), with absolute paths."""
    folder = Path(str(files("edge_cm") / "assets" / "demo"))
    with open(folder / "clips.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["path"] = str(folder / row["file"])
    return rows


def run_demo(bundle=None, backend: str = "auto", out=None) -> int:
    from .detector import load

    out = out or sys.stdout
    detector = load(bundle, backend=backend)
    chunk = int(CHUNK_SECONDS * detector.sample_rate)
    if detector.untrained:
        print("UNTRAINED MODEL: scores are meaningless (placeholder bundle)", file=out)
    print(f"edge-cm demo: model '{detector.bundle.meta.name}' on {detector.backend.name}/{detector.backend.precision}, "
          f"streaming {CHUNK_SECONDS * 1000:.0f}-ms chunks; threshold {detector.threshold:.3f}", file=out)
    print(f"{'clip':<28} {'truth':<9} {'windows':>7} {'score':>6}  verdict", file=out)
    for clip in demo_clips():
        audio = read_audio(clip["path"])
        windows = []
        for i in range(0, audio.size, chunk):
            windows += detector.process(audio[i:i + chunk])
        windows += detector.flush()
        scored = [w.score for w in windows if w.score is not None]
        score = sum(scored) / len(scored) if scored else None
        verdict = "no_speech" if score is None else ("spoof" if score >= detector.threshold else "bonafide")
        shown = "  -   " if score is None else f"{score:6.3f}"
        mark = "" if verdict == "no_speech" else ("  ok" if verdict == clip["label"] else "  MISS")
        print(f"{clip['file']:<28} {clip['label']:<9} {len(windows):>7} {shown}  {verdict}{mark}", file=out)
    print("clip sources and licences: edge_cm/assets/demo/ATTRIBUTION.md", file=out)
    return 0
