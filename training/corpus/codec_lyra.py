"""Neural-codec resynthesis through Lyra v2 (SoundStream encoder, RVQ, LyraGAN decoder).

The three TFLite models live in a folder given by the caller (the shared assets folder
``shared/assets/lyra``); they run with ``ai_edge_litert.interpreter``. 16 kHz, 320-sample frames
(20 ms); each quantizer carries 4 bits per frame, so ``bitrate = quantizers * 4 * 50``:
16 -> 3200 bit/s, 30 -> 6000 bit/s, 46 -> 9200 bit/s. Unused quantizer slots are set to -1.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from edge_cm.errors import DependencyError

FRAME = 320
MAX_QUANTIZERS = 46
BITS_PER_QUANTIZER = 4
FRAMES_PER_SECOND = 50
MODEL_FILES = ("soundstream_encoder.tflite", "quantizer.tflite", "lyragan.tflite")


def quantizers_for_bitrate(bitrate: int) -> int:
    """Number of RVQ stages for a bitrate in bit/s (3200, 6000 or 9200)."""
    q = bitrate // (BITS_PER_QUANTIZER * FRAMES_PER_SECOND)
    if not 1 <= q <= MAX_QUANTIZERS or q * BITS_PER_QUANTIZER * FRAMES_PER_SECOND != bitrate:
        raise ValueError(f"Lyra bitrate {bitrate} bit/s is not a multiple of 200 up to 9200")
    return int(q)


def unavailable(model_dir: str | Path | None) -> str | None:
    import importlib.util

    if importlib.util.find_spec("ai_edge_litert") is None:
        return "ai-edge-litert is not installed (pip install ai-edge-litert)"
    if model_dir is None:
        return "no Lyra model folder given (--lyra-dir, default shared/assets/lyra)"
    missing = [f for f in MODEL_FILES if not (Path(model_dir) / f).is_file()]
    if missing:
        return f"Lyra model file(s) {missing} missing in {model_dir}"
    return None


class LyraCodec:
    """Stateful encoder/quantizer/decoder interpreters for one utterance at a time.

    ``reset_all_variables()`` does not bring the stateful models back to their freshly loaded
    state (a second utterance decodes differently from the first), so :meth:`resynthesize`
    reloads the three interpreters for every utterance: that costs a few ms and makes the output
    depend on the input alone.
    """

    def __init__(self, model_dir: str | Path):
        reason = unavailable(model_dir)
        if reason:
            raise DependencyError(f"Lyra codec unavailable: {reason}")
        self._dir = Path(model_dir)
        self._load()

    def _load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        d = self._dir
        self._enc_interp = Interpreter(model_path=str(d / MODEL_FILES[0]), num_threads=1)
        self._q_interp = Interpreter(model_path=str(d / MODEL_FILES[1]), num_threads=1)
        self._dec_interp = Interpreter(model_path=str(d / MODEL_FILES[2]), num_threads=1)
        self._enc = self._enc_interp.get_signature_runner("serving_default")
        self._q_enc = self._q_interp.get_signature_runner("encode")
        self._q_dec = self._q_interp.get_signature_runner("decode")
        self._dec = self._dec_interp.get_signature_runner("serving_default")
        self._used = False

    def resynthesize(self, x: np.ndarray, bitrate: int) -> np.ndarray:
        """Encode and decode 16 kHz float32 audio at ``bitrate`` bit/s; same length as ``x``."""
        q = quantizers_for_bitrate(bitrate)
        if self._used:
            self._load()
        self._used = True
        n = len(x)
        padded = np.zeros(int(np.ceil(n / FRAME)) * FRAME, dtype=np.float32)
        padded[:n] = x
        out = np.empty_like(padded)
        all_q = np.int32(MAX_QUANTIZERS)
        for i in range(len(padded) // FRAME):
            frame = padded[i * FRAME:(i + 1) * FRAME][None, :]
            feat = self._enc(input_audio=frame)["output_0"]
            idx = self._q_enc(input_frames=feat, num_quantizers=all_q)["output_0"].copy()
            idx[q:] = -1  # residual VQ: dropping the last stages lowers the bitrate
            quantised = self._q_dec(encoding_indices=idx.astype(np.int32))["output_0"]
            out[i * FRAME:(i + 1) * FRAME] = self._dec(input_audio=quantised)["output_0"][0]
        return out[:n]


@functools.lru_cache(maxsize=2)
def codec(model_dir: str) -> LyraCodec:
    return LyraCodec(model_dir)


def lyra(x: np.ndarray, seed: int = 0, *, bitrate: int, model_dir: str) -> np.ndarray:
    """Copy-synthesis through Lyra at ``bitrate`` (deterministic; ``seed`` unused)."""
    return codec(str(model_dir)).resynthesize(np.asarray(x, dtype=np.float32), bitrate)
