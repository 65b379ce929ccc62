"""Typed errors of edge-cm.

Every error a user can cause (bad audio, a broken bundle, a missing optional
dependency) is an :class:`EdgeCMError`, whose message names the file or value
at fault and says what to do about it.
"""
from __future__ import annotations

from pathlib import Path


class EdgeCMError(Exception):
    """Base class of every error edge-cm raises on purpose."""

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None):
        self.path = None if path is None else str(path)
        self.hint = hint
        text = message if path is None else f"{path}: {message}"
        if hint:
            text = f"{text} ({hint})"
        super().__init__(text)


class AudioError(EdgeCMError):
    """Audio that cannot be used: unreadable, empty, NaN/Inf, wrong dtype."""


class AudioReadError(AudioError):
    """The file cannot be opened or decoded."""


class EmptyAudioError(AudioError):
    """The file or array holds no samples."""


class InvalidSamplesError(AudioError):
    """The samples hold NaN or Inf, or have an unsupported dtype or shape."""


class BundleError(EdgeCMError):
    """A model bundle that is missing, malformed or inconsistent with its model files."""


class BundleIntegrityError(BundleError):
    """A model file's sha256 or tensor shapes do not match the bundle metadata."""


class BackendError(EdgeCMError):
    """No usable inference backend, or the backend failed to run the model."""


class DependencyError(EdgeCMError):
    """An optional dependency (an extra) is not installed."""


class FeatureSpecError(EdgeCMError):
    """A front-end description that is unknown or inconsistent."""


class DeviceError(EdgeCMError):
    """No audio input device, or PortAudio is missing."""


class DataError(EdgeCMError):
    """A protocol, manifest or corpus file that cannot be parsed (training side)."""


class ExportError(EdgeCMError):
    """An export that failed, including a parity gate that was exceeded."""


def run_cli(main, prog: str) -> int:
    """Run a script's ``main()``: an :class:`EdgeCMError` becomes one line on stderr and exit code 2.

    For the scripts in ``benchmarks/``; the installed commands handle errors the same way
    in their own entry points.
    """
    import sys

    try:
        return int(main() or 0)
    except EdgeCMError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
