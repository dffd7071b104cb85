"""`roienc sweep`: maps, encodes at every mode and rate point, evaluation, BD-rate, plots, report."""
from __future__ import annotations

import argparse
import sys

from ..configs import CODECS
from .build_maps import (add_executor_options, add_map_options, csv_list, executor_spec, int_range,
                         map_kwargs, qp_grid)
from .encode import (add_clip_options, add_rate_options, add_tool_options, add_two_pass_option,
                     preset_help, rate_points)

# roienc.sweep's rate points without --crf/--bitrate/--qp (tests/test_help.py checks them): these,
# or the encoder config's [rate] sweep_crf (the packaged vp9 and av1 configs: SWEEP_CRFS_0_63)
DEFAULT_CRFS = (22, 27, 32, 37)
SWEEP_CRFS_0_63 = (30, 36, 42, 48)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="the whole experiment in one command", description=__doc__)
    add_clip_options(p)
    p.add_argument("--codec", choices=list(CODECS), default="hevc",
                   help="hevc (libx265), h264 (libx264), vp9 (libvpx-vp9) or av1 (SVT-AV1 CLI): docs/codecs.md")
    p.add_argument("--modes", type=csv_list, default=["baseline", "roi"],
                   help="comma list, must include baseline (default baseline,roi)")
    add_rate_options(p, multi=True, default="CRF " + ",".join(map(str, DEFAULT_CRFS))
                     + " for hevc and h264, " + ",".join(map(str, SWEEP_CRFS_0_63))
                     + " for vp9 and av1 (0..63 scales): the encoder config's [rate] sweep_crf "
                       "when it has one")
    add_two_pass_option(p)
    p.add_argument("--preset", help=preset_help())
    p.add_argument("--config", help="encoder config TOML or packaged name (default: the codec's "
                                    "packaged config: " + ", ".join(CODECS) + ")")
    p.add_argument("--zone-mode", choices=["q", "b"],
                   help="zones as QPs or bitrate multipliers (default: q under CRF, b under bitrate)")
    p.add_argument("--roi-threshold", type=float, default=0.5,
                   help="ROI = pixels whose judging importance is >= this")
    j = p.add_argument_group("judging regions (default: the first QP mapping's own maps, self-judged)")
    j.add_argument("--judge-labels-root", metavar="DIR",
                   help="per-frame labels (named by --judge-labels-pattern) from which judge maps "
                        "are built with the same importance settings: regions the encoder did not use")
    j.add_argument("--judge-labels-pattern", default="{frame_id}_labelIds.png", metavar="PATTERN",
                   help="file name of a frame's labelIds under --judge-labels-root")
    j.add_argument("--judge-maps", metavar="DIR", help="a build-maps output whose ROI judges every encode")
    p.add_argument("--no-settings-reference", action="store_true",
                   help="do not encode the roi-settings reference (ROI settings, zero offsets)")
    p.add_argument("--ssim", action="store_true",
                   help="evaluate SSIM too (ssim_* columns; off by default: two thirds of the "
                        "metrics' CPU time with it)")
    p.add_argument("--jobs", type=int_range("--jobs", 1), default=1, metavar="N",
                   help="encodes run at once, each encoder with its share of the CPUs as threads "
                        "(see --threads); the maps and the evaluation run in --workers processes")
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads of each encode, as roienc encode --threads (the bitstream "
                        "depends on it; default: the CPUs divided among --jobs, or the encoder's "
                        "own choice with one job)")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder (rerun the same command to resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_map_options(p, multi_qp=True)
    block = next(a for a in p._actions if a.dest == "block_size")
    block.help = (f"QP block size in px (default: the encoder config's [roi] block_size, else "
                  f"{block.default[0] if isinstance(block.default, list) else block.default}: "
                  "16 for h264, 32 for the others; comma list: every combination is swept)")
    block.default = None
    add_tool_options(p)
    add_executor_options(p, command="sweep")
    p.set_defaults(func=run, _parser=p)


def resolve_block_size(args: argparse.Namespace) -> None:
    """``--block-size`` not given: the encoder config's ``[roi] block_size`` (h264: 16, x264's
    macroblock), else the library's default (32, x265's quantisation group)."""
    if args.block_size is None:
        from ..configs import load_config
        from ..maps import QPParams
        size = load_config(args.config, codec=args.codec).map_block_size
        args.block_size = [size if size is not None else QPParams().block_size]


def run(args: argparse.Namespace) -> int:
    from ..sweep import run_sweep
    resolve_block_size(args)
    opts = map_kwargs(args)
    rates = rate_points(args) if any(getattr(args, k) is not None for k in ("crf", "bitrate", "qp")) else None
    res = run_sweep(args.cityscapes_root, args.out, split=args.split, cities=args.cities,
                    codec=args.codec, modes=tuple(args.modes), rates=rates, source=args.source,
                    sequence_ids=args.sequence, map_options=opts, qp_grid=qp_grid(args),
                    judge_maps=args.judge_maps, judge_labels_root=args.judge_labels_root,
                    judge_labels_pattern=args.judge_labels_pattern,
                    settings_reference=not args.no_settings_reference, config=args.config,
                    preset=args.preset, jobs=args.jobs, roi_threshold=args.roi_threshold,
                    zone_mode=args.zone_mode, ffmpeg=args.ffmpeg, x265=args.x265,
                    svtav1=args.svtav1,
                    executor=executor_spec(args), progress=not args.no_progress,
                    two_pass=args.two_pass, ssim=args.ssim, engine=args.engine,
                    threads=args.threads,
                    argv=["roienc", *sys.argv[1:]])
    print(summary_table(res))
    print(f"sweep: {res.run_dir}/results.csv, bdrate.csv, frontier.csv, frames.csv, rd_*.png, report: {res.report}")
    failed = [e for e in res.encodes if e.get("status") != "ok"]
    for e in failed:
        print(f"  encode {e['clip']} {e['mode']} {e['rate_label']}: {e['status']}: "
              f"{(e.get('error') or '').splitlines()[0] if e.get('error') else ''}")
    for e in res.errors:
        print(f"  evaluate {e.get('sidecar')}: {str(e.get('error', '')).splitlines()[0]}")
    if failed or res.errors:
        print(f"sweep: {len(failed)} encode(s) and {len(res.errors)} evaluation(s) failed: the tables "
              "lack those rows (exit status 1)")
        return 1
    return 0


def summary_table(res) -> str:
    """The console's tables: each a mean over the run's clips, said so; BD-rate means with how
    many clips behind them are marked unreliable; why BD-rates are empty with too few rates."""
    from ..report import mark_means

    df = res.results
    n = df["clip"].nunique() if "clip" in df else 0
    agg = (df.groupby(["maps", "codec", "mode", "rate_value"], as_index=False)
           [["kbps", "psnr_roi", "psnr_nonroi", "psnr_y"]].mean())
    lines = [f"Mean over {n} clip{'s' * (n != 1)} at each rate point (per clip: results.csv):",
             agg.to_string(index=False, float_format=lambda v: f"{v:.2f}")]
    rates = df.groupby(["maps", "mode"])["rate_value"].nunique().min() if len(df) else 0
    if rates < 4:
        lines.append(f"\nBD-rates need at least 4 rate points per curve (bjontegaard's akima fit "
                     f"through 4 or more points); this run has {rates}, so they are NaN. Pass 4 or "
                     "more, e.g. --crf 24,28,32,36.")
    bd = res.bdrate[res.bdrate["clip"] == "mean"]
    if len(bd):
        bd = mark_means(res.bdrate, bd)
        lines.append(f"\nBD-rate, mean over {n} clip{'s' * (n != 1)} (per clip, with reliability "
                     "notes: bdrate.csv, report.html); negative = fewer bits for the same quality; "
                     "baseline = the plain encoder, roi-settings = the ROI's encoder settings with "
                     "zero offsets; clips_marked = clips whose curves overlap too little:")
        lines.append(f"regions judged by: {bd['judged_by'].iloc[0]}")
        cols = ["maps", "mode", "reference", "metric", "bd_rate_pct", "bd_psnr_db"]
        cols += ["clips_marked"] * ("clips_marked" in bd)
        lines.append(bd[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return "\n".join(lines)
