"""`roienc doctor`: FFmpeg, x265 and SVT-AV1 found where, versions, encoders, addroi/zones/qpfile usable."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check FFmpeg, x265 and ROI support", description=__doc__)
    p.add_argument("--ffmpeg", metavar="PATH", help="FFmpeg to check (default: $ROIENC_FFMPEG, PATH, bundled)")
    p.add_argument("--x265", metavar="PATH", help="x265 CLI to check (default: $ROIENC_X265, PATH)")
    p.add_argument("--svtav1", metavar="PATH", help="SvtAv1EncApp to check (default: $ROIENC_SVTAV1, PATH)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..doctor import run_doctor
    checks = run_doctor(args.ffmpeg, args.x265, args.svtav1)
    for c in checks:
        mark = "OK  " if c.ok else ("FAIL" if c.essential else "warn")
        print(f"[{mark}] {c.name:26s} {c.detail}")
    bad = [c for c in checks if c.essential and not c.ok]
    print("doctor: " + ("everything roienc needs works" if not bad else
                        f"{len(bad)} essential check(s) failed"))
    return 1 if bad else 0
