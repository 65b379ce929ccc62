"""Is the training-only source head worth keeping as a second score? EER of each head, and of both.

A multi-task model's source head (each training spoofing system, or ``none`` for bona fide) is dropped at
export. Kept, it would cost 97 parameters per source class (1,843 for the developer corpus's 19), within
the 50,000 budget beside the 46,742 of the default. For each checkpoint (a run's ``best.pt`` or a bundle with
training weights) every dev and test clip is scored with one 4-s window in torch, as ``edge-cm-train eval``
does, by three scores, each higher = more bona fide:

* ``binary``: the exported head's log-odds, logit(bona fide) - logit(spoof);
* ``source``: the source head's log-odds of ``none`` against all spoofing systems,
  log P(none) - log(1 - P(none));
* ``sum``: the two added (fusing the heads inside one model).

The validation split (dev) picks each run's best checkpoint by a loss that includes the source head's
cross-entropy on dev's bona fide clips (dev's spoofing systems are not source classes, so its spoofs do not
count), so a gain on dev alone can come from that choice; test is where a gain has to show.

    python benchmarks/source_head_scoring.py --checkpoint default=bundles/default_nolevel \\
        --checkpoint ft_s0=runs/ft_s0/best.pt --manifest devcorpus/manifest.csv \\
        --out benchmarks/results/source_head_scoring.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.report import check_unique, named_values, write_report  # noqa: E402  (needs REPO on the path)

SCORES = ("binary", "source", "sum")
SPLITS = ("dev", "test")


def head_log_odds(logits, source_logits, none_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Bona fide log-odds of the binary head (B, 2; class 0 = bona fide) and of the source head
    (B, n_sources), whose class ``none_index`` is bona fide: log P(none) - log(1 - P(none))."""
    import torch

    logits, source_logits = torch.as_tensor(logits), torch.as_tensor(source_logits)
    log_p = torch.log_softmax(source_logits.double(), dim=1)
    others = torch.cat([log_p[:, :none_index], log_p[:, none_index + 1:]], dim=1)
    source = log_p[:, none_index] - torch.logsumexp(others, dim=1)
    return (logits[:, 0] - logits[:, 1]).double().numpy(), source.numpy()


def score_split(model, meta: dict, rows: list, add_channel: bool) -> dict[str, np.ndarray]:
    """The three scores and the labels (0 = bona fide) of ``rows``, one window per clip."""
    import torch

    from training.dataset import WindowDataset, make_loader

    systems = meta["systems"]
    data = WindowDataset(rows, meta["feature_spec"], train=False, window_seconds=meta["config"].window_seconds,
                         systems=systems, add_channel=add_channel)
    parts: dict[str, list] = {"binary": [], "source": [], "label": []}
    with torch.no_grad():
        for batch in make_loader(data, 64, shuffle=False):
            binary, source = head_log_odds(*model(batch["features"]), systems.index("none"))
            parts["binary"].append(binary)
            parts["source"].append(source)
            parts["label"].append(batch["label"].numpy())
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["sum"] = out["binary"] + out["source"]
    return out


def load_multitask(path: str):
    """The model (eval mode, source head kept) and metadata of a multi-task checkpoint or bundle."""
    from edge_cm.errors import DataError
    from training.models import registry
    from training.train import load_checkpoint

    model, meta = load_checkpoint(path)
    if not registry.get(meta["architecture"]).multitask or "none" not in (meta["systems"] or []):
        raise DataError(f"{meta['architecture']} has no source head", path=path,
                        hint="pass a run of a multi-task (_mt) architecture")
    return model, meta


def main(argv: list[str] | None = None) -> int:
    from edge_cm import metrics as M
    from edge_cm.errors import DataError
    from training.dataset import read_rows
    from training.models import registry

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", action="append", required=True, help="NAME=PATH (best.pt or a bundle), repeatable")
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="markdown table (.json beside it)")
    args = p.parse_args(argv)
    runs = named_values(args.checkpoint, "--checkpoint")
    check_unique([name for name, _ in runs], "--checkpoint")
    if not args.manifest.is_file():
        raise DataError("manifest not found", path=args.manifest, hint="pass the corpus's manifest.csv")
    missing = [path for _, path in runs if not Path(path).exists()]
    if missing:
        raise DataError("checkpoint not found", path=missing[0], hint="pass a run's best.pt or a bundle folder")
    rows = read_rows(args.manifest)
    by_split = {s: [r for r in rows if r.split == s] for s in SPLITS}
    for split, split_rows in by_split.items():
        if len({r.is_bonafide for r in split_rows}) < 2:
            raise DataError(f"the manifest's {split} split needs bona fide and spoof rows (an EER needs both)",
                            path=args.manifest, hint="pass the built corpus's manifest.csv")
    models = {name: load_multitask(path) for name, path in runs}  # every checkpoint checked before scoring
    results: dict = {}
    for name, (model, meta) in models.items():
        add_channel = len(registry.get(meta["architecture"]).input_shape) == 3
        for split, split_rows in by_split.items():
            s = score_split(model, meta, split_rows, add_channel)
            bona, spoof = s["label"] == 0, s["label"] == 1
            results.setdefault(name, {})[split] = {k: M.compute_eer(s[k][bona], s[k][spoof])[0] for k in SCORES}
    lines = ["# The source head as a second score", "",
             "Pooled EER (%) of every dev and test clip, one 4-s window each (torch, as `edge-cm-train eval`); "
             "`sum` adds the two heads' bona fide log-odds.", "",
             "    python benchmarks/source_head_scoring.py " + " ".join(f"--checkpoint {n}" for n, _ in runs)
             + f" --manifest {args.manifest.name}", "",
             "| run | " + " | ".join(f"{split} {k}" for split in SPLITS for k in SCORES) + " |",
             "|---|" + "---:|" * (len(SPLITS) * len(SCORES))]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * r[split][k]:.2f}" for split in SPLITS for k in SCORES) + " |")
    summary = {}
    for split in SPLITS:
        for k in ("source", "sum"):
            deltas = [100 * (r[split][k] - r[split]["binary"]) for r in results.values()]
            summary[f"{split} {k}"] = {"lower": sum(d < 0 for d in deltas), "higher": sum(d > 0 for d in deltas),
                                       "mean_change_points": float(np.mean(deltas))}
    lines += ["", "Against the binary head, over the runs above:", "",
              "| score | runs lower | runs higher | mean change (points) |", "|---|---:|---:|---:|"]
    lines += [f"| {key} | {v['lower']} | {v['higher']} | {v['mean_change_points']:+.2f} |"
              for key, v in summary.items()]
    write_report(args.out, lines + [""], {"runs": results, "against_binary": summary})
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "source_head_scoring.py"))
