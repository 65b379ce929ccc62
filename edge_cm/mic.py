"""Live microphone scoring with sounddevice (PortAudio).

The stream is opened at 16 kHz when the device supports it, else at the device's
own rate and resampled on the fly. Input overflows (samples the sound card
dropped because we were late) are counted and reported; listening goes on.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Protocol, TextIO

import numpy as np

from .audio import StreamingResampler, to_float32, to_mono
from .errors import DeviceError, EdgeCMError

BLOCK_SECONDS = 0.1


class InputStream(Protocol):
    """What ``listen`` needs of a stream: sounddevice.InputStream satisfies it."""

    samplerate: float

    def read(self, frames: int) -> tuple[np.ndarray, bool]: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


def _sounddevice():
    try:
        import sounddevice as sd
    except ImportError:
        raise DeviceError("sounddevice is not installed", hint="pip install 'edge-cm[mic]'") from None
    except OSError as exc:  # raised at import when the PortAudio library is missing
        raise DeviceError(f"PortAudio is not available ({exc})",
                          hint="install it: sudo apt-get install libportaudio2 (Debian/Ubuntu)") from None
    return sd


def list_devices() -> str:
    """The input devices PortAudio sees, one per line."""
    sd = _sounddevice()
    lines = []
    for i, dev in enumerate(sd.query_devices()):
        if dev["max_input_channels"] > 0:
            lines.append(f"{i:3d}  {dev['name']}  ({dev['max_input_channels']} ch, {dev['default_samplerate']:.0f} Hz)")
    return "\n".join(lines) if lines else "no input devices found"


def open_microphone(device: str | int | None, sample_rate: int) -> InputStream:
    """Open a mono float32 input stream, at ``sample_rate`` if the device allows, else its default rate."""
    sd = _sounddevice()
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    try:
        info = sd.query_devices(device, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        raise DeviceError(f"no usable input device ({exc})",
                          hint="plug in a microphone or pick one from: edge-cm listen --list-devices") from None
    rate = sample_rate
    try:
        sd.check_input_settings(device=device, samplerate=sample_rate, channels=1, dtype="float32")
    except Exception:
        rate = int(info["default_samplerate"])
    try:
        return sd.InputStream(device=device, samplerate=rate, channels=1, dtype="float32",
                              blocksize=int(rate * BLOCK_SECONDS))
    except sd.PortAudioError as exc:
        raise DeviceError(f"cannot open input device {info['name']!r} ({exc})",
                          hint="close other programs using it, or pick another with --device") from None


def listen(bundle=None, device=None, backend: str = "auto", threads: int = 1, hop_seconds: float | None = None,
           seconds: float | None = None, stream: InputStream | None = None, out: TextIO | None = None,
           threshold: float | None = None) -> int:
    """Score the microphone window by window, printing one line per window; returns an exit code.

    ``stream`` injects any object with ``read(frames) -> (array, overflowed)`` instead of a
    sound card (tests, or a custom audio source); ``seconds`` stops after that much audio;
    ``threshold`` replaces the bundle's (see ``edge-cm calibrate``).
    """
    from .detector import load

    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):  # before opening any device
        raise EdgeCMError(f"seconds to listen must be a finite number above 0, got {seconds!r}",
                          hint="e.g. --seconds 30, or leave it out to listen until Ctrl-C")
    out = out or sys.stdout
    detector = load(bundle, backend=backend, threads=threads, hop_seconds=hop_seconds, threshold=threshold)
    stream = stream or open_microphone(device, detector.sample_rate)
    rate = int(stream.samplerate)
    resampler = StreamingResampler(rate, detector.sample_rate)
    block = max(1, int(rate * BLOCK_SECONDS))
    limit = None if seconds is None else int(seconds * rate)
    received = overflows = 0
    peak_level = -120.0
    if detector.untrained:
        print("UNTRAINED MODEL: scores are meaningless (placeholder bundle)", file=out)
    print(f"listening at {rate} Hz (model {detector.sample_rate} Hz, "
          f"window {detector.window_samples / detector.sample_rate:.0f} s, "
          f"hop {detector.hop_samples / detector.sample_rate:.2f} s); Ctrl-C stops", file=out)
    print(f"{'time':>9}  {'score':>6}  {'verdict':<9}  {'level':>9}", file=out)

    def report(results) -> None:
        nonlocal peak_level
        for w in results:
            score = "   -  " if w.score is None else f"{w.score:6.3f}"
            print(f"{w.end:8.1f}s  {score}  {w.verdict:<9}  {peak_level:6.1f} dBFS"
                  + (f"  overflows {overflows}" if overflows else ""), file=out, flush=True)
            peak_level = -120.0

    stream.start()
    started = time.monotonic()
    try:
        while limit is None or received < limit:
            n = block if limit is None else min(block, limit - received)
            data, overflowed = stream.read(n)
            if overflowed:
                overflows += 1
            mono = to_mono(to_float32(np.asarray(data)))
            received += mono.size
            if mono.size:
                rms = float(np.sqrt(np.mean(mono.astype(np.float64) ** 2)))
                peak_level = max(peak_level, 20 * np.log10(max(rms, 1e-6)))
            report(detector.process(resampler.feed(mono)))
    except KeyboardInterrupt:
        pass
    finally:
        stream.stop()
        stream.close()
    report(detector.process(resampler.flush()))
    report(detector.flush())
    print(f"stopped after {received / rate:.1f} s of audio ({time.monotonic() - started:.1f} s wall); "
          f"input overflows: {overflows}", file=out)
    return 0
