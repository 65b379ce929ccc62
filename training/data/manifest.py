"""One manifest schema for every corpus: a row per audio file, with its label and attack system.

Every reader in :mod:`training.data.readers` produces :class:`ManifestRow` objects; the
training, evaluation and corpus tools consume them, so no tool needs to know a corpus's own
protocol format. Manifests are stored as UTF-8 CSV with the columns of :data:`COLUMNS`.
"""
from __future__ import annotations

import csv
import math
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Sequence

from edge_cm.errors import DataError

LABELS = ("bonafide", "spoof")
FAMILIES = ("bonafide", "tts", "vc", "vocoder", "codec", "unknown")
SPLITS = ("train", "dev", "test", "")
#: System name of bona fide rows.
NO_SYSTEM = "-"


@dataclass(frozen=True)
class ManifestRow:
    """One audio file of a corpus.

    path: audio file (absolute, or relative to the manifest's folder when stored).
    label: 'bonafide' or 'spoof'. speaker: corpus speaker ID, '' if unknown.
    system: attack system ID (e.g. 'A11'), '-' for bona fide.
    family: 'bonafide', 'tts', 'vc', 'vocoder', 'codec' or 'unknown'.
    source: corpus name (e.g. 'asvspoof2019_la'). language: ISO 639-1 code, '' if unknown.
    split: 'train', 'dev', 'test' or '' (unassigned). seconds: duration in seconds, None if unknown.
    condition: channel or codec condition from the protocol (e.g. 'alaw'), '' if none.
    """

    path: str
    label: str
    speaker: str = ""
    system: str = NO_SYSTEM
    family: str = "unknown"
    source: str = ""
    language: str = ""
    split: str = ""
    seconds: float | None = None
    condition: str = ""

    def __post_init__(self) -> None:
        problem = row_problem(self)
        if problem:
            raise DataError(f"invalid manifest row for {self.path!r}: {problem}")

    @property
    def is_bonafide(self) -> bool:
        return self.label == "bonafide"


COLUMNS = tuple(f.name for f in fields(ManifestRow))
REQUIRED_COLUMNS = ("path", "label")


def row_problem(row: ManifestRow) -> str | None:
    """Why ``row`` breaks the schema, or None if it is valid."""
    if not row.path:
        return "empty path"
    if row.label not in LABELS:
        return f"label {row.label!r} is not one of {LABELS}"
    if row.family not in FAMILIES:
        return f"family {row.family!r} is not one of {FAMILIES}"
    if row.split not in SPLITS:
        return f"split {row.split!r} is not one of {SPLITS[:-1]} or empty"
    if (row.label == "bonafide") != (row.family == "bonafide"):
        return f"label {row.label!r} does not match family {row.family!r} (bona fide rows have family 'bonafide')"
    if row.seconds is not None and not (math.isfinite(row.seconds) and row.seconds >= 0):
        return f"seconds {row.seconds!r} is not a non-negative number"
    return None


def _parse_seconds(text: str, where: str, csv_path: Path) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"line {where}: seconds {text!r} is not a number", path=csv_path) from None
    return value


