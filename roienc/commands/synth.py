"""`roienc synth`: write a small synthetic dataset in the Cityscapes layout."""
from __future__ import annotations

import argparse

from ..synth import synthesize
from .build_maps import csv_list


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="synthesize a Cityscapes-format dataset (test data)",
                       description=__doc__)
    p.add_argument("--out", required=True, metavar="DIR", help="root of the dataset to write")
    p.add_argument("--split", default="val", help="split folder to write")
    p.add_argument("--cities", type=csv_list, default=["lindau"], metavar="A,B",
                   help="city names (default: lindau)")
    p.add_argument("--sequences-per-city", type=int, default=1, metavar="N",
                   help="30-frame snippets per city")
    p.add_argument("--width", type=int, default=256, help="frame width in px")
    p.add_argument("--height", type=int, default=128, help="frame height in px")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same dataset)")
    p.add_argument("--no-sequences", action="store_true", help="annotated frames only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    info = synthesize(args.out, split=args.split, cities=tuple(args.cities),
                      sequences_per_city=args.sequences_per_city, width=args.width,
                      height=args.height, seed=args.seed, with_sequences=not args.no_sequences)
    ann = sum(f.source == "frames" for f in info.frames)
    seq = sum(f.source == "sequence" for f in info.frames)
    print(f"synth: {ann} annotated frames and {seq} sequence frames of {info.width}x{info.height} "
          f"-> {info.root} (ground truth: {info.root / 'synth_truth.json'})")
    return 0
