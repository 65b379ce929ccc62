"""A toy corpus for smoke runs and tests: real bona fide clips + real TTS (espeak-ng, flite).

Spoof systems: ``espeak_en`` and ``flite_kal`` in train and dev; ``espeak_f3`` (another
espeak-ng voice) only in dev, as a held-out system. Bona fide clips come from the shared
bona fide manifest's train/dev splits. Seconds to build, not a benchmark corpus: the
developer corpus (``edge-cm-train corpus``) is the real one.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from edge_cm.audio import read_audio
from edge_cm.errors import DependencyError
from training.data.manifest import ManifestRow, write_manifest_csv

SENTENCES = (
    "The weather will turn cold by the end of the week.",
    "Please call me back when you get this message.",
    "Seven old boats were tied up along the river bank.",
    "She opened the window and listened to the rain.",
    "Our train leaves the station at half past nine.",
    "He bought bread, cheese and a bottle of water.",
    "The meeting has been moved to Thursday afternoon.",
    "A small dog ran across the empty playground.",
    "Turn left at the second light and keep going.",
    "My password is written on a card in the drawer.",
    "They painted the kitchen a pale shade of green.",
    "Nobody expected the concert to sell out so fast.",
)
TRAIN_SYSTEMS = ("espeak_en", "flite_kal")
HELD_OUT_SYSTEMS = ("espeak_f3",)


def _synthesise(system: str, text: str, wav: Path, speed: int) -> None:
    if system.startswith("espeak"):
        voice = "en" if system == "espeak_en" else "en+f3"
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text]
    else:
        cmd = ["flite", "-t", text, "-o", str(wav)]
    exe = shutil.which(cmd[0])
    if exe is None:
        raise DependencyError(f"{cmd[0]} not found", hint="apt-get install espeak-ng flite")
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def build_toy_corpus(bonafide_manifest: str | Path, out_dir: str | Path, *, per_split: int = 8,
                     seed: int = 0) -> Path:
    """Write ``out_dir/manifest.csv`` with ``per_split`` bona fide files and ``per_split`` files of
    each spoof system per split (train, dev); returns the manifest path."""
    from training.data.readers import read_bonafide_manifest

    out = Path(out_dir)
    (out / "spoof").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows: list[ManifestRow] = []
    bona = read_bonafide_manifest(bonafide_manifest)
    for split in ("train", "dev"):
        # Clips of 1.5-8 s from several sources, so short (looped) and long (cropped) both occur.
        pool = [r for r in bona if r.split == split and 1.5 <= (r.seconds or 0) <= 8.0]
        pick = rng.choice(len(pool), size=min(per_split, len(pool)), replace=False)
        rows += [pool[int(i)] for i in sorted(pick)]
        systems = TRAIN_SYSTEMS + (HELD_OUT_SYSTEMS if split == "dev" else ())
        with tempfile.TemporaryDirectory() as tmp:
            for system in systems:
                for k in range(per_split):
                    text = SENTENCES[int(rng.integers(len(SENTENCES)))]
                    wav = Path(tmp) / f"{system}_{split}_{k}.wav"
                    _synthesise(system, text, wav, speed=int(rng.integers(140, 190)))
                    flac = out / "spoof" / f"{system}_{split}_{k:03d}.flac"
                    sf.write(flac, read_audio(wav), 16000, subtype="PCM_16")
                    rows.append(ManifestRow(path=str(flac.resolve()), label="spoof", system=system, family="tts",
                                            source="toy", language="en", split=split,
                                            seconds=sf.info(flac).duration))
    return write_manifest_csv(rows, out / "manifest.csv", relative_to=out)
