"""``edge-cm-train describe [ARCH...]``: parameters and compute of registered architectures.

MACs count conv and linear multiply-accumulates only (biases, batch norm, activations,
pooling and additions left out); FLOPs = 2 x MACs, cross-checked against
``torch.utils.flop_counter.FlopCounterMode`` for every row (the ``check`` column).
Multi-task variants are built with ``--sources`` source classes and also show the cost
of their exported (binary-only) form.
"""
from __future__ import annotations

import argparse

from training.models import registry


def describe(name: str, n_sources: int) -> dict:
    arch = registry.get(name)
    model = registry.build(name, n_sources=n_sources) if arch.multitask else registry.build(name)
    macs = registry.count_macs(model, arch.input_shape)
    flops_torch = registry.count_flops_torch(model, arch.input_shape)
    row = {"name": name, "description": arch.description, "input": "x".join(map(str, arch.input_shape)),
           "params": registry.count_params(model), "macs": macs, "check": flops_torch == 2 * macs,
           "paper_params": arch.paper.get("params"), "paper_mflops": arch.paper.get("mflops")}
    export = getattr(model, "export_module", None)
    row["export_params"] = registry.count_params(export()) if arch.multitask and export else row["params"]
    return row


def _fmt(v, spec: str = ",") -> str:
    if v is None:
        return "-"
    return format(int(v) if spec == "," else v, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edge-cm-train describe", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="architectures (default: all registered)")
    p.add_argument("--family", help="only names containing this text, e.g. efficientcnn")
    p.add_argument("--sources", type=int, default=7,
                   help="source classes of multi-task heads (default 7: 6 systems + none, as ASVspoof 2019 LA)")
    args = p.parse_args(argv)
    names = args.names or registry.names()
    if args.family:
        names = [n for n in names if args.family in n]
    rows = [describe(n, args.sources) for n in names]
    head = (f"{'architecture':<28} {'input':<11} {'params':>9} {'exported':>9} {'paper':>9} "
            f"{'MMACs':>9} {'MFLOPs':>9} {'paper MFLOPs':>12} {'check':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f" {r['name']:<27} {r['input']:<11} {r['params']:>9,} {r['export_params']:>9,} "
              f"{_fmt(r['paper_params']):>9} {r['macs'] / 1e6:>9.2f} {2 * r['macs'] / 1e6:>9.2f} "
              f"{_fmt(r['paper_mflops'], '.0f'):>12} {'ok' if r['check'] else 'DIFF':>6}")
    print(f"\nMACs: conv + linear only; FLOPs = 2 x MACs; check = FlopCounterMode agrees. "
          f"Multi-task heads built with {args.sources} sources; 'exported' drops them.")
    return 0 if all(r["check"] for r in rows) else 1
