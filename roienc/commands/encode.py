"""`roienc encode`: encode Cityscapes clips with importance-driven QP maps."""
from __future__ import annotations

import argparse
import functools
import math

from ..configs import CODECS, DEFAULT_CONFIG, check_rate, load_config, packaged_configs
from ..errors import InputError
from .build_maps import csv_list, int_range, name_arg, names_arg

# roienc.encode.MODES and .ENGINES, copied so that --help does not import the encode runner
# (numpy, pandas, OpenCV, PyAV); tests/test_help.py checks that they are the same
MODES = ("baseline", "roi-settings", "roi", "zones", "roi+zones", "qpfile")
ENGINES = ("auto", "pyav", "ffmpeg")


@functools.cache
def packaged_defaults() -> dict[str, tuple[str, str]]:
    """Per codec, the preset and the rate point (without --crf/--bitrate/--qp) of its packaged
    config (``encoder_configs/<codec>.toml``), as --help shows them: ``("medium", "CRF 28")``."""
    packaged = packaged_configs()
    out = {}
    for codec in CODECS:
        cfg = load_config(packaged[DEFAULT_CONFIG[codec]], codec)
        control, value = cfg.default_rate()
        out[codec] = (cfg.preset, f"{value:g} kbit/s" if control == "bitrate"
                      else f"{control.upper()} {value:g}")
    return out


def per_codec(values: dict[str, str]) -> str:
    """``{"hevc": "28", "h264": "28", "vp9": "36"}`` -> ``"28 for hevc and h264, 36 for vp9"``."""
    groups: dict[str, list[str]] = {}
    for codec, v in values.items():
        groups.setdefault(v, []).append(codec)
    return ", ".join(f"{v} for {' and '.join(c) if len(c) < 3 else ', '.join(c)}"
                     for v, c in groups.items())


def preset_help() -> str:
    """--preset's help, its defaults read from the packaged configs."""
    presets = {c: p for c, (p, _) in packaged_defaults().items() if p}
    none = [c for c, (p, _) in packaged_defaults().items() if not p]
    return ("encoder preset; ultrafast and superfast are refused with ROI (they turn AQ off) "
            f"(default: the codec's packaged config: {per_codec(presets)}"
            + "".join(f"; none for {c} (the encoder has no presets)" for c in none) + ")")


def _arg_type(control: str, multi: bool):
    """An argparse type for ``--crf``/``--bitrate``/``--qp``: a bad value is argparse's one-line
    usage error (exit 2), not a traceback. A CRF/QP is only read as a number here: its range
    depends on --codec, which may come later on the command line (:func:`rate_points`)."""
    def one(text: str) -> float:
        try:
            if control == "bitrate":
                return check_rate(control, text)
            return _number(control, text.strip())
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    def many(text: str) -> list[float]:
        vals = [one(x) for x in csv_list(text)]
        if not vals:
            raise argparse.ArgumentTypeError(f"--{control} needs at least one value")
        return vals
    many.__name__ = one.__name__ = control
    return many if multi else one


def _number(control: str, text: str) -> float:
    """``text`` as a finite number of ``--control`` (its range is checked with the codec)."""
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"--{control} must be a number, got {text!r}") from None
    if not math.isfinite(v):
        raise InputError(f"--{control} must be a finite number, got {text!r}")
    return v


def add_rate_options(p: argparse.ArgumentParser, multi: bool = False,
                     default: str | None = None) -> None:
    """--crf, --bitrate, --qp; ``default``: what runs without them (encode: each codec's
    packaged config's [rate] section, shown per codec)."""
    if default is None:
        default = ("the [rate] of the codec's packaged config: "
                   + per_codec({c: r for c, (_, r) in packaged_defaults().items()}))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--crf", type=_arg_type("crf", multi),
                   help="constant rate factor, 0-51 (vp9, av1: 0-63)" + (" (comma list)" if multi else "")
                        + f" (default, without --crf/--bitrate/--qp: {default})")
    g.add_argument("--bitrate", type=_arg_type("bitrate", multi),
                   help="target bitrate, e.g. 4M or 800k" + (" (comma list)" if multi else ""))
    g.add_argument("--qp", type=_arg_type("qp", multi),
                   help="constant QP (baseline only: ROI is ignored under CQP)")


def add_two_pass_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--two-pass", action="store_true",
                   help="with --bitrate: an analysis pass (same filters, ROI included), then the "
                        "encode (libx265/libx264 through FFmpeg)")


def rate_points(args: argparse.Namespace, default_crf: float | None = None) -> list | None:
    """The rate points asked for; none asked: ``default_crf``, or None (the encoder config's
    ``[rate]`` section decides). A CRF/QP outside the codec's scale (0..51; vp9, av1: 0..63) is
    the command's usage error (exit 2), like any other bad value, with that codec's bounds.
    The points are :class:`roienc.encode.RatePoint` objects."""
    from ..encode import RatePoint
    for control in ("crf", "bitrate", "qp"):
        val = getattr(args, control)
        if val is not None:
            vals = val if isinstance(val, list) else [val]
            codec = getattr(args, "codec", "hevc")
            parser = getattr(args, "_parser", None)
            for v in vals:
                try:
                    check_rate(control, v, codec=codec)
                except InputError as exc:
                    if parser is not None:
                        parser.error(f"argument --{control}: {exc}")
                    raise
            return [RatePoint(control, float(v)) for v in vals]
    return None if default_crf is None else [RatePoint("crf", default_crf)]


