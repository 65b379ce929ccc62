"""The front ends a ResNetSE can be trained on, by name; the name and the spec travel in every checkpoint.

* ``logmel40`` - the paper's front end (b), :func:`edge_cm.features.resnetse_spec`: 40 log-mel
  bands, each normalised over the window (mean 0, variance 1). The default.
* ``logmel40_levels`` - the same bands without the per-window normalisation, so each band's
  long-term level stays in the input (the level depends on the recording's gain).
* ``logspec257`` - the 257-bin log-magnitude STFT of the same 25 ms frames, normalised per bin
  over the window like (b): the harmonic fine structure that 40 mel bands average away stays.

Why there is a choice: on the developer corpus the mel-band models missed vocoded copies of
real speech (README, "Why this model"), and the ablation's per-system table shows the same for
the ResNetSE rows. The network's frequency size follows the front end (``n_mels`` = its bins).
"""
from __future__ import annotations

import argparse
from dataclasses import replace

from edge_cm.errors import DataError
from edge_cm.features import FeatureSpec, resnetse_spec

DEFAULT_FRONT_END = "logmel40"


def _logmel40_levels() -> FeatureSpec:
    return replace(resnetse_spec(), normalization="none")


def _logspec257() -> FeatureSpec:
    b = resnetse_spec()
    return FeatureSpec(kind="log_spectrogram", win_length=b.win_length, hop_length=b.hop_length, n_fft=b.n_fft,
                       window=b.window, power=1.0, log_offset=1e-7, normalization="instance")


FRONT_ENDS = {"logmel40": resnetse_spec, "logmel40_levels": _logmel40_levels, "logspec257": _logspec257}


def front_end_spec(name: str) -> FeatureSpec:
    """The :class:`FeatureSpec` of a front end name."""
    if name not in FRONT_ENDS:
        raise DataError(f"unknown ResNetSE front end {name!r}", hint=f"use one of {sorted(FRONT_ENDS)}")
    return FRONT_ENDS[name]()


def checkpoint_front_end(ckpt: dict) -> tuple[str, FeatureSpec]:
    """(name, spec) a stage checkpoint was trained on; checkpoints older than the choice used (b)."""
    extra = ckpt.get("extra") or {}
    if "feature_spec" not in extra:
        return DEFAULT_FRONT_END, resnetse_spec()
    return extra.get("front_end", "custom"), FeatureSpec.from_dict(extra["feature_spec"])


def front_end_arg(p: argparse.ArgumentParser) -> None:
    """``--front-end`` on a command line."""
    p.add_argument("--front-end", choices=sorted(FRONT_ENDS), default=DEFAULT_FRONT_END,
                   help="logmel40: the paper's (b); logmel40_levels: without per-window normalisation; "
                        "logspec257: the 257-bin log STFT (see training/resnetse/frontends.py)")
