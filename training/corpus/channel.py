"""Give TTS output the channel history of a real clip, so the channel is no shortcut.

Bona fide clips carry their source's channel (G.722 ADPCM, 8 kHz narrowband, Ogg Vorbis at
22.05/44.1 kHz, or clean 16 kHz PCM). Copy-synthesised spoofs inherit it from their source
utterance; TTS output is clean, so each TTS utterance takes the channel of a bona fide clip drawn
(seeded) from the same split, in the same proportions as the bona fide clips:

* ``g722``: G.722 encode/decode with ffmpeg at 16 kHz;
* ``narrowband8k``: resample to 8 kHz and back (soxr VHQ), as the FSDD clips were;
* ``vorbis<rate>``: resample to the original rate, Ogg Vorbis encode/decode (ffmpeg libvorbis, q 4);
* ``clean``: unchanged.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np

from edge_cm.errors import BackendError

SAMPLE_RATE = 16000


def channel_of(orig_format: str, orig_sample_rate: str | int) -> str:
    """Channel condition name of a bona fide manifest row."""
    fmt = (orig_format or "").lower()
    rate = int(float(orig_sample_rate or SAMPLE_RATE))
    if fmt.startswith("g722"):
        return "g722"
    if fmt.startswith("ogg"):
        return f"vorbis{rate}"
    if rate <= 8000:
        return "narrowband8k"
    return "clean"


def _ffmpeg_roundtrip(x: np.ndarray, rate: int, encode_args: list[str], fmt: str) -> np.ndarray:
    if not shutil.which("ffmpeg"):
        raise BackendError("ffmpeg is not installed", hint="apt-get install ffmpeg")
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    enc = subprocess.run(["ffmpeg", "-v", "error", "-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0",
                          *encode_args, "-f", fmt, "pipe:1"], input=pcm, capture_output=True, timeout=120)
    if enc.returncode != 0:
        raise BackendError(f"ffmpeg encode ({fmt}) failed: {enc.stderr.decode(errors='replace')[:200]}")
    dec = subprocess.run(["ffmpeg", "-v", "error", "-f", fmt, "-i", "pipe:0", "-f", "s16le", "-ac", "1",
                          "-ar", str(rate), "pipe:1"], input=enc.stdout, capture_output=True, timeout=120)
    if dec.returncode != 0:
        raise BackendError(f"ffmpeg decode ({fmt}) failed: {dec.stderr.decode(errors='replace')[:200]}")
    return np.frombuffer(dec.stdout, dtype="<i2").astype(np.float32) / 32768.0


def apply_channel(x: np.ndarray, channel: str) -> np.ndarray:
    """Pass 16 kHz float32 audio through ``channel``; returns 16 kHz float32."""
    import soxr

    if channel == "clean":
        return x
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    scale = 0.7 / peak if peak > 0 else 1.0  # headroom for the 16-bit pipe; level is normalised later
    y = x * scale
    if channel == "g722":
        out = _ffmpeg_roundtrip(y, SAMPLE_RATE, ["-c:a", "g722"], "g722")
    elif channel == "narrowband8k":
        out = soxr.resample(soxr.resample(y, SAMPLE_RATE, 8000, quality="VHQ"), 8000, SAMPLE_RATE, quality="VHQ")
    elif channel.startswith("vorbis"):
        rate = int(channel[len("vorbis"):])
        up = soxr.resample(y, SAMPLE_RATE, rate, quality="VHQ") if rate != SAMPLE_RATE else y
        dec = _ffmpeg_roundtrip(up, rate, ["-c:a", "libvorbis", "-q:a", "4"], "ogg")
        out = soxr.resample(dec, rate, SAMPLE_RATE, quality="VHQ") if rate != SAMPLE_RATE else dec
    else:
        raise ValueError(f"unknown channel {channel!r}")
    return (np.asarray(out, dtype=np.float32) / scale).astype(np.float32)
