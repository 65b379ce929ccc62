"""``edge-cm-train corpus build``: make the offline spoof corpus (see training.corpus.builder)."""
from __future__ import annotations

import argparse
from pathlib import Path

from edge_cm.errors import DataError

from .builder import DEFAULT_MAX_MINUTES, SENTENCES, BuildConfig, build


def _default_lyra_dir() -> Path:
    import os

    repo = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("EDGE_CM_SHARED", repo.parent / "shared")) / "assets" / "lyra"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-cm-train corpus", description="offline spoof corpus tools")
    sub = p.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="synthesise spoofs and normalised bona fide copies")
    b.add_argument("--bonafide", type=Path, required=True, help="bona fide manifest.csv (shared/data/bonafide layout)")
    b.add_argument("--out", type=Path, required=True, help="output folder (created; reruns resume)")
    b.add_argument("--systems", nargs="+", default=None, help="system names (default: all in the split assignment)")
    b.add_argument("--exclude", nargs="+", default=[], metavar="SYSTEM",
                   help="leave these systems out (e.g. to rebuild a corpus made before they existed)")
    b.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--max-minutes-per-system", type=float, default=DEFAULT_MAX_MINUTES,
                   help=f"cap of audio per spoofing system in minutes (default {DEFAULT_MAX_MINUTES})")
    b.add_argument("--system-minutes", nargs="+", default=[], metavar="SYSTEM=MIN",
                   help="caps that override --max-minutes-per-system for one system (voc_world_harvest=15) "
                        "or for a family within a split (train:tts=6)")
    b.add_argument("--lyra-dir", type=Path, default=None,
                   help="folder with the Lyra TFLite models (default: $EDGE_CM_SHARED/assets/lyra)")
    b.add_argument("--sentences", type=Path, default=SENTENCES, help="LANG<TAB>sentence file for TTS")
    b.add_argument("--no-bonafide", action="store_true", help="do not write normalised bona fide copies")
    b.add_argument("--no-channel-match", action="store_true", help="leave TTS output on a clean channel")
    b.add_argument("--no-progress", action="store_true")
    sub.add_parser("systems", help="list systems, their family, split and availability")
    sub.add_parser("check", help="flag trivial cues that separate bona fide from spoof (training.shortcuts)",
                   add_help=False)
    return p


def _system_minutes(items: list[str]) -> dict[str, float]:
    """``["voc_lpc=10", "train:tts=6"]`` -> per-system caps in minutes.

    An item names one system, or ``SPLIT:FAMILY`` for every system of that family in that split
    (``train:tts`` is the 14 training TTS voices). A system named on its own overrides a group
    that contains it, whatever the order. A malformed item is a typed error.
    """
    from .splits import system_split
    from .systems import registry

    known = registry()
    split_of = system_split()
    groups: dict[str, float] = {}
    singles: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            minutes = float(value)
        except ValueError:
            minutes = -1.0
        if not sep or minutes <= 0:
            raise DataError(f"--system-minutes {item!r}: expected SYSTEM=MINUTES or SPLIT:FAMILY=MINUTES "
                            "with MINUTES > 0",
                            hint="e.g. --system-minutes voc_world_harvest=15 train:tts=6")
        if ":" in name:
            split, _, family = name.partition(":")
            members = [n for n, s in known.items() if s.family == family and split_of.get(n) == split]
            if not members:
                raise DataError(f"--system-minutes: no system of family {family!r} in split {split!r}",
                                hint="`edge-cm-train corpus systems` lists each system's family and split")
            groups.update(dict.fromkeys(members, minutes))
        elif name in known:
            singles[name] = minutes
        else:
            raise DataError(f"--system-minutes: unknown system {name!r}",
                            hint="`edge-cm-train corpus systems` lists the names")
    return {**groups, **singles}


def main(argv: list[str]) -> int:
    if argv and argv[0] == "check":
        # the shortcut check lives in training.shortcuts; it is a corpus action for the user
        from training.shortcuts import check_main

        return check_main(argv[1:])
    args = parser().parse_args(argv)
    if args.action == "systems":
        from .splits import system_split
        from .systems import registry

        assignment = system_split()
        lyra = str(_default_lyra_dir())
        for name, s in registry().items():
            reason = s.unavailable(lyra)
            print(f"{name:<40} {s.family:<8} {assignment.get(name, '-'):<6} {'ok' if not reason else 'SKIP: ' + reason}")
        from .engines_tts import SKIPPED_ENGINES

        for name, reason in SKIPPED_ENGINES.items():
            print(f"{name:<40} {'tts':<8} {'-':<6} SKIP: {reason}")
        return 0
    cfg = BuildConfig(minutes_per_system=_system_minutes(args.system_minutes), bonafide_manifest=args.bonafide, out_dir=args.out,
                      systems=tuple(args.systems) if args.systems else None, exclude_systems=tuple(args.exclude),
                      jobs=args.jobs, seed=args.seed,
                      max_minutes_per_system=args.max_minutes_per_system,
                      lyra_dir=args.lyra_dir or _default_lyra_dir(), sentences=args.sentences,
                      include_bonafide=not args.no_bonafide, channel_match=not args.no_channel_match,
                      progress=not args.no_progress)
    summary = build(cfg)
    for name, reason in summary["skipped_systems"].items():
        print(f"skipped {name}: {reason}")
    print(f"wrote {args.out / 'manifest.csv'} ({sum(e['files'] for e in summary['systems'].values())} files), "
          f"{args.out / 'summary.md'}; {len(summary['failures'])} failure(s)")
    return 0 if not summary["failures"] else 1
