"""Put a model in inference mode, whatever kind of module it is."""
from __future__ import annotations


def eval_mode(model):
    """``model.eval()``; a module from ``torch.export`` (``ExportedProgram.module()``) refuses
    ``eval()`` but was already captured in inference mode, so it is returned as is."""
    try:
        return model.eval()
    except NotImplementedError:
        return model
