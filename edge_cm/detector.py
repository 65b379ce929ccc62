"""The streaming detector: audio -> 4-s windows -> features -> backend -> score -> verdict.

``Detector.process(chunk)`` accepts chunks of any length and returns the windows
they complete. Feature frames are computed once as samples arrive and reused by
overlapping windows, so a new hop costs only its new frames plus one inference.
Memory is bounded by one window of samples and one window of frames.
"""
from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .audio import OVERSHOOT_PEAK_LIMIT, TARGET_SAMPLE_RATE, check_finite, check_peak, iter_audio_blocks, prepare
from .backends import open_backend
from .backends.base import Backend
from .bundle import Bundle, default_bundle_path, load_bundle
from .errors import EdgeCMError, InvalidSamplesError
from .features import FrameAnalyzer, compute_features, normalize
from .window import SpeechGate, align_hop, loop_to_length, min_audio_samples, window_starts

SPOOF, BONAFIDE, NO_SPEECH = "spoof", "bonafide", "no_speech"


@dataclass(frozen=True)
class WindowResult:
    """One scored window. Times in seconds from the start of the stream."""

    index: int
    start: float
    end: float
    score: float | None
    """Calibrated spoof probability (higher = more likely spoof); None when the window holds no speech."""
    verdict: str
    """``spoof``, ``bonafide`` or ``no_speech``."""
    speech_fraction: float
    looped: bool = False
    """True when the audio was shorter than a window and was repeated to fill it."""
    logits: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClipResult:
    """The windows of one file or stream and the clip verdict (mean score of speech windows vs threshold)."""

    source: str
    duration: float
    windows: list[WindowResult] = field(default_factory=list)
    threshold: float = 0.5
    untrained: bool = False

    @property
    def speech_windows(self) -> list[WindowResult]:
        return [w for w in self.windows if w.score is not None]

    @property
    def score(self) -> float | None:
        scored = self.speech_windows
        return None if not scored else float(np.mean([w.score for w in scored]))

    @property
    def verdict(self) -> str:
        s = self.score
        if s is None:
            return NO_SPEECH
        return SPOOF if s >= self.threshold else BONAFIDE

    def to_dict(self) -> dict:
        return {"source": self.source, "duration": self.duration, "score": self.score, "verdict": self.verdict,
                "threshold": self.threshold, "untrained": self.untrained,
                "windows": [w.to_dict() for w in self.windows]}


def spoof_log_odds(logits: np.ndarray) -> float:
    """logsumexp(logits[1:]) - logits[0]: log-odds of "any spoof class" against bona fide."""
    rest = logits[1:].astype(np.float64)
    m = rest.max()
    return float(m + math.log(np.exp(rest - m).sum()) - float(logits[0]))