def _mode_list(text: str) -> list[str]:
    modes = csv_list(text)
    if not modes:
        raise argparse.ArgumentTypeError(f"give one or more of {', '.join(MODES)}")
    return modes


def add_tool_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ffmpeg", metavar="PATH", help="FFmpeg binary (default: $ROIENC_FFMPEG, PATH, bundled)")
    p.add_argument("--x265", metavar="PATH", help="x265 CLI for qpfile mode (default: $ROIENC_X265, PATH)")
    p.add_argument("--svtav1", metavar="PATH",
                   help="SvtAv1EncApp for --codec av1, >= 1.6 for ROI (default: $ROIENC_SVTAV1, PATH)")
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help="how libx265/libx264/libvpx-vp9 encodes run, one engine for the whole run: 'pyav' "
                        "in-process through the av wheel's FFmpeg (ROI per frame, linear in clip "
                        "length), 'ffmpeg' the FFmpeg CLI; 'auto' pyav unless --ffmpeg is given "
                        "or --two-pass asked (default: $ROIENC_ENGINE, else auto)")


def add_clip_options(p: argparse.ArgumentParser) -> None:
    """The dataset and which of its clips (encode and sweep alike)."""
    p.add_argument("--cityscapes-root", required=True, metavar="ROOT", help="Cityscapes-layout root")
    p.add_argument("--split", default="val", type=name_arg("--split"), help="dataset split")
    p.add_argument("--cities", type=names_arg("--cities"), metavar="A,B", help="only these cities")
    p.add_argument("--source", choices=["sequence", "frames"],
                   help="30-frame snippets (default when leftImg8bit_sequence exists) or the "
                        "annotated frames of a city as one clip")
    p.add_argument("--sequence", nargs="+", metavar="ID", help="only these snippets, e.g. aachen_000000")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="encode clips (baseline / roi / zones / qpfile)",
                       description=__doc__)
    p.add_argument("--codec", choices=list(CODECS), default="hevc",
                   help="hevc (libx265), h264 (libx264: baseline and roi only), vp9 (libvpx-vp9: "
                        "baseline and roi), av1 (SVT-AV1 CLI; ROI needs SVT-AV1 1.6 or newer): "
                        "docs/codecs.md")
    add_clip_options(p)
    p.add_argument("--maps", metavar="OUT", help="build-maps output (needed except for baseline)")
    p.add_argument("--mode", required=True, type=_mode_list,
                   help=f"one or more of {', '.join(MODES)} (comma list)")
    add_rate_options(p, multi=True)
    add_two_pass_option(p)
    p.add_argument("--preset", help=preset_help())
    p.add_argument("--config", help="encoder config TOML or packaged name (hevc, h264, hevc_x265cli, vp9, av1) "
                        "(default: the codec's packaged config; hevc_x265cli in qpfile mode)")
    p.add_argument("--zone-mode", choices=["q", "b"], help="zones as QPs or bitrate multipliers (default: q under CRF, b under bitrate)")
    p.add_argument("--out", required=True, metavar="ENC", help="folder of the encodes")
    p.add_argument("--jobs", type=int_range("--jobs", 1), default=1, metavar="N",
                   help="clips encoded in parallel (default: 1), each encoder with its share of "
                        "the CPUs as threads (see --threads)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads of each encode (x265 pools, x264/libvpx -threads, SVT-AV1 --lp); "
                        "the bitstream depends on it, so a given N reproduces a run's bytes (same encoder "
                        "build) on any machine (default: the CPUs divided among --jobs, or the "
                        "encoder's own choice with one job)")
    p.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="local process pool or a Dask cluster")
    p.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler, e.g. tcp://HOST:8786")
    p.add_argument("--skip-existing", action="store_true",
                   help="resume: keep encodes whose sidecar, settings signature, source frames and size match")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_tool_options(p)
    p.set_defaults(func=run, _parser=p)


def run(args: argparse.Namespace) -> int:
    from ..dataset import find_clips
    from ..encode import encode_many
    from ..executor import ExecutorSpec
    rates = rate_points(args)              # the codec's range: a usage error before any work
    clips = find_clips(args.cityscapes_root, args.split, args.cities, args.source, args.sequence)
    results = encode_many(clips, args.maps, codec=args.codec, modes=args.mode,
                          rates=rates, config=args.config, out=args.out, jobs=args.jobs,
                          ffmpeg=args.ffmpeg, x265=args.x265, svtav1=args.svtav1,
                          skip_existing=args.skip_existing,
                          zone_mode=args.zone_mode, cityscapes_root=args.cityscapes_root,
                          preset=args.preset, progress=not args.no_progress,
                          executor=ExecutorSpec(args.executor, args.jobs, args.scheduler),
                          two_pass=args.two_pass, engine=args.engine, threads=args.threads)
    ok = [r for r in results if r["status"] == "ok"]
    for r in results:
        line = f"{r['clip']:24s} {r['codec']} {r['mode']:10s} {r['rate_label']:14s} "
        if r["status"] == "ok":
            line += f"{r['kbps']:9.1f} kbps  {r['encode_seconds']:6.1f} s"
        else:
            line += f"{r['status'].upper()}: {(r['error'] or '').splitlines()[0]}"
        print(line)
    print(f"encode: {len(ok)}/{len(results)} ok -> {args.out}")
    return 0 if len(ok) == len(results) else 1
