"""Audio input: read a file or take an array, and return 16 kHz mono float32.

Rules (the same for training and runtime, so both see the same samples):

* integer PCM (int16, int24 read as int32, int32) is scaled to [-1, 1) by its
  full scale; float input must already lie in [-1, 1] (peak up to
  :data:`FLOAT_PEAK_LIMIT`; lossy-coded files and streamed chunks, which may be resampler
  output, up to :data:`OVERSHOOT_PEAK_LIMIT`) and is taken as is: louder float input (say
  int16-scale values stored as float) raises a typed error rather than being judged at the
  wrong level;
* arrays are (samples,) or (samples, channels); several channels are mixed down
  to mono by their mean;
* other sample rates are resampled with a polyphase filter
  (``scipy.signal.resample_poly``, Kaiser window, beta 5.0);
* a sample rate that is not a positive whole number of Hz, NaN or Inf samples, an empty
  file and an unreadable file raise typed errors.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import AudioReadError, EmptyAudioError, InvalidSamplesError

TARGET_SAMPLE_RATE = 16000
"""The sample rate (Hz) every front end of edge-cm works at."""

_INT_FULL_SCALE = {np.dtype(np.int8): 2.0**7, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}

FLOAT_PEAK_LIMIT = 1.0 + 1e-3
"""Largest |sample| accepted from float input (full scale 1.0): the margin lets float exports that
overshoot full scale by rounding pass, while int16-scale values (up to 32768) are refused."""

OVERSHOOT_PEAK_LIMIT = 2.0
"""Largest |sample| accepted where full-scale audio legitimately overshoots 1.0: lossy-coded files
(decoders, on speech clipped at full scale: MP3 1.04, Vorbis 1.06, Opus 1.23) and streamed chunks,
which are often resampler output (polyphase resampling of clipped int16 speech: up to 1.21; of a
full-scale square wave: 1.39). That is the signal as coded or resampled, not a scale error; int16-scale
values stay far above the limit."""

_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


def check_peak(samples: np.ndarray, *, source: str = "<array>", limit: float = FLOAT_PEAK_LIMIT) -> None:
    """Raise :class:`InvalidSamplesError` if the finite float samples peak above ``limit`` (full scale 1.0).

    NaN and Inf are left to :func:`check_finite`, which names them as such.
    """
    if samples.size == 0:
        return
    mag = np.abs(samples)
    peak = float(np.max(mag, where=np.isfinite(mag), initial=0.0))
    if peak > limit:
        raise InvalidSamplesError(
            f"float samples peak at {peak:.6g}, above full scale 1.0", path=source,
            hint="int16-scale values as float? divide by 32768; otherwise scale the audio to a peak of at most 1.0",
        )


def to_float32(samples: np.ndarray, *, source: str = "<array>") -> np.ndarray:
    """Return ``samples`` as float32 in [-1, 1]; integer PCM is scaled by its full scale.

    Accepts int8/int16/int32 and float16/32/64 arrays of shape (n,) or (n, channels). Float
    input peaking above :data:`FLOAT_PEAK_LIMIT` raises :class:`InvalidSamplesError`.
    """
    arr = np.asarray(samples)
    if arr.dtype in _INT_FULL_SCALE:
        return (arr.astype(np.float32) / np.float32(_INT_FULL_SCALE[arr.dtype])).astype(np.float32)
    if arr.dtype == np.uint8:  # 8-bit WAV is unsigned with an offset of 128
        return ((arr.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        check_peak(arr, source=source)  # before the cast, where float64 beyond float32's range is still finite
        return arr.astype(np.float32, copy=False)
    raise InvalidSamplesError(
        f"unsupported sample dtype {arr.dtype}", path=source,
        hint="pass int16 PCM or float32 samples in [-1, 1]",
    )


def _mix_down(samples: np.ndarray) -> np.ndarray:
    """(n, channels) -> (n,) by the mean of the channels, float32."""
    return samples.mean(axis=1, dtype=np.float32).astype(np.float32)


def to_mono(samples: np.ndarray, *, source: str = "<array>") -> np.ndarray:
    """Mix (n, channels) down to (n,) by the mean of the channels; (n,) passes through.

    A 2-D array with more columns than rows is refused: more channels than samples is never
    audio, but a channels-first array (as torchaudio and librosa return) that was not transposed.
    """
    if samples.ndim == 1:
        return samples
    if samples.ndim == 2:
        if 0 < samples.shape[0] < samples.shape[1]:
            raise InvalidSamplesError(
                f"shape {samples.shape} reads as {samples.shape[0]} sample(s) of {samples.shape[1]} channels",
                path=source, hint="pass (samples, channels); transpose channels-first arrays (x.T)",
            )
        return _mix_down(samples)
    raise InvalidSamplesError(
        f"expected shape (samples,) or (samples, channels), got {samples.shape}", path=source,
        hint="pass one channel or interleave channels as columns",
    )


def resample(samples: np.ndarray, orig_rate: int, target_rate: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D float32 array from ``orig_rate`` to ``target_rate`` Hz (polyphase)."""
    if orig_rate == target_rate:
        return samples
    from scipy.signal import resample_poly

    ratio = Fraction(int(target_rate), int(orig_rate))
    out = resample_poly(samples, ratio.numerator, ratio.denominator, window=("kaiser", 5.0))
    return out.astype(np.float32)


