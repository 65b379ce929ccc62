"""How a device app embeds edge-cm: a voice guard for a smart speaker or door unit.

The app owns the audio loop (here: the microphone through sounddevice, or a file
played in real-time-sized chunks); edge-cm only sees chunks. The guard raises an
alert when ``consecutive`` speech windows in a row are judged spoof, so one odd
window does not trigger it, and clears it after a bona fide window or at the end
of the stream (``finish``), so the next stream starts from a clean state.

    python firmware_demo/voice_guard.py --file call.wav          # simulate with a file
    python firmware_demo/voice_guard.py --device 2               # live microphone

Install it with a threshold chosen where it will listen: record real speech there, run
``edge-cm calibrate room/*.wav`` and pass the printed value as ``--threshold``.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

import edge_cm
from edge_cm.audio import read_audio


@dataclass
class GuardEvent:
    kind: str             # "alert" or "clear"
    time: float           # end of the deciding window (s from the stream's start); the last window's at its end
    score: float | None   # the deciding window's P(spoof); None for the clear at the end of a stream


@dataclass
class VoiceGuard:
    """Debounced spoof alarm on top of :class:`edge_cm.Detector`."""

    detector: edge_cm.Detector
    consecutive: int = 2
    on_event: Callable[[GuardEvent], None] = lambda e: None
    _run: int = 0
    _alerting: bool = False
    _last_end: float = 0.0   # end (s) of the latest window of this stream
    events: list[GuardEvent] = field(default_factory=list)

    def feed(self, chunk: np.ndarray) -> None:
        """Give the guard the next chunk of 16 kHz mono audio (int16 or float32)."""
        for w in self.detector.process(chunk):
            self.decide(w)

    def finish(self) -> None:
        """End the stream: judge its tail, clear a standing alert, and start the next stream afresh."""
        for w in self.detector.flush():
            self.decide(w)
        if self._alerting:  # the spoofed stream is over; an app should not stay alarmed into the next one
            self._emit(GuardEvent("clear", self._last_end, None))
        self._run, self._alerting, self._last_end = 0, False, 0.0

    def decide(self, w: edge_cm.WindowResult) -> None:
        self._last_end = max(self._last_end, w.end)
        if w.score is None:  # silence: no evidence either way
            return
        if w.verdict == "spoof":
            self._run += 1
            if self._run >= self.consecutive and not self._alerting:
                self._alerting = True
                self._emit(GuardEvent("alert", w.end, w.score))
        else:
            self._run = 0
            if self._alerting:
                self._alerting = False
                self._emit(GuardEvent("clear", w.end, w.score))

    def _emit(self, event: GuardEvent) -> None:
        self.events.append(event)
        self.on_event(event)


def print_event(e: GuardEvent) -> None:
    """One line per event: time (s), kind, and the deciding window's score when there is one."""
    score = "" if e.score is None else f"  score {e.score:.3f}"
    print(f"{e.time:7.1f} s  {e.kind.upper():5}{score}")


def file_chunks(path: Path, chunk_seconds: float = 0.1) -> Iterable[np.ndarray]:
    audio = read_audio(path)
    step = int(chunk_seconds * 16000)
    for i in range(0, audio.size, step):
        yield audio[i:i + step]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--file", type=Path, help="play this file instead of the microphone")
    ap.add_argument("--device", default=None, help="microphone (see edge-cm listen --list-devices)")
    ap.add_argument("--consecutive", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=None, help="from edge-cm calibrate (default: the bundle's)")
    args = ap.parse_args(argv)
    try:
        detector = edge_cm.load(args.bundle, threshold=args.threshold)
        guard = VoiceGuard(detector, consecutive=args.consecutive, on_event=print_event)
        if args.file:
            for chunk in file_chunks(args.file):
                guard.feed(chunk)
        else:
            from edge_cm.mic import open_microphone
            from edge_cm.audio import StreamingResampler

            stream = open_microphone(args.device, detector.sample_rate)
            resampler = StreamingResampler(int(stream.samplerate), detector.sample_rate)
            stream.start()
            try:
                while True:
                    data, _ = stream.read(int(stream.samplerate * 0.1))
                    guard.feed(resampler.feed(data[:, 0]))
            except KeyboardInterrupt:
                pass
            finally:
                stream.stop()
                stream.close()
            guard.feed(resampler.flush())  # the resampler holds back a few ms of input as filter context
        guard.finish()
    except edge_cm.EdgeCMError as exc:
        print(f"voice_guard: error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(guard.events)} event(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
