"""Export trained edge-cm models to deployable bundles (ONNX / TFLite, float32 / int8).

This package imports torch; the runtime (``edge_cm``) never does. Entry points:
:func:`export.api.export_bundle` and the ``edge-cm-export`` command (:mod:`export.cli`).
"""
from __future__ import annotations

__all__ = ["export_bundle"]


def export_bundle(*args, **kwargs):
    """See :func:`export.api.export_bundle` (imported lazily: torch is slow to import)."""
    from .api import export_bundle as _export_bundle

    return _export_bundle(*args, **kwargs)