def read_manifest_csv(path: str | Path, *, resolve_paths: bool = True) -> list[ManifestRow]:
    """Read a manifest CSV written by :func:`write_manifest_csv` (or by hand).

    Only ``path`` and ``label`` are required; missing columns take the dataclass defaults
    (bona fide rows get family 'bonafide' and system '-', spoof rows 'unknown' for both). Relative audio paths are resolved
    against the CSV's folder when ``resolve_paths``. Bad rows raise DataError naming the line.
    """
    csv_path = Path(path)
    try:
        handle = open(csv_path, newline="", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot open manifest: {exc.strerror}", path=csv_path) from exc
    rows: list[ManifestRow] = []
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataError(f"line 1: header lacks column(s) {missing}", path=csv_path,
                            hint=f"a manifest needs at least {list(REQUIRED_COLUMNS)}; full schema: {list(COLUMNS)}")
        base = str(csv_path.resolve().parent)
        present = [k for k in COLUMNS if k in header]
        for record in reader:
            line = reader.line_num
            if None in record:
                raise DataError(f"line {line}: more fields than header columns", path=csv_path)
            if record[header[-1]] is None:  # DictReader pads short lines with None
                raise DataError(f"line {line}: fewer fields than header columns", path=csv_path)
            values = {k: record[k].strip() for k in present}
            label = values["label"]
            if not values.get("family"):
                values["family"] = "bonafide" if label == "bonafide" else "unknown"
            if not values.get("system"):
                values["system"] = NO_SYSTEM if label == "bonafide" else "unknown"
            values["seconds"] = _parse_seconds(values.get("seconds", ""), str(line), csv_path)
            audio = values["path"]
            if resolve_paths and audio and not os.path.isabs(audio):
                values["path"] = os.path.join(base, audio)
            try:
                rows.append(ManifestRow(**values))
            except DataError as exc:
                raise DataError(f"line {line}: {exc}", path=csv_path) from None
    return rows


def _real_folder(path: str) -> str:
    """``path`` made absolute with its folder's symlinks resolved (the file itself may be a link)."""
    head, tail = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(head), tail)


def write_manifest_csv(rows: Iterable[ManifestRow], path: str | Path, *,
                       relative_to: str | Path | None = None) -> Path:
    """Write ``rows`` as CSV atomically (temporary file + rename), so a crash never leaves half a file.

    With ``relative_to`` (usually the CSV's folder), audio paths under it are stored relative. A
    relative row path is taken as relative to the working directory, as ``open`` would read it.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = None if relative_to is None else Path(relative_to).resolve()
    base_prefix = "" if base is None else str(base).rstrip(os.sep) + os.sep
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                record = {name: getattr(row, name) for name in COLUMNS}  # asdict deep-copies: slow
                if base is not None:
                    where = _real_folder(record["path"])
                    if where.startswith(base_prefix):
                        record["path"] = Path(where[len(base_prefix):]).as_posix()
                    # Paths outside the base folder stay as given.
                record["seconds"] = "" if row.seconds is None else repr(float(row.seconds))
                writer.writerow(record)
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; a manifest is meant to be shared
        os.replace(tmp_name, out)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return out


def _as_set(value: str | Sequence[str] | None) -> set[str] | None:
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


def filter_rows(rows: Iterable[ManifestRow], *, split: str | Sequence[str] | None = None,
                label: str | Sequence[str] | None = None, system: str | Sequence[str] | None = None,
                family: str | Sequence[str] | None = None, source: str | Sequence[str] | None = None
                ) -> list[ManifestRow]:
    """Rows matching every given criterion; each takes one value or a collection of values."""
    wanted = {"split": _as_set(split), "label": _as_set(label), "system": _as_set(system),
              "family": _as_set(family), "source": _as_set(source)}
    for name in ("label", "split", "family"):
        allowed = {"label": LABELS, "split": SPLITS, "family": FAMILIES}[name]
        if wanted[name] is not None and not wanted[name] <= set(allowed):
            raise DataError(f"unknown {name} filter value(s) {sorted(wanted[name] - set(allowed))}",
                            hint=f"use one of {allowed}")
    return [r for r in rows if all(v is None or getattr(r, k) in v for k, v in wanted.items())]


def by_split(rows: Iterable[ManifestRow], split: str | Sequence[str]) -> list[ManifestRow]:
    return filter_rows(rows, split=split)


def by_label(rows: Iterable[ManifestRow], label: str | Sequence[str]) -> list[ManifestRow]:
    return filter_rows(rows, label=label)


def by_system(rows: Iterable[ManifestRow], system: str | Sequence[str]) -> list[ManifestRow]:
    return filter_rows(rows, system=system)
