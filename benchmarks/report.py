"""Where a benchmark's results go: a markdown table for people, the same figures as JSON beside it."""
from __future__ import annotations

import json
from pathlib import Path


def write_report(out: Path, lines: list[str], results: dict) -> None:
    """Write ``lines`` to ``out`` (markdown) and ``results`` to ``out`` with a .json suffix, then
    print the table. Called last, after every figure is computed, so a failure writes nothing."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("\n".join(lines))


def named_values(items: list[str], what: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` command-line items (``--bundle default=PATH``) as (name, value) pairs."""
    from edge_cm.errors import DataError

    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise DataError(f"{what} must be NAME=VALUE, got {item!r}")
        out.append((name, value))
    return out


def check_unique(names: list[str], option: str = "--bundle") -> None:
    """A typed error when two ``option`` items share a NAME: every table and JSON keeps results by name,
    so one would silently replace the other."""
    from edge_cm.errors import DataError

    if len(set(names)) != len(names):
        raise DataError(f"{option} names repeat: {names}", hint=f"give each {option} its own NAME")
