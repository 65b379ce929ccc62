"""``edge-cm-train``: one entry point, one module per sub-command.

Each sub-command lives in its own module exposing ``main(argv) -> int``, so the
modules stay independent and only the one asked for is imported (torch is heavy).
"""
from __future__ import annotations

import importlib
import sys

from edge_cm.errors import EdgeCMError

COMMANDS = {
    "corpus": ("training.corpus.cli", "build the offline spoof corpus, check it for shortcuts"),
    "train": ("training.train", "train a detector from a config (architecture from the registry)"),
    "eval": ("training.evaluate", "per-system and pooled EER, AUC, macro-F1, DET and histogram plots"),
    "adapt": ("training.adapt", "fine-tune a trained detector on a few samples of a new attack"),
    "interpolate": ("training.interpolate", "mix a fine-tuned model's weights with its start's (WiSE-FT)"),
    "release": ("training.release", "checkpoint -> calibrated, gated, evaluated bundle with model card"),
    "describe": ("training.describe", "parameter counts and MACs of registered architectures"),
    "resnetse": ("training.resnetse.cli", "GE2E pre-training, BIM adversarial fine-tuning, distillation"),
}


def usage() -> str:
    lines = ["usage: edge-cm-train COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "edge-cm-train COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"edge-cm-train: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
    except ModuleNotFoundError as exc:
        print(f"edge-cm-train {name}: missing dependency {exc.name!r}; "
              f"install the training extra: pip install 'edge-cm[train]'", file=sys.stderr)
        return 2
    try:
        return int(module.main(rest) or 0)
    except EdgeCMError as exc:
        print(f"edge-cm-train {name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
