"""Copy-synthesis vocoders: analyse a real 16 kHz utterance and resynthesise it.

Same text, speaker and channel as the bona fide source; only the waveform generator differs.
Every function takes float32 samples at 16 kHz and a seed and returns float32 samples at 16 kHz of
the same length (the output is padded or cut to the input length; the analysis is frame-aligned so
nothing is time-stretched).

* :func:`world` — WORLD (pyworld): F0 by DIO+StoneMask, Harvest or SWIPE' (pysptk), CheapTrick
  envelope, D4C aperiodicity, WORLD synthesis. 5 ms frames. Optionally the envelope and
  aperiodicity pass through WORLD's coded form (a low-order mel-cepstrum and band aperiodicities),
  the parameters statistical TTS and voice-conversion systems model.
* :func:`mlsa` — mel-cepstrum (pysptk ``mcep``, order 24, alpha 0.42) and the MLSA filter driven by a
  pulse train (voiced) / Gaussian noise (unvoiced) from SWIPE' or WORLD F0. 5 ms hop.
* :func:`griffin_lim` — magnitude STFT (512-point, 128 hop, Hann) and Griffin-Lim phase recovery
  from a seeded random phase.
* :func:`mel_griffin_lim` — the magnitude squeezed through a mel filterbank (80 bands, 1024-point
  FFT, 256 hop, as the mel spectrograms neural vocoders are conditioned on), expanded back by the
  filterbank's pseudo-inverse and rendered by Griffin-Lim: the fine spectral detail a mel
  bottleneck loses is lost here too.
* :func:`lpc` — LPC (order 18, 25 ms Hann frames, 10 ms hop) and an all-pole filter driven by a
  pulse train at the WORLD F0 or white noise, scaled by the frame's prediction-error power; the
  residual is discarded, so the waveform is truly resynthesised.
"""
from __future__ import annotations

import numpy as np

from edge_cm.errors import DataError

SAMPLE_RATE = 16000


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    if len(y) >= n:
        return y[:n]
    return np.pad(y, (0, n - len(y)))


def swipe_f0(x64: np.ndarray, hop: int = 80) -> np.ndarray:
    """F0 (Hz, 0 = unvoiced) by SWIPE' (pysptk), one value per ``hop`` samples."""
    import pysptk

    return pysptk.swipe(x64 * 32768.0, fs=SAMPLE_RATE, hopsize=hop, min=60.0, max=500.0, otype="f0")


