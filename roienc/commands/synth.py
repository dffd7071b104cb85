"""`roienc synth`: write a small synthetic dataset in the Cityscapes layout."""
from __future__ import annotations

import argparse

from .build_maps import int_range, name_arg, names_arg

# roienc.synth's bounds, copied so that --help does not import the synthesizer (numpy);
# tests/test_help.py checks that they are the same
MIN_SIDE = 16
MAX_SIDE = 8192
MAX_PIXELS = 4096 * 2048
MAX_SEQUENCES = 999_999


def synthesize(*args, **kwargs):
    """:func:`roienc.synth.synthesize`, imported when first called (tests patch this name)."""
    from ..synth import synthesize as impl
    return impl(*args, **kwargs)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="synthesize a Cityscapes-format dataset (test data)",
                       description=__doc__)
    p.add_argument("--out", required=True, metavar="DIR", help="root of the dataset to write")
    p.add_argument("--split", default="val", type=name_arg("--split"), help="split folder to write")
    p.add_argument("--cities", type=names_arg("--cities"), default=["lindau"], metavar="A,B",
                   help="city names (default: lindau)")
    p.add_argument("--sequences-per-city", type=int_range("--sequences-per-city", 1, MAX_SEQUENCES),
                   default=1, metavar="N", help="30-frame snippets per city")
    p.add_argument("--width", type=int_range("--width", MIN_SIDE, MAX_SIDE), default=256,
                   help=f"frame width in px ({MIN_SIDE}..{MAX_SIDE})")
    p.add_argument("--height", type=int_range("--height", MIN_SIDE, MAX_SIDE), default=128,
                   help=f"frame height in px ({MIN_SIDE}..{MAX_SIDE}; width x height at most "
                        f"{MAX_PIXELS:,} px, e.g. 4096x2048)")
    p.add_argument("--seed", type=int_range("--seed", 0), default=0,
                   help="random seed (same seed, same dataset)")
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
