"""A training checkpoint as a torch-free ``.npz``: the copy a bundle carries for fine-tuning.

Layout: one array per state-dict entry, named ``state/<entry>`` (weights and BatchNorm
statistics exactly as trained, including any multi-task head), and ``checkpoint.json``,
a JSON string with what :func:`training.train.load_checkpoint` needs besides the
weights (architecture, model_args, config, feature_spec, classes, systems; the config's
manifest reduced to its file name). Optimiser state is not kept: a bundle is a starting
point for ``edge-cm-train adapt``, not a resumable run.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from edge_cm.errors import DataError

STATE_PREFIX = "state/"
META_KEY = "checkpoint.json"
META_FIELDS = ("architecture", "model_args", "config", "feature_spec", "classes", "systems")


def save_checkpoint_npz(ckpt: dict, path: str | Path) -> Path:
    """Write the weights and metadata of a checkpoint dict (as saved by the Trainer) to ``path``."""
    missing = [k for k in ("model_state", "architecture", "feature_spec", "config") if k not in ckpt]
    if missing:
        raise DataError(f"checkpoint lacks {missing}", hint="was it written by edge-cm-train?")
    arrays = {STATE_PREFIX + name: t.detach().cpu().numpy() for name, t in ckpt["model_state"].items()}
    meta = {k: ckpt.get(k) for k in META_FIELDS}
    if isinstance(meta["config"], dict) and meta["config"].get("manifest"):
        # a bundle travels to other machines: keep the corpus's file name, not a local path
        meta["config"] = dict(meta["config"], manifest=Path(meta["config"]["manifest"]).name)
    arrays[META_KEY] = np.array(json.dumps(meta, default=float))
    path = Path(path)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def load_checkpoint_npz(path: str | Path) -> dict:
    """The checkpoint dict of :func:`save_checkpoint_npz` (``model_state`` as torch tensors)."""
    import torch

    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data[META_KEY]))
            state = {k[len(STATE_PREFIX):]: torch.from_numpy(np.array(data[k]))
                     for k in data.files if k.startswith(STATE_PREFIX)}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read training weights ({type(exc).__name__}: {exc})", path=path,
                        hint="re-export the bundle from its checkpoint") from None
    if not state:
        raise DataError("training weights hold no model state", path=path)
    missing = [k for k in ("architecture", "config", "feature_spec") if not meta.get(k)]
    if missing:
        raise DataError(f"training weights lack {missing}", path=path, hint="re-export the bundle from its checkpoint")
    return dict(meta, model_state=state)
