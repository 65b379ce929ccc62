"""CPU seconds per minute of audio produced, per TTS engine / vocoder / codec of the corpus builder.

Usage::

    python benchmarks/engines.py [--bonafide shared/data/bonafide/manifest.csv] [--clips 3]
                                 [--systems NAME ...] [--out benchmarks/results/engines.md]

Copy-synthesis systems resynthesise ``--clips`` real LibriSpeech clips (dev split, 4-8 s); TTS
systems read three sentences. CPU time counts this process and its child processes (the TTS
engines run as subprocesses) and excludes model loading (one warm-up call first). For copy-synthesis
the table also gives the log-mel distance to the source (nats; lower = closer; Gaussian noise of the
same RMS is the baseline). Writes a markdown table.
"""
from __future__ import annotations

import argparse
import csv
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore")

SENTS = ["The little boat drifted slowly across the calm and silent lake.",
         "Please send me the report by Friday so I can read it over the weekend.",
         "Turn left at the bakery and walk straight on until you reach the bridge."]
LOCAL = {"de": "Meine Schwester wohnt in einem kleinen Haus am Waldrand.",
         "fr": "Nous avons marché le long de la rivière jusqu'au coucher du soleil.",
         "es": "Caminamos junto al río hasta que el sol se escondió.",
         "it": "Abbiamo camminato lungo il fiume fino al tramonto.",
         "nl": "We liepen langs de rivier tot de zon onderging.",
         "cs": "Šli jsme podél řeky, dokud slunce nezapadlo.",
         "ru": "Мы гуляли вдоль реки, пока не зашло солнце.",
         "fi": "Kävelimme joen rantaa pitkin, kunnes aurinko laski.",
         "ca": "Vam caminar al costat del riu fins que es va pondre el sol.",
         "pt": "Caminhámos ao longo do rio até o sol se pôr."}


def cpu_now() -> float:
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def main(argv: list[str] | None = None) -> int:
    from edge_cm.audio import read_audio
    from training.corpus import systems
    from training.corpus.hifigan import log_mel_distance
    from training.corpus.normalise import resample_to_16k

    shared = Path(os.environ.get("EDGE_CM_SHARED", REPO.parent / "shared"))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bonafide", type=Path, default=shared / "data" / "bonafide" / "manifest.csv")
    p.add_argument("--lyra-dir", type=Path, default=shared / "assets" / "lyra")
    p.add_argument("--clips", type=int, default=3)
    p.add_argument("--systems", nargs="+", default=None)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "engines.md")
    args = p.parse_args(argv)

    with open(args.bonafide, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "resemblyzer_librispeech" and r["split"] == "dev"
                and 4.0 <= float(r["seconds"]) <= 8.0][: args.clips]
    clips = [read_audio(args.bonafide.parent / r["path"]) for r in rows]
    reg = systems.registry()
    names = args.systems or list(reg)
    lines = ["# Corpus engines: CPU cost and copy-synthesis fidelity", "",
             f"Measured by `python benchmarks/engines.py` on {os.cpu_count()} cores (shared, loaded machine), "
             f"{len(clips)} LibriSpeech dev clips ({sum(len(c) for c in clips) / 16000:.1f} s) for copy-synthesis, "
             "3 sentences per TTS voice. CPU s per audio minute includes child processes; model loading is "
             "excluded (warm-up call first). Log-mel distance: mean |Δ log-mel| (nats, 80 bands) to the source; "
             "noise baseline = Gaussian noise of the source's RMS.", "",
             "| system | family | CPU s per audio min | real-time factor | log-mel distance | noise baseline |",
             "|---|---|---:|---:|---:|---:|"]
    for name in names:
        s = reg[name]
        reason = s.unavailable(str(args.lyra_dir))
        if reason:
            lines.append(f"| `{name}` | {s.family} | skipped: {reason} | | | |")
            continue
        if s.kind == "copy":
            s.engine.run(clips[0][:16000], 0, str(args.lyra_dir))  # warm-up (model load)
            t0, dist, noise_d, secs = cpu_now(), [], [], 0.0
            outs = []
            for i, x in enumerate(clips):
                outs.append(s.engine.run(x, i, str(args.lyra_dir)))
                secs += len(x) / 16000
            cpu = cpu_now() - t0
            for i, (x, y) in enumerate(zip(clips, outs)):
                dist.append(log_mel_distance(x, y))
                noise = np.random.default_rng(i).standard_normal(len(x)).astype(np.float32) * np.std(x)
                noise_d.append(log_mel_distance(x, noise))
            d, nd = f"{np.mean(dist):.2f}", f"{np.mean(noise_d):.2f}"
        else:
            texts = SENTS if s.language == "en" else [LOCAL.get(s.language, SENTS[0])] * 3
            s.engine.synthesize(texts[0], 0)
            t0, secs = cpu_now(), 0.0
            for i, t in enumerate(texts):
                audio, rate = s.engine.synthesize(t, i)
                secs += len(resample_to_16k(audio, rate)) / 16000
            cpu = cpu_now() - t0
            d = nd = "-"
        per_min = cpu / (secs / 60.0)
        lines.append(f"| `{name}` | {s.family} | {per_min:.2f} | {cpu / secs:.3f} | {d} | {nd} |")
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "engines.py"))
