"""Per-system EER of several released bundles side by side, from their ``evaluation.json``.

``edge-cm-train release`` scores every dev and test clip of the corpus through the runtime and
writes ``evaluation.json`` into the bundle; this reads those files (nothing is re-scored), so
the table shows exactly the figures of each bundle's model card. Rows: each spoofing system
of dev and test, the pooled EER, and per family the mean of its systems' EERs. Columns: one
per bundle, plus the mean and the spread (max - min) over the bundles of each group given
with ``--group`` (seeds of one recipe).

    python benchmarks/compare_releases.py --bundle default=edge_cm/assets/models/default \\
        --bundle paired=bundles/paired --group paired=paired,paired_seed1 \\
        --out benchmarks/results/recipe_comparison.md

``--from-comparison NAME=JSON:COLUMN`` takes one bundle's figures from an earlier comparison's
JSON instead, for a bundle whose folder is gone.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.report import check_unique, named_values  # noqa: E402  (needs REPO on the path)

SPLITS = ("dev", "test")


def read_evaluation(bundle: Path) -> dict:
    """The ``evaluation.json`` of a bundle folder."""
    from edge_cm.errors import DataError

    path = bundle / "evaluation.json"
    if not path.is_file():
        raise DataError("bundle evaluation not found", path=path, hint="pass a bundle written by edge-cm-train release")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read the bundle's evaluation: {exc.strerror}", path=path,
                        hint="pass a bundle written by edge-cm-train release") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"not JSON: {exc.msg}", path=path) from exc
    missing = [s for s in SPLITS if s not in data or "systems" not in data[s] or "pooled" not in data[s]]
    if missing:
        raise DataError(f"no per-system results for split(s) {missing}", path=path,
                        hint="pass a bundle written by edge-cm-train release")
    return data


def evaluation_from_comparison(path: Path, column: str) -> dict:
    """One column of an earlier run's ``--out`` JSON, in the shape of ``evaluation.json`` (EERs only).

    For a bundle that no longer exists (its run folder was not kept): the figures are the ones
    that comparison read from the bundle's own ``evaluation.json``.
    """
    from edge_cm.errors import DataError

    data = {split: {"systems": {}, "families": {}} for split in SPLITS}
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
        for r in rows:
            if column not in r["eer"] or r["split"] not in data:
                continue
            entry, eer = data[r["split"]], float(r["eer"][column]) / 100
            if r["row"] == "pooled":
                entry["pooled"] = {"eer": eer}
            elif r["family"] and not r["row"].endswith("(mean of systems)"):
                entry["systems"][r["row"]] = {"eer": eer}
                entry["families"][r["row"]] = r["family"]
    except OSError as exc:
        raise DataError(f"cannot read the comparison: {exc.strerror}", path=path,
                        hint="pass a .json written by compare_releases.py --out") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise DataError("not a comparison written by compare_releases.py", path=path,
                        hint="pass the .json that compare_releases.py --out wrote beside its .md") from exc
    missing = [split for split in SPLITS if "pooled" not in data[split]]
    if missing:
        columns = sorted({n for r in rows for n in r["eer"]})
        raise DataError(f"no column {column!r} with pooled {missing} results", path=path,
                        hint=f"columns: {', '.join(columns)}")
    return data


def comparison_rows(evals: dict[str, dict]) -> list[dict]:
    """One row per (split, system), per (split, family mean) and per split's pooled EER; EERs in %."""
    rows = []
    names = list(evals)
    for split in SPLITS:
        systems = sorted({s for e in evals.values() for s in e[split]["systems"]})
        families = {}
        for e in evals.values():
            families.update(e[split].get("families", {}))
        for system in systems:
            rows.append({"split": split, "row": system, "family": families.get(system, ""),
                         "eer": {n: 100 * evals[n][split]["systems"][system]["eer"]
                                 for n in names if system in evals[n][split]["systems"]}})
        for family in sorted(set(families.values())):
            members = [s for s in systems if families.get(s) == family]
            rows.append({"split": split, "row": f"{family} (mean of systems)", "family": family,
                         "eer": {n: sum(100 * evals[n][split]["systems"][s]["eer"] for s in members) / len(members)
                                 for n in names if all(s in evals[n][split]["systems"] for s in members)}})
        rows.append({"split": split, "row": "pooled", "family": "",
                     "eer": {n: 100 * evals[n][split]["pooled"]["eer"] for n in names}})
    return rows


