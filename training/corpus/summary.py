"""Write a corpus build's summary as summary.json and a markdown card, summary.md."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def to_markdown(summary: dict) -> str:
    """The corpus card: minutes per system and split, speakers, languages, settings."""
    lines = ["# edge-cm offline spoof corpus", ""]
    cfg = summary["config"]
    overrides = ", ".join(f"`{k}` {v:g}" for k, v in (cfg.get("minutes_per_system") or {}).items())
    lines += [f"Seed {cfg['seed']}, at most {cfg['max_minutes_per_system']} min per spoofing system"
              f"{' (except ' + overrides + ')' if overrides else ''}, "
              f"channel matching of TTS {'on' if cfg['channel_match'] else 'off'}. "
              f"Bona fide source: `{cfg['bonafide_manifest']}`.", ""]
    lines += ["## Splits", "", "| split | bona fide files | bona fide min | spoof files | spoof min |",
              "|---|---:|---:|---:|---:|"]
    for split, s in summary["splits"].items():
        lines.append(f"| {split} | {s['bonafide_files']} | {s['bonafide_minutes']:.1f} | {s['spoof_files']} | "
                     f"{s['spoof_minutes']:.1f} |")
    lines += ["", "## Systems", "", "| system | family | split | files | minutes |", "|---|---|---|---:|---:|"]
    for name, e in summary["systems"].items():
        lines.append(f"| `{name}` | {e['family']} | {e['split']} | {e['files']} | {e['minutes']:.2f} |")
    lines += ["", "## Speakers and languages", "",
              "Speakers: distinct `speaker` values (TTS voices count as one speaker each; bona fide "
              "clips without speaker IDs are not counted).", ""]
    for key, n in summary["speakers"].items():
        lines.append(f"- {key}: {n} speakers")
    lines.append("")
    for key, langs in summary["languages"].items():
        lines.append(f"- {key}: {', '.join(langs)}")
    lines += ["", "## Channel conditions (files)", ""]
    for kind, conds in summary["conditions"].items():
        lines.append(f"- {kind}: " + ", ".join(f"{k} {v}" for k, v in sorted(conds.items())))
    lines += ["", "## Split assignment (whole systems; copy-synthesis uses bona fide clips of its own split)", ""]
    for split, names in summary["split_assignment"].items():
        lines.append(f"- **{split}**: " + ", ".join(f"`{n}`" for n in names))
    lines += ["", "## Normalisation (bona fide and spoof alike)", ""]
    lines.append(", ".join(f"{k} = {v}" for k, v in summary["normalisation"].items()))
    lines += ["", "## Skipped systems", ""]
    if summary["skipped_systems"]:
        lines += [f"- `{k}`: {v}" for k, v in summary["skipped_systems"].items()]
    else:
        lines.append("none")
    lines += ["", f"## Failures ({len(summary['failures'])})", ""]
    lines += [f"- `{f['file']}`: {f['error']}" for f in summary["failures"][:50]] or ["none"]
    skipped_files = summary.get("skipped_files", [])
    lines += ["", f"## Skipped files ({len(skipped_files)})", ""]
    lines += [f"- `{f['file']}`: {f['reason']}" for f in skipped_files[:50]] or ["none"]
    lines += ["", f"This run: {summary['files_made_this_run']} files made, {summary['files_reused']} reused, "
              f"{summary['cpu_seconds_this_run']} CPU s in workers, {summary['wall_seconds_this_run']} s wall.", ""]
    return "\n".join(lines)


def write_summary(summary: dict, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    _atomic_write(out_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=False) + "\n")
    _atomic_write(out_dir / "summary.md", to_markdown(summary))
