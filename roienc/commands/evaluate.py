"""`roienc evaluate`: decode encodes and measure quality inside vs outside the ROI."""
from __future__ import annotations

import argparse

from .build_maps import add_executor_options, executor_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="PSNR/SSIM inside vs outside the ROI, bitrate",
                       description=__doc__)
    p.add_argument("--encoded", required=True, metavar="ENC", help="an encode output (its sidecars are read)")
    p.add_argument("--cityscapes-root", metavar="ROOT", help="where the source frames are (default: the absolute paths in the sidecars); they must be the frames encoded")
    p.add_argument("--maps", required=True, metavar="OUT",
                   help="build-maps output whose importance defines the regions")
    p.add_argument("--report", required=True, metavar="results.csv",
                   help="CSV to write (parameters and decode commands go to the .json beside it)")
    p.add_argument("--roi-threshold", type=float, default=0.5,
                   help="ROI = pixels with importance >= this (default 0.5)")
    p.add_argument("--per-frame", metavar="DIR", help="also write a per-frame CSV per clip")
    p.add_argument("--ffmpeg", metavar="PATH", help="FFmpeg for decoding (default: $ROIENC_FFMPEG, PATH, bundled)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--skip-existing", action="store_true",
                   help="reuse rows of an existing --report whose encode, maps and threshold are unchanged")
    p.add_argument("--ssim", action="store_true",
                   help="also compute the luma SSIM map (the ssim_y, ssim_roi, ssim_nonroi columns; "
                        "two thirds of the metrics' CPU time with it). Without it those "
                        "columns are NaN and <report>.json says SSIM was not computed")
    p.add_argument("--no-ssim", dest="ssim", action="store_false",
                   help="the default (no SSIM); accepted for scripts written when SSIM was on by default")
    add_executor_options(p, workers=1, command="evaluate")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate
    df = evaluate(args.encoded, args.maps, args.report, cityscapes_root=args.cityscapes_root,
                  roi_threshold=args.roi_threshold, per_frame_dir=args.per_frame,
                  ffmpeg=args.ffmpeg, executor=executor_spec(args), progress=not args.no_progress,
                  skip_existing=args.skip_existing, ssim=args.ssim)
    cols = ["clip", "codec", "mode", "rate_value", "kbps", "psnr_y", "psnr_roi", "psnr_nonroi",
            *(["ssim_roi"] if args.ssim else [])]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    errors = df.attrs.get("errors", [])
    print(f"evaluate: {len(df)} encodes -> {args.report}"
          + (f"; {len(errors)} FAILED (see the warnings above and {args.report}'s .json)" if errors else ""))
    return 1 if errors else 0