def check_finite(samples: np.ndarray, *, source: str = "<array>") -> None:
    """Raise :class:`InvalidSamplesError` if any sample is NaN or Inf."""
    if not np.all(np.isfinite(samples)):
        bad = int(np.size(samples) - np.count_nonzero(np.isfinite(samples)))
        raise InvalidSamplesError(
            f"{bad} sample(s) are NaN or Inf", path=source,
            hint="the recording is corrupt; re-export it or replace non-finite samples",
        )


def check_sample_rate(sample_rate, *, source: str = "<array>") -> int:
    """``sample_rate`` (Hz) as an int if it is a positive whole number, else :class:`InvalidSamplesError`."""
    try:
        rate = float(sample_rate)
    except (TypeError, ValueError):  # None, "44.1k", ...
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0 and rate == int(rate)):
        raise InvalidSamplesError(f"invalid sample rate {sample_rate!r}", path=source,
                                  hint="give the sample rate in Hz as a positive whole number, e.g. 44100")
    return int(rate)


def prepare(samples: np.ndarray, sample_rate: int, *, source: str = "<array>",
            target_rate: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Turn any supported array into mono float32 at ``target_rate`` Hz, validated."""
    rate = check_sample_rate(sample_rate, source=source)
    mono = to_mono(to_float32(samples, source=source), source=source)
    if mono.size == 0:
        raise EmptyAudioError("no samples", path=source, hint="record or pass at least one sample")
    check_finite(mono, source=source)
    return resample(mono, rate, target_rate)


def _open_checked(path: Path):
    """Open an audio file with soundfile, turning every failure into a typed error naming the file."""
    import soundfile as sf

    if not path.exists():
        raise AudioReadError("file not found", path=path, hint="check the path")
    if path.is_dir():
        raise AudioReadError("is a directory, not an audio file", path=path)
    if path.stat().st_size == 0:
        raise EmptyAudioError("file is empty (0 bytes)", path=path, hint="record the audio again")
    try:
        return sf.SoundFile(str(path))
    except Exception as exc:  # LibsndfileError, RuntimeError, TypeError for odd headers
        raise AudioReadError(
            f"cannot decode audio ({exc})", path=path,
            hint="use WAV, FLAC, OGG or MP3; convert other formats with ffmpeg -i IN -ar 16000 -ac 1 OUT.wav",
        ) from None


def _read_block(f, path: Path, frames: int) -> np.ndarray:
    """Read up to ``frames`` frames (-1: the rest of the file) as checked mono float32 at the file's rate."""
    try:
        data = f.read(frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioReadError(f"cannot decode audio ({exc})", path=path,
                             hint="the file may be truncated or corrupt") from None
    # Integer PCM decodes within [-1, 1) whatever the limit; only float and lossy-coded files can exceed it.
    check_peak(data, source=str(path), limit=FLOAT_PEAK_LIMIT if f.subtype in _FLOAT_SUBTYPES else OVERSHOOT_PEAK_LIMIT)
    # soundfile gives (frames, channels), so no channels-first check: a last block may hold fewer
    # frames than the file has channels.
    mono = _mix_down(data)
    check_finite(mono, source=str(path))
    return mono


class StreamingResampler:
    """Polyphase resampling of a stream in pieces, equal to :func:`resample` of the whole stream.

    Input is processed in runs whose edges fall on the resampler's rational period
    (multiples of ``down`` input samples), each with a margin of context wider than
    the filter, so every output sample sees exactly the inputs it would see in one
    call over the whole signal. Latency: the margin (about 10 * max(up, down) / up
    input samples, e.g. 2 ms from 48 kHz).
    """

    def __init__(self, orig_rate: int, target_rate: int = TARGET_SAMPLE_RATE):
        ratio = Fraction(int(target_rate), int(orig_rate))
        self.up, self.down = ratio.numerator, ratio.denominator
        reach = -(-10 * max(self.up, self.down) // self.up) + 2
        self._margin = -(-reach // self.down) * self.down
        self._buf = np.zeros(0, dtype=np.float32)  # input from position _buf_start on
        self._buf_start = 0
        self._done = 0       # input position up to which output was emitted (a multiple of down)
        self._total = 0      # input samples received

    def _run(self, end: int, out_end: int) -> np.ndarray:
        from scipy.signal import resample_poly

        p0 = max(0, self._done - self._margin)
        seg = self._buf[p0 - self._buf_start:end + self._margin - self._buf_start]
        y = resample_poly(seg, self.up, self.down, window=("kaiser", 5.0)).astype(np.float32)
        base = p0 * self.up // self.down
        out = y[self._done * self.up // self.down - base:out_end - base]
        self._done = end
        keep_from = max(0, end - self._margin)
        self._buf = self._buf[keep_from - self._buf_start:]
        self._buf_start = keep_from
        return out

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Add input samples; return the output samples that are now final."""
        x = np.asarray(x, dtype=np.float32)
        if self.up == self.down:
            return x
        self._buf = np.concatenate([self._buf, x])
        self._total += x.size
        end = ((self._total - self._margin) // self.down) * self.down
        if end <= self._done:
            return np.zeros(0, dtype=np.float32)
        return self._run(end, end * self.up // self.down)

    def flush(self) -> np.ndarray:
        """End of input: return the remaining output (the signal is taken as zero after its end)."""
        if self.up == self.down or self._total == self._done:
            return np.zeros(0, dtype=np.float32)
        out = self._run(self._total, -(-self._total * self.up // self.down))
        return out


def iter_audio_blocks(path: str | Path, *, block_seconds: float = 30.0,
                      target_rate: int = TARGET_SAMPLE_RATE):
    """Yield a file as consecutive mono float32 blocks at ``target_rate`` Hz, with bounded memory.

    The concatenated blocks equal :func:`read_audio` of the whole file (see
    :class:`StreamingResampler`).
    """
    path = Path(path)
    with _open_checked(path) as f:
        rate, n_in = f.samplerate, f.frames
        if n_in == 0:
            raise EmptyAudioError("file holds no samples", path=path, hint="record the audio again")
        resampler = StreamingResampler(rate, target_rate)
        step = max(1, int(block_seconds * rate))
        for _ in range(0, n_in, step):
            block = _read_block(f, path, step)
            out = resampler.feed(block)
            if out.size:
                yield out
        tail = resampler.flush()
        if tail.size:
            yield tail


def read_audio(path: str | Path, *, target_rate: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Read WAV/FLAC/OGG (and MP3 where libsndfile has it) as mono float32 at ``target_rate`` Hz.

    Raises:
        AudioReadError: the file is missing, not audio, or cannot be decoded.
        EmptyAudioError: the file decodes to zero samples.
        InvalidSamplesError: the file holds NaN or Inf samples, or float samples above full scale
            (:data:`FLOAT_PEAK_LIMIT`; :data:`OVERSHOOT_PEAK_LIMIT` for lossy-coded files).
    """
    path = Path(path)
    with _open_checked(path) as f:
        rate = f.samplerate
        # float32 keeps int24/int32 precision well enough and halves memory vs float64.
        mono = _read_block(f, path, -1)
    if mono.size == 0:
        raise EmptyAudioError("no samples", path=path, hint="record or pass at least one sample")
    return resample(mono, rate, target_rate)


def audio_info(path: str | Path) -> dict:
    """Sample rate (Hz), channels, frames, format and subtype of an audio file, without decoding it."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for non-audio
        raise AudioReadError(f"cannot read audio header ({exc})", path=path) from None
    return {"sample_rate": info.samplerate, "channels": info.channels, "frames": info.frames,
            "format": info.format, "subtype": info.subtype}
