"""Which bona fide clip each copy-synthesis spoof of a built corpus was made from.

A copy-synthesis system (vocoder, codec) re-synthesises a bona fide clip, so the spoof keeps its
source's words, speaker, channel and timing. The builder names such a spoof after its source
(:func:`copy_stem`), and :func:`copy_sources` reads that link back from manifest paths alone, so
corpora built before the link was needed work unchanged. TTS spoofs have no source clip.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from training.data.manifest import ManifestRow

BONAFIDE_DIR = "bonafide"
SPOOF_DIR = "spoof"


def copy_stem(rel_path: str) -> str:
    """File stem of a copy of the bona fide clip at ``rel_path`` (folders joined by ``__``)."""
    return Path(rel_path).with_suffix("").as_posix().replace("/", "__")


def _corpus_root(row: ManifestRow) -> Path | None:
    """``ROOT`` of a spoof stored as ``ROOT/spoof/<system>/<split>/<stem>.flac``, else None."""
    p = Path(row.path)
    if len(p.parents) < 4 or p.parents[2].name != SPOOF_DIR or p.parents[1].name != row.system:
        return None
    return p.parents[3]


def copy_sources(rows: Sequence[ManifestRow]) -> dict[int, int]:
    """``{spoof row index: index of the bona fide row it was copied from}`` for every spoof whose
    source is among ``rows`` (spoofs without one, such as TTS, are left out)."""
    spoof_roots = {i: root for i, r in enumerate(rows) if not r.is_bonafide and (root := _corpus_root(r))}
    roots = set(spoof_roots.values())
    by_key: dict[tuple[Path, str], int] = {}
    for i, r in enumerate(rows):
        if not r.is_bonafide:
            continue
        p = Path(r.path)
        for root in roots:
            try:
                rel = p.relative_to(root / BONAFIDE_DIR)
            except ValueError:
                continue
            by_key[(root, copy_stem(rel.as_posix()))] = i
    return {i: by_key[key] for i, root in spoof_roots.items()
            if (key := (root, Path(rows[i].path).stem)) in by_key}