def markdown(rows: list[dict], names: list[str], groups: list[tuple[str, list[str]]], sources: dict[str, str]) -> str:
    head = ["split", "system"] + names
    for g, members in groups:
        head += [f"{g} mean", f"{g} spread"]
    lines = ["# Released bundles side by side (EER %, runtime clip scores)", "",
             "Made by `python benchmarks/compare_releases.py` from each bundle's `evaluation.json` "
             "(written by `edge-cm-train release`). Dev systems chose the checkpoints and thresholds; "
             "test is the honest figure. Spread = max - min over a group's bundles.", "",
             "Bundles: " + "; ".join(f"`{n}` = `{sources[n]}`" for n in names), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in rows:
        label = f"**{r['row']}**" if r["row"] == "pooled" else (f"`{r['row']}`" if r["family"] and "(" not in r["row"]
                                                                else r["row"])
        cells = [r["split"], label] + [f"{r['eer'][n]:.2f}" if n in r["eer"] else "-" for n in names]
        for _, members in groups:
            vals = [r["eer"][m] for m in members if m in r["eer"]]
            cells += ([f"{sum(vals) / len(vals):.2f}", f"{max(vals) - min(vals):.2f}"] if len(vals) == len(members)
                      else ["-", "-"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from edge_cm.errors import DataError

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", action="append", default=[], metavar="NAME=PATH",
                   help="a bundle folder written by edge-cm-train release (repeat)")
    p.add_argument("--from-comparison", action="append", default=[], metavar="NAME=JSON:COLUMN",
                   help="a column of an earlier comparison's .json, for a bundle no longer at hand (repeat)")
    p.add_argument("--group", action="append", default=[], metavar="NAME=A,B",
                   help="bundles of one recipe (seeds): adds their mean and spread (repeat)")
    p.add_argument("--out", required=True, type=Path, help="markdown table (.json beside it)")
    args = p.parse_args(argv)
    bundles = named_values(args.bundle, "--bundle")
    earlier = []
    for name, value in named_values(args.from_comparison, "--from-comparison"):
        path, sep, column = value.rpartition(":")
        if not sep or not path or not column:
            raise DataError(f"--from-comparison must be NAME=JSON:COLUMN, got {name}={value}")
        earlier.append((name, Path(path), column))
    if not bundles and not earlier:
        raise DataError("nothing to compare", hint="give --bundle NAME=PATH and/or --from-comparison NAME=JSON:COLUMN")
    groups = [(g, members.split(",")) for g, members in named_values(args.group, "--group")]
    names = [n for n, _ in bundles] + [n for n, _, _ in earlier]
    check_unique(names)
    unknown = sorted({m for _, members in groups for m in members} - set(names))
    if unknown:
        raise DataError(f"--group names unknown bundle(s) {unknown}", hint=f"bundles: {', '.join(names)}")
    evals = {n: read_evaluation(Path(path)) for n, path in bundles}
    evals.update({n: evaluation_from_comparison(path, column) for n, path, column in earlier})
    sources = dict(bundles) | {n: f"{path} (column {column})" for n, path, column in earlier}
    rows = comparison_rows(evals)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(rows, names, groups, sources), encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps({"bundles": sources, "groups": dict(groups),
                                                         "rows": rows}, indent=1), encoding="utf-8")
    print(args.out.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    from edge_cm.errors import run_cli

    sys.exit(run_cli(main, "compare_releases.py"))