def world_f0(x64: np.ndarray, method: str = "dio", frame_period_ms: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """F0 (Hz, 0 = unvoiced) and frame times (s) by WORLD DIO+StoneMask, Harvest or SWIPE'."""
    import pyworld

    if method == "swipe":
        n_frames = int(len(x64) / SAMPLE_RATE * 1000.0 / frame_period_ms) + 1  # WORLD's frame count
        f0 = swipe_f0(x64, int(round(SAMPLE_RATE * frame_period_ms / 1000.0)))
        return _fit_length(f0, n_frames).astype(np.float64), np.arange(n_frames) * frame_period_ms / 1000.0
    if method == "harvest":
        return pyworld.harvest(x64, SAMPLE_RATE, f0_floor=60.0, f0_ceil=500.0, frame_period=frame_period_ms)
    if method != "dio":
        raise ValueError(f"unknown F0 method {method!r}; use 'dio', 'harvest' or 'swipe'")
    f0, t = pyworld.dio(x64, SAMPLE_RATE, f0_floor=60.0, f0_ceil=500.0, frame_period=frame_period_ms)
    return pyworld.stonemask(x64, f0, t, SAMPLE_RATE), t


def world(x: np.ndarray, seed: int = 0, f0_method: str = "harvest", coded_dims: int = 0) -> np.ndarray:
    """WORLD analysis-synthesis (deterministic; ``seed`` unused, kept for a uniform interface).

    ``coded_dims`` > 0 codes the envelope into that many mel-cepstral coefficients and the
    aperiodicity into WORLD's bands before synthesis, smoothing both as a parametric model would.
    """
    import pyworld

    x64 = np.asarray(x, dtype=np.float64)
    f0, t = world_f0(x64, f0_method)
    sp = pyworld.cheaptrick(x64, f0, t, SAMPLE_RATE)
    ap = pyworld.d4c(x64, f0, t, SAMPLE_RATE)
    if coded_dims > 0:
        fft_size = pyworld.get_cheaptrick_fft_size(SAMPLE_RATE)
        sp = pyworld.decode_spectral_envelope(pyworld.code_spectral_envelope(sp, SAMPLE_RATE, coded_dims),
                                              SAMPLE_RATE, fft_size)
        ap = pyworld.decode_aperiodicity(pyworld.code_aperiodicity(ap, SAMPLE_RATE), SAMPLE_RATE, fft_size)
    y = pyworld.synthesize(f0, sp, ap, SAMPLE_RATE, frame_period=5.0)
    return _fit_length(y, len(x))


MLSA_RETRY_BOUNDS = (9.0, 7.0, 5.5, 4.5)
"""Bounds (nepers) on sum |c_k| tried in turn when the MLSA filter diverges; 4.5 is the range of
its 4th-order Pade approximation, within which it is always stable."""


class UnstableSynthesis(DataError):
    """A vocoder's filter diverged on one source recording; the builder skips that file."""


def _mlsa_synthesis(source: np.ndarray, mc: np.ndarray, order: int, alpha: float, hop: int) -> np.ndarray:
    import warnings

    import pysptk
    from pysptk.synthesis import MLSADF, Synthesizer

    b = pysptk.mc2b(mc, alpha)
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # divergence is detected by the caller
        return np.asarray(Synthesizer(MLSADF(order=order, alpha=alpha), hop).synthesis(source, b), dtype=np.float64)


def _diverged(y: np.ndarray) -> bool:
    # A diverging recursive filter grows without bound; a sane output (arbitrary gain from c0)
    # stays many orders of magnitude below 1e12.
    return not np.all(np.isfinite(y)) or float(np.max(np.abs(y), initial=0.0)) > 1e12


def mlsa(x: np.ndarray, seed: int = 0, f0_method: str = "swipe", order: int = 24, alpha: float = 0.42) -> np.ndarray:
    """Mel-cepstral analysis + MLSA filter synthesis with pulse/noise excitation."""
    import pysptk

    hop = 80  # 5 ms
    frame_len = 512
    x64 = np.asarray(x, dtype=np.float64)
    n_frames = len(x64) // hop + 1
    padded = np.pad(x64, (frame_len // 2, frame_len // 2 + hop))
    idx = np.arange(frame_len)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = padded[idx] * pysptk.blackman(frame_len)
    # a tiny seeded dither keeps mcep's iterations stable on digital silence
    rng = np.random.default_rng(seed)
    frames = frames + 1e-6 * rng.standard_normal(frames.shape)
    mc = pysptk.mcep(frames, order=order, alpha=alpha, maxiter=50, etype=1, eps=1e-8, min_det=0.0)
    if f0_method == "swipe":
        f0 = swipe_f0(x64, hop)
    else:
        f0, _ = world_f0(x64, "dio")
    f0 = _fit_length(f0, n_frames).astype(np.float64)
    pitch = np.where(f0 > 0, SAMPLE_RATE / np.maximum(f0, 1e-3), 0.0)
    source = pysptk.excite(pitch, hopsize=hop, gaussian=True, seed=int(seed) % (2**31 - 1) + 1)
    y = _mlsa_synthesis(source, mc, order, alpha, hop)
    if _diverged(y):
        # The MLSA filter's Pade approximation is stable only while the log-amplitude response
        # stays within its range (about 4.5 nepers at pd=4); a few loud, steep frames can exceed
        # it. Sum |c_k| (k >= 1) bounds that response but loosely, so the frames above a bound
        # are shrunk to it, from a generous bound down to the provably stable one.
        bound = np.abs(mc[:, 1:]).sum(axis=1)
        for limit in MLSA_RETRY_BOUNDS:
            shrink = np.minimum(1.0, limit / np.maximum(bound, 1e-12))
            y = _mlsa_synthesis(source, np.concatenate([mc[:, :1], mc[:, 1:] * shrink[:, None]], axis=1),
                                order, alpha, hop)
            if not _diverged(y):
                break
    if _diverged(y):
        raise UnstableSynthesis("MLSA filter diverged on this source even with its envelope limited")
    # mcep of 512-sample windowed frames carries the window's energy in c0, so the filter's
    # absolute gain is arbitrary; match the source level (the corpus normaliser sets it anyway)
    y = _fit_length(y, len(x)).astype(np.float64)
    y *= np.sqrt(np.mean(x64**2) / max(np.mean(y**2), 1e-20))
    return y.astype(np.float32)


def _stft(x: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    pad = n_fft // 2
    xp = np.pad(x, (pad, pad + hop), mode="reflect" if len(x) > pad else "constant")
    n_frames = 1 + (len(xp) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    return np.fft.rfft(xp[idx] * window, axis=1)


def _istft(spec: np.ndarray, n_fft: int, hop: int, window: np.ndarray, length: int) -> np.ndarray:
    frames = np.fft.irfft(spec, n=n_fft, axis=1) * window
    n_frames = spec.shape[0]
    total = n_fft + hop * (n_frames - 1)
    out = np.zeros(total)
    norm = np.zeros(total)
    for i in range(n_frames):
        out[i * hop: i * hop + n_fft] += frames[i]
        norm[i * hop: i * hop + n_fft] += window**2
    out /= np.maximum(norm, 1e-8)
    pad = n_fft // 2
    return out[pad: pad + length]


def _griffin_lim_render(mag: np.ndarray, seed: int, iterations: int, n_fft: int, hop: int,
                        window: np.ndarray, length: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    phase = np.exp(2j * np.pi * rng.random(mag.shape))
    y = _istft(mag * phase, n_fft, hop, window, length)
    for _ in range(iterations):
        spec = _stft(y, n_fft, hop, window)
        spec = spec[: mag.shape[0]]
        y = _istft(mag * np.exp(1j * np.angle(spec)), n_fft, hop, window, length)
    return y


def griffin_lim(x: np.ndarray, seed: int = 0, iterations: int = 32, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Griffin-Lim reconstruction from the magnitude STFT, random initial phase from ``seed``."""
    x64 = np.asarray(x, dtype=np.float64)
    window = np.hanning(n_fft + 1)[:-1]
    mag = np.abs(_stft(x64, n_fft, hop, window))
    return _fit_length(_griffin_lim_render(mag, seed, iterations, n_fft, hop, window, len(x64)), len(x))


def mel_griffin_lim(x: np.ndarray, seed: int = 0, n_mels: int = 80, n_fft: int = 1024, hop: int = 256,
                    iterations: int = 32) -> np.ndarray:
    """Griffin-Lim from a mel-smoothed magnitude (``n_mels`` bands, 0-8 kHz); seeded random phase."""
    from edge_cm.features import FeatureSpec, mel_filterbank

    x64 = np.asarray(x, dtype=np.float64)
    window = np.hanning(n_fft + 1)[:-1]
    mag = np.abs(_stft(x64, n_fft, hop, window))
    fb = mel_filterbank(FeatureSpec("log_mel", win_length=n_fft, hop_length=hop, n_fft=n_fft, n_mels=n_mels))
    smooth = mel_smoothed(mag, fb)
    return _fit_length(_griffin_lim_render(smooth, seed, iterations, n_fft, hop, window, len(x64)), len(x))


def mel_smoothed(mag: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Magnitudes (frames, bins) through the filterbank ``fb`` (bands, bins) and back to bins."""
    # the pseudo-inverse spreads each band's value back over its bins (the least-norm magnitude with
    # the same mel spectrum); its negative lobes are clipped, as no magnitude can be negative
    return np.maximum((mag @ fb.T) @ np.linalg.pinv(fb).T, 0.0)


def lpc_coefficients(frame: np.ndarray, order: int) -> tuple[np.ndarray, float]:
    """All-pole coefficients a (a[0] = 1) and prediction-error power of one windowed frame."""
    from scipy.linalg import solve_toeplitz

    r = np.correlate(frame, frame, mode="full")[len(frame) - 1: len(frame) + order]
    if r[0] <= 1e-12:
        return np.concatenate([[1.0], np.zeros(order)]), 0.0
    r = r.copy()
    r[0] *= 1.0 + 1e-6  # white-noise correction keeps the system well conditioned
    a = solve_toeplitz(r[:order], -r[1: order + 1])
    err = float(r[0] + np.dot(a, r[1: order + 1]))
    return np.concatenate([[1.0], a]), max(err, 0.0)


def lpc(x: np.ndarray, seed: int = 0, order: int = 18, frame_ms: float = 25.0, hop_ms: float = 10.0) -> np.ndarray:
    """LPC resynthesis with a pulse/noise source (no residual): deterministic for ``seed``."""
    from scipy.signal import lfilter

    x64 = np.asarray(x, dtype=np.float64)
    hop = int(SAMPLE_RATE * hop_ms / 1000)
    flen = int(SAMPLE_RATE * frame_ms / 1000)
    f0, t = world_f0(x64, "dio", frame_period_ms=hop_ms)
    # pre-emphasis flattens the spectral tilt so order 18 models formants, not the tilt
    pre = lfilter([1.0, -0.97], [1.0], x64)
    window = np.hanning(flen)
    n_frames = int(np.ceil(len(x64) / hop))
    padded = np.pad(pre, (flen // 2, flen + hop))
    rng = np.random.default_rng(seed)
    out = np.zeros(n_frames * hop)
    state = np.zeros(order)
    next_pulse = 0.0
    win_power = float(np.mean(window**2))
    for i in range(n_frames):
        centre = i * hop
        frame = padded[centre: centre + flen] * window
        a, err = lpc_coefficients(frame, order)
        gain = np.sqrt(err / flen / win_power)
        f = float(f0[min(i, len(f0) - 1)])
        if f > 0:
            period = SAMPLE_RATE / f
            exc = np.zeros(hop)
            while next_pulse < centre + hop:
                if next_pulse >= centre:
                    exc[int(next_pulse) - centre] = np.sqrt(period)
                next_pulse += period
        else:
            exc = rng.standard_normal(hop)
            next_pulse = centre + hop
        seg, state = lfilter([gain], a, exc, zi=state)
        out[centre: centre + hop] = seg
    y = lfilter([1.0], [1.0, -0.97], out)
    return _fit_length(y, len(x))
