"""``edge-cm``: detect, listen, calibrate, info, demo.

Exit codes: 0 = ran and every input was scored (whatever the verdict: a spoof
verdict is a result, not a failure; read it from the output or ``--json``);
2 = usage error, unreadable input or unusable bundle; 3 = ``--fail-on-spoof``
was given and at least one clip was judged spoof (for shell pipelines).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import EdgeCMError

EXIT_OK, EXIT_ERROR, EXIT_SPOOF = 0, 2, 3


def _untrained_banner(detector) -> str:
    return ("UNTRAINED MODEL: scores are meaningless (placeholder bundle)\n" if detector.untrained else "")


def _fmt_score(score: float | None) -> str:
    return "  -   " if score is None else f"{score:.3f}"


def cmd_detect(args: argparse.Namespace) -> int:
    from .detector import load

    detector = load(args.bundle, backend=args.backend, threads=args.threads, precision=args.precision,
                    hop_seconds=args.hop, threshold=args.threshold)
    results, failed, spoofed = [], 0, 0
    for path in args.files:
        try:
            clip = detector.detect_file(path)
        except EdgeCMError as exc:
            failed += 1
            print(f"edge-cm detect: error: {exc}", file=sys.stderr)
            continue
        results.append(clip)
        spoofed += clip.verdict == "spoof"
    if args.json:
        out = {"bundle": str(detector.bundle.path), "backend": detector.backend.name,
               "precision": detector.backend.precision, "untrained": detector.untrained,
               "clips": [c.to_dict() for c in results]}
        print(json.dumps(out, indent=2))
    else:
        sys.stdout.write(_untrained_banner(detector))
        for clip in results:
            print(f"{clip.source}: {clip.verdict} (score {_fmt_score(clip.score)}, threshold {clip.threshold:.3f}, "
                  f"{len(clip.speech_windows)}/{len(clip.windows)} windows with speech, {clip.duration:.1f} s)")
            if args.windows:
                for w in clip.windows:
                    print(f"  {w.start:7.2f}-{w.end:7.2f} s  {_fmt_score(w.score)}  {w.verdict:<9} "
                          f"speech {w.speech_fraction:.2f}{'  looped' if w.looped else ''}")
    if failed:
        return EXIT_ERROR
    return EXIT_SPOOF if (args.fail_on_spoof and spoofed) else EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from .bundle import default_bundle_path, load_bundle
    from .info import describe_bundle

    bundle = load_bundle(args.bundle or default_bundle_path())
    if args.json:
        print(json.dumps(bundle.meta.to_dict(), indent=2))
    else:
        print(describe_bundle(bundle))
    return EXIT_OK


def cmd_listen(args: argparse.Namespace) -> int:
    from .mic import list_devices, listen

    if args.list_devices:
        print(list_devices())
        return EXIT_OK
    return listen(bundle=args.bundle, device=args.device, backend=args.backend, threads=args.threads,
                  hop_seconds=args.hop, seconds=args.seconds, threshold=args.threshold)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate
    from .detector import load

    # Checked here in the user's unit: check_target would report the fraction (150 % as "1.5").
    if not 0.0 < args.false_alarms < 100.0:  # also refuses NaN
        raise EdgeCMError(f"false-alarm target must be a percent in (0, 100), got {args.false_alarms:g}",
                          hint="e.g. --false-alarms 5 for 5 %")
    detector = load(args.bundle, backend=args.backend, threads=args.threads, precision=args.precision,
                    hop_seconds=args.hop)
    cal = calibrate(detector, args.files, args.false_alarms / 100.0)
    if args.json:
        print(json.dumps(cal.to_dict(), indent=2))
        return EXIT_OK
    sys.stdout.write(_untrained_banner(detector))
    print(f"{cal.clips} clips of real speech scored" + (f"; {len(cal.no_speech)} without speech left out: "
                                                         + ", ".join(cal.no_speech) if cal.no_speech else ""))
    print(f"bundle threshold {cal.bundle_threshold:.6f}: "
          f"{100 * cal.bundle_false_alarms:.1f} % of them are false alarms")
    print(f"threshold {cal.threshold:.6f}: {100 * cal.false_alarms:.1f} % false alarms "
          f"(target {100 * cal.target_false_alarms:g} %)")
    print(f"use it: edge-cm detect --threshold {cal.threshold:.6f} ... or edge_cm.load(threshold={cal.threshold:.6f})")
    if cal.threshold > cal.bundle_threshold:
        print("above the bundle's threshold: more spoofs pass; spoofs played in this room were not measured")
    else:
        print("below the bundle's threshold: more spoofs are caught, at up to the target's false alarms here")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(bundle=args.bundle, backend=args.backend)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-cm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def model_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--bundle", type=Path, default=None, help="model bundle folder (default: bundled model)")
        sp.add_argument("--backend", choices=["auto", "onnx", "tflite"], default="auto")
        sp.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
        sp.add_argument("--hop", type=float, default=None, help="seconds between 4-s windows, in (0, 4] (default 2.0)")

    def threshold_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--threshold", type=float, default=None,
                        help="P(spoof) at or above which a verdict is spoof (default: the bundle's; see calibrate)")

    d = sub.add_parser("detect", help="score audio files")
    d.add_argument("files", nargs="+", type=Path)
    model_opts(d)
    d.add_argument("--precision", choices=["float32", "int8"], default=None)
    threshold_opt(d)
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.add_argument("--windows", action="store_true", help="also print every window")
    d.add_argument("--fail-on-spoof", action="store_true", help=f"exit {EXIT_SPOOF} if any clip is judged spoof")
    d.set_defaults(func=cmd_detect)

    li = sub.add_parser("listen", help="score the microphone live, one line per window")
    model_opts(li)
    li.add_argument("--device", default=None, help="input device index or name (see --list-devices)")
    li.add_argument("--list-devices", action="store_true")
    li.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    threshold_opt(li)
    li.set_defaults(func=cmd_listen)

    ca = sub.add_parser("calibrate", help="choose a threshold from real speech recorded where the device listens")
    ca.add_argument("files", nargs="+", type=Path, help="real (bona fide) speech only")
    model_opts(ca)
    ca.add_argument("--precision", choices=["float32", "int8"], default=None)
    ca.add_argument("--false-alarms", type=float, default=5.0, metavar="PERCENT",
                    help="largest share of these clips judged spoof (default 5)")
    ca.add_argument("--json", action="store_true", help="machine-readable output")
    ca.set_defaults(func=cmd_calibrate)

    i = sub.add_parser("info", help="show a bundle's metadata, size and profile")
    i.add_argument("bundle", nargs="?", type=Path, default=None)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    de = sub.add_parser("demo", help="the bundled model over bundled clips, streaming")
    de.add_argument("--bundle", type=Path, default=None)
    de.add_argument("--backend", choices=["auto", "onnx", "tflite"], default="auto")
    de.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        return args.func(args)
    except EdgeCMError as exc:
        print(f"edge-cm {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