class Detector:
    """Streaming spoof detector over fixed windows. Create with :func:`edge_cm.load`."""

    def __init__(self, bundle: Bundle, backend: Backend, hop_seconds: float | None = None,
                 gate: SpeechGate | None = None, threshold: float | None = None):
        meta = bundle.meta
        if meta.sample_rate != TARGET_SAMPLE_RATE:
            raise EdgeCMError(f"bundle sample rate {meta.sample_rate} Hz is not supported", path=bundle.path)
        self.bundle = bundle
        self.backend = backend
        self.spec = meta.feature_spec
        self.gate = gate or SpeechGate()
        self._analyzer = FrameAnalyzer(self.spec)
        self._threshold = float(meta.threshold) if threshold is None else check_threshold(threshold)
        self._window = int(meta.window_samples)
        hop_s = check_hop(meta.default_hop_seconds if hop_seconds is None else hop_seconds,
                          self._window / meta.sample_rate)
        self._hop = align_hop(int(round(hop_s * meta.sample_rate)), self.spec.frame_hop)
        self._frames_per_window = self.spec.n_frames(self._window)
        self.reset()

    # -- read-only facts (Picovoice style) ------------------------------------------
    @property
    def sample_rate(self) -> int:
        """Samples per second the detector expects (Hz)."""
        return int(self.bundle.meta.sample_rate)

    @property
    def window_samples(self) -> int:
        """Samples in one scored window (64,000 = 4 s at 16 kHz)."""
        return self._window

    @property
    def hop_samples(self) -> int:
        """Samples between window starts (rounded to whole feature frames)."""
        return self._hop

    @property
    def threshold(self) -> float:
        """Score (P(spoof)) at or above which a window or clip is judged spoof: the bundle's, chosen on
        its dev set, unless ``load(threshold=...)`` set one (see ``edge-cm calibrate``)."""
        return self._threshold

    @property
    def untrained(self) -> bool:
        return bool(self.bundle.meta.untrained)

    # -- streaming --------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the stream: the next sample is time 0."""
        self._total = 0                     # samples received
        self._next_index = 0                # index of the next window
        self._next_end = self._window       # stream position at which that window completes
        self._last_end = 0                  # end of the last emitted window
        # The last window of samples lives at _ring[_fill - window:_fill]; twice the window, so the
        # occasional shift to the front is amortised over a window of appends.
        self._ring = np.zeros(2 * self._window, dtype=np.float32)
        self._fill = self._window
        self._pending = np.zeros(0, dtype=np.float32)           # samples from the next frame's start on
        self._columns: deque[np.ndarray] = deque(maxlen=max(self._frames_per_window, 1))

    def process(self, chunk: np.ndarray) -> list[WindowResult]:
        """Feed a chunk (int16 PCM or float32 in [-1, 1], mono, at ``sample_rate``); return completed windows.

        Float chunks may overshoot full scale a little, as resampler output does, up to
        ``edge_cm.audio.OVERSHOOT_PEAK_LIMIT`` (2.0); louder ones raise :class:`InvalidSamplesError`.
        """
        return self._process(self._as_samples(chunk))

    def _process(self, x: np.ndarray) -> list[WindowResult]:
        """``process`` for samples that are already float32, mono and checked."""
        results: list[WindowResult] = []
        pos = 0
        while pos < x.size:
            take = min(x.size - pos, self._next_end - self._total)
            self._ingest(x[pos:pos + take])
            pos += take
            if self._total == self._next_end:
                results.append(self._emit_regular())
        return results

    def flush(self) -> list[WindowResult]:
        """End the stream: score the tail (or the looped short stream) and reset.

        A stream shorter than ``MIN_AUDIO_SECONDS`` (window.py) gives one ``no_speech`` window.
        """
        results: list[WindowResult] = []
        n = self._total
        if 0 < n < min_audio_samples(self.sample_rate):
            results.append(self._too_short(self._recent[-n:], self._next_index))
        elif 0 < n < self._window:
            audio = self._recent[-n:]
            results.append(self._score(loop_to_length(audio, self._window), 0, n, looped=True))
        elif n > self._last_end and n >= self._window:
            results.append(self._score(self._recent.copy(), n - self._window, n))
        self.reset()
        return results

    def process_stream(self, chunks: Iterable[np.ndarray]) -> Iterable[WindowResult]:
        """Yield window results from an iterable of chunks, flushing at the end."""
        for chunk in chunks:
            yield from self.process(chunk)
        yield from self.flush()

    # -- whole inputs --------------------------------------------------------------------
    def detect_file(self, path: str | Path, block_seconds: float = 30.0) -> ClipResult:
        """Score a file window by window, streaming it from disk (bounded memory for any length).

        A stream in progress on this detector (``process``) is left as it was.
        """
        # A shallow copy shares the model and front end; reset() gives it its own stream state.
        worker = copy.copy(self)
        worker.reset()
        windows: list[WindowResult] = []
        total = 0
        for block in iter_audio_blocks(path, block_seconds=block_seconds, target_rate=self.sample_rate):
            total += block.size
            windows.extend(worker._process(block))  # checked by iter_audio_blocks against the file's own limit
        windows.extend(worker.flush())
        return ClipResult(source=str(path), duration=total / self.sample_rate, windows=windows,
                          threshold=self.threshold, untrained=self.untrained)

    def detect_array(self, samples: np.ndarray, sample_rate: int, source: str = "<array>") -> ClipResult:
        """Score an in-memory recording offline: every window's features computed from scratch."""
        audio = prepare(samples, sample_rate, source=source, target_rate=self.sample_rate)
        n = audio.size
        windows = []
        for start in window_starts(n, self._window, self._hop):
            if n < min_audio_samples(self.sample_rate):
                windows.append(self._too_short(audio, len(windows)))
            elif n < self._window:
                windows.append(self._score(loop_to_length(audio, self._window), 0, n, looped=True,
                                           index=len(windows)))
            else:
                windows.append(self._score(audio[start:start + self._window], start, start + self._window,
                                           index=len(windows)))
        return ClipResult(source=source, duration=n / self.sample_rate, windows=windows,
                          threshold=self.threshold, untrained=self.untrained)

    # -- internals ---------------------------------------------------------------------------
    def _as_samples(self, chunk: np.ndarray) -> np.ndarray:
        arr = np.asarray(chunk)
        if arr.ndim != 1:
            raise InvalidSamplesError(f"chunk must be 1-D mono samples, got shape {arr.shape}",
                                      hint="mix to mono first (edge_cm.audio.to_mono)")
        if arr.dtype == np.int16:
            return arr.astype(np.float32) / np.float32(32768.0)
        if arr.dtype == np.float32:
            check_finite(arr, source="<chunk>")
            check_peak(arr, source="<chunk>", limit=OVERSHOOT_PEAK_LIMIT)
            return arr
        raise InvalidSamplesError(f"chunk dtype {arr.dtype} is not supported",
                                  hint="pass int16 PCM or float32 samples in [-1, 1]")

    def _too_short(self, audio: np.ndarray, index: int) -> WindowResult:
        """The one window of audio shorter than ``MIN_AUDIO_SECONDS``: ``no_speech``, not scored."""
        return WindowResult(index, 0.0, audio.size / self.sample_rate, None, NO_SPEECH,
                            self.gate.speech_fraction(audio))

    def _ingest(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        if x.size >= self._window:
            self._ring[:self._window] = x[-self._window:]
            self._fill = self._window
        else:
            if self._fill + x.size > self._ring.size:
                self._ring[:self._window] = self._ring[self._fill - self._window:self._fill]
                self._fill = self._window
            self._ring[self._fill:self._fill + x.size] = x
            self._fill += x.size
        self._total += x.size
        if self.spec.kind == "waveform":
            return
        self._pending = np.concatenate([self._pending, x])
        cols = self._analyzer.frames(self._pending)
        if cols.shape[1]:
            self._columns.extend(cols.T)
            self._pending = self._pending[cols.shape[1] * self.spec.hop_length:]

    @property
    def _recent(self) -> np.ndarray:
        """The last ``window_samples`` samples received (zeros before the stream starts)."""
        return self._ring[self._fill - self._window:self._fill]

    def _emit_regular(self) -> WindowResult:
        start = self._next_end - self._window
        if self.spec.kind == "waveform":
            feats = compute_features(self.spec, self._recent, self._analyzer)
        else:
            feats = normalize(self.spec, np.stack(self._columns, axis=1), self._recent)
        result = self._score(self._recent, start, self._next_end, features=feats)
        self._next_end += self._hop
        return result

    def _score(self, window: np.ndarray, start: int, end: int, *, looped: bool = False,
               features: np.ndarray | None = None, index: int | None = None) -> WindowResult:
        sr = self.sample_rate
        idx = self._next_index if index is None else index
        if index is None:
            self._next_index += 1
            self._last_end = end
        fraction = self.gate.speech_fraction(window)
        if not self.gate.has_speech(fraction):
            return WindowResult(idx, start / sr, end / sr, None, NO_SPEECH, fraction, looped)
        if features is None:
            features = compute_features(self.spec, window, self._analyzer)
        logits = self.backend.run(features)
        meta = self.bundle.meta
        z = meta.score_scale * spoof_log_odds(logits) + meta.score_bias
        score = float(1.0 / (1.0 + math.exp(-z))) if z > -700 else 0.0
        verdict = SPOOF if score >= self._threshold else BONAFIDE
        return WindowResult(idx, start / sr, end / sr, score, verdict, fraction, looped,
                            tuple(float(v) for v in logits))


def check_hop(hop_seconds: float, window_seconds: float) -> float:
    """``hop_seconds`` as a float in (0, ``window_seconds``], or an :class:`EdgeCMError`.

    A hop longer than the window would leave the audio between windows unscored.
    """
    try:
        value = float(hop_seconds)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 < value <= window_seconds:  # also refuses NaN; inf is above any window
        raise EdgeCMError(f"hop must be seconds in (0, {window_seconds:g}] (the window length), got {hop_seconds!r}",
                          hint="a longer hop would skip audio between windows; e.g. --hop 2.0")
    return value


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float in (0, 1], or an :class:`EdgeCMError` (scores are probabilities)."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 < value <= 1.0:
        raise EdgeCMError(f"threshold must be a spoof probability in (0, 1], got {threshold!r}",
                          hint="edge-cm calibrate chooses one from real speech recorded on your device")
    return value


def load(bundle: str | Path | None = None, backend: str = "auto", threads: int = 1,
         precision: str | None = None, hop_seconds: float | None = None,
         gate: SpeechGate | None = None, threshold: float | None = None) -> Detector:
    """Create a :class:`Detector`.

    Args:
        bundle: a bundle folder; None for the default model shipped with edge-cm.
        backend: ``auto``, ``onnx`` or ``tflite``.
        threads: intra-op threads of the backend (1 keeps latency predictable on devices).
        precision: ``float32`` or ``int8``; None lets ``auto`` prefer float32.
        hop_seconds: seconds between window starts; None = the bundle's default (2 s).
        threshold: P(spoof) at or above which a verdict is spoof; None = the bundle's (chosen on its
            dev set). ``edge-cm calibrate`` picks one from real speech recorded where the device listens.
    """
    path = default_bundle_path() if bundle is None else Path(bundle)
    b = load_bundle(path)
    return Detector(b, open_backend(b, backend=backend, threads=threads, precision=precision),
                    hop_seconds=hop_seconds, gate=gate, threshold=threshold)
