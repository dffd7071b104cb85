"""`roienc demo`: synthesize a sample (or use --cityscapes-root), build maps, sweep baseline vs
roi at 3 CRF points and print kbps, psnr_roi, psnr_nonroi per mode and the BD-rate."""
from __future__ import annotations

import argparse

from .build_maps import name_arg, names_arg
from .sweep import summary_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole pipeline on a small sample, in about a minute",
                       description=__doc__)
    p.add_argument("--out", default="roienc-demo", metavar="DIR", help="folder for the data, maps and run")
    p.add_argument("--cityscapes-root", metavar="ROOT", help="run on real data instead")
    p.add_argument("--split", default="val", type=name_arg("--split"),
                   help="split (with --cityscapes-root)")
    p.add_argument("--cities", type=names_arg("--cities"), metavar="A,B", help="only these cities (with --cityscapes-root)")
    p.add_argument("--speed", type=float, help="ego speed (m/s) for frames without vehicle JSON")
    p.add_argument("--preset", default="fast", help="x265 preset")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    res = run_demo(args.out, args.cityscapes_root, split=args.split, cities=args.cities,
                   preset=args.preset, speed=args.speed, progress=not args.no_progress)
    print(summary_table(res))
    print(f"\nreport: {res.report.resolve()}")
    return 0
