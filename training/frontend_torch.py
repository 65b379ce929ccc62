"""Differentiable torch twin of :mod:`edge_cm.features`.

It takes its window and mel filterbank from the numpy module, so the only
difference between the two is floating-point order of operations (checked to
< 1e-4 by ``tests/test_frontend_parity.py``). Adversarial example generation
needs gradients through it; training may use either implementation.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from edge_cm.features import (LEVEL_FLOOR_DBFS, LEVEL_FRAME_SAMPLES, LEVEL_LOUDEST_SHARE, FeatureSpec, mel_filterbank,
                              window_function)


class TorchFrontEnd(nn.Module):
    """Waveform (B, samples) at the spec's rate -> features (B, bins, frames), or (B, samples) for waveform."""

    def __init__(self, spec: FeatureSpec):
        super().__init__()
        self.spec = spec
        if spec.kind != "waveform":
            # float64 until the log, as the numpy front end (near-silent bins are rounding-sensitive).
            self.register_buffer("window", torch.from_numpy(window_function(spec)))
            mel = mel_filterbank(spec) if spec.kind == "log_mel" else None
            self.register_buffer("mel", None if mel is None else torch.from_numpy(mel))
        if spec.normalization == "global":
            self.register_buffer("mean", torch.tensor(spec.norm_mean, dtype=torch.float32)[:, None])
            self.register_buffer("std", torch.tensor(spec.norm_std, dtype=torch.float32)[:, None])

    def frames(self, wave: torch.Tensor) -> torch.Tensor:
        """Un-normalised columns (B, bins, frames)."""
        spec = self.spec
        if spec.kind == "waveform":
            return wave[:, None, :]
        framed = wave.double().unfold(-1, spec.win_length, spec.hop_length) * self.window  # (B, frames, win)
        mag = torch.fft.rfft(framed, n=spec.n_fft, dim=-1).abs()
        if spec.kind == "log_spec_mgd":
            return torch.cat([torch.log(mag + spec.log_offset), self.modified_group_delay(framed)],
                             dim=-1).float().transpose(1, 2)
        if spec.kind == "log_spec_wave":
            samples = wave.unfold(-1, spec.win_length, spec.hop_length)[..., :spec.hop_length]
            return torch.cat([torch.log(mag + spec.log_offset).float(), samples.float()], dim=-1).transpose(1, 2)
        if spec.power != 1.0:
            mag = mag.pow(spec.power)
        if self.mel is not None:
            mag = mag @ self.mel.T
        return torch.log(mag + spec.log_offset).float().transpose(1, 2)

    def modified_group_delay(self, framed: torch.Tensor) -> torch.Tensor:
        """:func:`edge_cm.features.modified_group_delay` of (B, frames, win) windowed frames."""
        spec = self.spec
        t = torch.arange(spec.win_length, dtype=framed.dtype, device=framed.device) - (spec.win_length - 1) / 2.0
        x = torch.fft.rfft(framed, n=spec.n_fft, dim=-1)
        y = torch.fft.rfft(framed * t, n=spec.n_fft, dim=-1)
        cep = torch.fft.irfft(torch.log(x.abs() + spec.log_offset), n=spec.n_fft, dim=-1)
        keep = torch.ones(spec.n_fft, dtype=cep.dtype, device=cep.device)
        keep[spec.mgd_lifter:spec.n_fft - spec.mgd_lifter + 1] = 0.0
        envelope = torch.fft.rfft(cep * keep, n=spec.n_fft, dim=-1).real
        tau = (x.real * y.real + x.imag * y.imag) * torch.exp(-2.0 * spec.mgd_gamma * envelope)
        return torch.sign(tau) * tau.abs().pow(spec.mgd_alpha)

    def level_gain(self, wave: torch.Tensor) -> torch.Tensor:
        """:func:`edge_cm.features.level_gain` of each window of (B, samples), as (B, 1, 1) float64."""
        x = wave.double()
        n = x.shape[-1] // LEVEL_FRAME_SAMPLES
        power = x[:, :n * LEVEL_FRAME_SAMPLES].reshape(x.shape[0], n, LEVEL_FRAME_SAMPLES).pow(2).mean(dim=-1)
        k = max(1, math.ceil(LEVEL_LOUDEST_SHARE * n))
        loudest = power.sort(dim=-1).values[:, -k:].mean(dim=-1).clamp_min(1e-30)
        level = (10.0 * torch.log10(loudest)).clamp_min(LEVEL_FLOOR_DBFS)
        return torch.pow(10.0, (self.spec.level_dbfs - level) / 20.0)[:, None, None]

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        x = self.frames(wave)
        if spec.level_dbfs is not None:  # edge_cm.features.apply_gain
            value = (torch.exp(x.double()) - spec.log_offset).clamp_min(0.0)
            x = torch.log(self.level_gain(wave).pow(spec.power) * value + spec.log_offset).float()
        if spec.normalization == "global":
            x = (x - self.mean) / self.std
        elif spec.normalization == "instance":
            mean = x.mean(dim=-1, keepdim=True)
            var = x.var(dim=-1, keepdim=True, unbiased=False)
            x = (x - mean) / torch.sqrt(var + spec.norm_eps)
        return x[:, 0, :] if spec.kind == "waveform" else x
