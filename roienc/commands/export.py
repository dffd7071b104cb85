"""`roienc export`: addroi filter scripts, x265 zones and qpfiles of a clip, and the commands."""
from __future__ import annotations

import argparse

from ..configs import check_rate
from ..errors import InputError

# roienc.export.CODEC and .FORMATS, copied so that --help does not import the exporter (numpy,
# pandas, OpenCV); tests/test_help.py checks that they are the same
CODEC = "hevc"
FORMATS = ("addroi", "zones", "qpfile", "all")


def _crf(text: str) -> float:
    """``--crf`` as a CRF of the exported HEVC commands (0..51), checked as encode checks it."""
    try:
        return check_rate("crf", text.strip(), codec=CODEC)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write encoder instructions for a clip", description=__doc__)
    p.add_argument("--maps", required=True, metavar="OUT", help="a build-maps output")
    p.add_argument("--format", choices=FORMATS, default="all",
                   help="what to write: addroi filter scripts, x265 zones, x265 qpfiles or all")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--sequence", nargs="+", metavar="ID", help="only these clips (default: all)")
    p.add_argument("--crf", type=_crf, default=28.0,
                   help="rate point used in the commands: HEVC CRF 0-51 (default 28)")
    p.add_argument("--ffmpeg", metavar="PATH",
                   help="FFmpeg the commands call (default: $ROIENC_FFMPEG, PATH, bundled)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export
    done = export(args.maps, args.out, args.format, args.sequence, args.crf, args.ffmpeg)
    for clip, paths in done.items():
        print(f"{clip}: " + ", ".join(p.name for p in paths))
    print(f"export: {len(done)} clip(s) -> {args.out}")
    return 0
