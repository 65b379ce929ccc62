"""Lossy codec round trips through ffmpeg: MP3 (libmp3lame), AAC (ffmpeg's aac), Opus (libopus).

Audio goes to ffmpeg as raw float32 at 16 kHz, is encoded to a temporary file in
a container that records the encoder delay (MP3 with a LAME/Xing header, AAC in
MP4 with an edit list, Opus in Ogg with its pre-skip), and is decoded back to
16 kHz mono float32. The decoder drops the encoder delay, so the output starts
aligned with the input; as a guard against ffmpeg builds that do not, any
remaining delay of up to :data:`MAX_DELAY` samples that cross-correlation finds
clearly is trimmed from the front. The output is then cut (codec frame padding
at the end) or zero-padded at the end to the input's length.

Each codec/bitrate pair is a class label ``<codec>_<kbps>k`` (see
:data:`CODEC_LABELS`; ``none`` is the label of audio that went through no codec),
for the codec pseudo-label head of the dual-stream detector.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_cm.errors import DataError, DependencyError

from ._common import SAMPLE_RATE, as_generator, check_audio

CODECS = {
    # name: (ffmpeg encoder, container suffix)
    "mp3": ("libmp3lame", ".mp3"),
    "aac": ("aac", ".m4a"),
    "opus": ("libopus", ".ogg"),
}
BITRATES_KBPS = (16, 32, 64)
NO_CODEC_LABEL = "none"
CODEC_LABELS = (NO_CODEC_LABEL,) + tuple(f"{c}_{b}k" for c in CODECS for b in BITRATES_KBPS)
"""Codec pseudo-labels: ``none`` then mp3/aac/opus at 16, 32 and 64 kbit/s (10 classes)."""

MAX_DELAY = 2112
"""Largest leftover encoder delay (samples) the alignment guard looks for (AAC's 1024 + LAME's 1105 fit)."""


def codec_label(codec: str, bitrate_kbps: int) -> str:
    """The class label of a codec/bitrate pair, e.g. ``mp3_32k``; raises DataError for unknown pairs."""
    label = f"{codec}_{int(bitrate_kbps)}k"
    if label not in CODEC_LABELS[1:]:
        raise DataError(f"unsupported codec setting {codec!r} at {bitrate_kbps} kbit/s",
                        hint=f"use one of {', '.join(CODEC_LABELS[1:])}")
    return label


def parse_codec_label(label: str) -> tuple[str, int]:
    """``"mp3_32k"`` -> ``("mp3", 32)``; raises DataError for labels not in :data:`CODEC_LABELS`."""
    if label not in CODEC_LABELS[1:]:
        raise DataError(f"unknown codec label {label!r}", hint=f"use one of {', '.join(CODEC_LABELS[1:])}")
    codec, rate = label.split("_")
    return codec, int(rate[:-1])


def find_ffmpeg(ffmpeg: str = "ffmpeg") -> str:
    """Path of the ffmpeg executable, or :class:`DependencyError` saying how to install it."""
    found = shutil.which(ffmpeg)
    if found is None:
        raise DependencyError(f"ffmpeg executable {ffmpeg!r} not found on PATH",
                              hint="install it: apt-get install ffmpeg (codec augmentation needs it)")
    return found


def _run(cmd: list[str], stdin: bytes | None, what: str) -> bytes:
    proc = subprocess.run(cmd, input=stdin, capture_output=True)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        if "Unknown encoder" in err or "Encoder not found" in err:
            raise DependencyError(f"ffmpeg lacks the encoder for {what}: {err.splitlines()[-1]}",
                                  hint="install a full ffmpeg build (Debian's ffmpeg has libmp3lame and libopus)")
        raise DataError(f"ffmpeg failed for {what}: {err[-400:]}")
    return proc.stdout


def leftover_delay(reference: np.ndarray, decoded: np.ndarray, max_delay: int = MAX_DELAY) -> int:
    """Delay (samples, 0..max_delay) of ``decoded`` behind ``reference``, or 0 unless clearly found.

    A delay counts only when its normalised correlation is at least 0.5 and 10 %
    above that at delay 0, so noise-like or silent audio is never shifted.
    """
    n = min(reference.size, decoded.size - max_delay)
    if n < 2 * max_delay:
        return 0
    ref = reference[:n].astype(np.float64)
    energy_ref = np.sqrt(np.sum(ref**2))
    if energy_ref == 0:
        return 0
    from scipy.signal import correlate

    seg = decoded[:n + max_delay].astype(np.float64)
    corr = correlate(seg, ref, mode="valid", method="fft")  # corr[k] = sum ref[i] * seg[i+k]
    csum = np.concatenate([[0.0], np.cumsum(seg**2)])
    window_energy = np.sqrt(np.maximum(csum[n:] - csum[:-n], 0.0))  # energy of seg[k:k+n]
    norm = corr / np.maximum(energy_ref * window_energy, 1e-20)
    best = int(np.argmax(norm))
    if best > 0 and norm[best] >= 0.5 and norm[best] > 1.1 * max(norm[0], 0.0):
        return best
    return 0


def codec_round_trip(audio: np.ndarray, codec: str, bitrate_kbps: int, *, ffmpeg: str = "ffmpeg") -> np.ndarray:
    """Encode and decode 16 kHz mono ``audio`` with ``codec`` at ``bitrate_kbps``; same length as the input."""
    audio = check_audio(audio)
    label = codec_label(codec, bitrate_kbps)
    exe = find_ffmpeg(ffmpeg)
    encoder, suffix = CODECS[codec]
    quiet = [exe, "-nostdin", "-hide_banner", "-loglevel", "error"]
    # One thread each way: many data-loader workers run round trips in parallel.
    with tempfile.TemporaryDirectory(prefix="edge-cm-codec-") as tmp:
        encoded = Path(tmp) / f"clip{suffix}"
        _run(quiet + ["-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0",
                      "-c:a", encoder, "-b:a", f"{int(bitrate_kbps)}k", "-threads", "1", str(encoded)],
             np.ascontiguousarray(audio, dtype="<f4").tobytes(), label)
        raw = _run(quiet + ["-threads", "1", "-i", str(encoded),
                            "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-threads", "1", "pipe:1"],
                   None, label)
    decoded = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    decoded = decoded[leftover_delay(audio, decoded):]
    if decoded.size >= audio.size:
        return decoded[:audio.size].copy()
    return np.concatenate([decoded, np.zeros(audio.size - decoded.size, dtype=np.float32)])


@dataclass
class CodecAugment:
    """Round-trip through a codec chosen uniformly from ``choices`` (labels from :data:`CODEC_LABELS`).

    Attributes:
        choices: codec labels to pick from, e.g. ``("mp3_32k", "opus_16k")``; default all nine.
        ffmpeg: ffmpeg executable name or path.
    """

    choices: tuple[str, ...] = CODEC_LABELS[1:]
    ffmpeg: str = "ffmpeg"

    def __post_init__(self) -> None:
        if not self.choices:
            raise DataError("CodecAugment needs at least one codec label", hint=f"use some of {CODEC_LABELS[1:]}")
        for label in self.choices:
            parse_codec_label(label)

    def __call__(self, audio: np.ndarray, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, str]:
        """Return ``(decoded audio, label)`` with ``len(decoded) == len(audio)``."""
        rng = as_generator(rng)
        label = self.choices[int(rng.integers(0, len(self.choices)))]
        codec, rate = parse_codec_label(label)
        return codec_round_trip(audio, codec, rate, ffmpeg=self.ffmpeg), label
