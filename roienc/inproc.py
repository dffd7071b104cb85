"""In-process FFmpeg encodes (PyAV): the ROI side data attached frame by frame.

The FFmpeg CLI applies per-frame ROI through one filter graph holding every frame's ``addroi``
chain; its scheduler scans all filters of a graph at every step, so the cost grows with
frames x filters (quadratic in clip length: 1.5x the baseline's time on a 300-frame clip of real
maps). Here the same libavformat/libavcodec/libavfilter calls run from Python, through the FFmpeg
libraries the ``av`` wheel bundles (with libx265, libx264 and libvpx-vp9): each run of frames with one QP grid
goes through a small graph of its own ``addroi`` chain only (``buffer -> addroi... ->
buffersink``), so the cost is linear in clip length and independent of how many distinct grids
the clip has.

The runner is a command of its own, ``python3 .../roienc/inproc.py ARGV`` (run as a script, so
it needs nothing of roienc but this file: it imports only the standard library and ``av``), whose ``ARGV`` is the
FFmpeg command line roienc would otherwise run (the subset :meth:`FFmpegEncoder.command
<roienc.encoders.ffmpeg.FFmpegEncoder.command>` writes), with the ROI filter graph replaced by ``-roi FILE``:
a JSON list of runs, each ``{"frames": [first, last], "chain": "addroi=...,addroi=..."}`` with
the very chains of the CLI's filter script (first-listed rectangle wins, ``qoffset=dq/range``).
The encode sidecar records this argv; a run folder can be replayed by hand with it.

Semantics kept from the CLI: frames are read by the same demuxer options, converted by the same
``-vf`` chain (``format=<pix_fmt>``), their decoder picture type cleared before encoding (as the
CLI does, so the encoder picks frame types), timestamps ``n / fps``; encoder options are passed
as AVOptions exactly as the CLI passes them. A frame of a run whose chain is empty, and every frame
of a clip without ROI, goes to the encoder untouched: an all-zero map gives the baseline's exact
bitstream.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

MIN_AV = (14, 0)

# flags of FFmpeg's command line that change nothing here
_IGNORED_FLAGS = {"-hide_banner", "-nostdin", "-y", "-an"}
# options that take a value and change nothing here (stream selection of a one-stream graph)
_IGNORED_OPTS = {"-map", "-fps_mode", "-loglevel"}
# encoder options passed through as AVOptions: x264/x265's and libvpx-vp9's own (each its own
# option there: -deadline realtime -cpu-used 5 ...)
_ENCODER_OPTS = {"-preset", "-tune", "-crf", "-qp", "-x265-params", "-x264-params",
                 "-deadline", "-cpu-used", "-aq-mode", "-lag-in-frames", "-row-mt",
                 "-tile-columns", "-tile-rows", "-frame-parallel", "-auto-alt-ref",
                 "-arnr-maxframes", "-arnr-strength", "-static-thresh", "-undershoot-pct",
                 "-overshoot-pct", "-error-resilient", "-noise-sensitivity", "-sharpness",
                 "-qmin", "-qmax", "-g", "-keyint_min", "-speed", "-quality", "-tune-content",
                 "-enable-tpl", "-corpus-complexity"}


@dataclass
class Argv:
    """The parsed subset of an FFmpeg command line."""

    input: str = ""
    input_format: str | None = None
    input_options: dict[str, str] = field(default_factory=dict)
    rate: Fraction | None = None
    frames: int | None = None
    vf: str = ""
    roi: str | None = None
    encoder: str = ""
    options: dict[str, str] = field(default_factory=dict)
    bit_rate: int | None = None
    threads: int | None = None
    pix_fmt: str | None = None
    tag: str | None = None
    output: str = ""
    output_format: str | None = None


class ArgvError(ValueError):
    """An argv or ``-roi`` file the runner cannot run (reported on stderr, exit status 1)."""


def _bitrate(text: str) -> int:
    mult = {"k": 1000, "K": 1000, "M": 1000000}.get(text[-1:], 1)
    return int(float(text[:-1] if mult != 1 else text) * mult)


def parse_argv(argv: list[str]) -> Argv:
    """Parse the FFmpeg-style argv :meth:`roienc.encoders.ffmpeg.FFmpegEncoder.command` writes
    (one input, one video output); anything else is refused by name."""
    a = Argv()
    pending: dict[str, str] = {}
    i, n = 0, len(argv)

    def value() -> str:
        if i + 1 >= n:
            raise ArgvError(f"{argv[i]} needs a value")
        return argv[i + 1]

    while i < n:
        opt = argv[i]
        if opt in _IGNORED_FLAGS:
            i += 1
            continue
        if not opt.startswith("-") or opt == "-":
            if a.output:
                raise ArgvError(f"one output only, got {a.output!r} and {opt!r}")
            a.output = opt
            i += 1
            continue
        v = value()
        if opt in _IGNORED_OPTS:
            pass
        elif opt == "-i":
            if a.input:
                raise ArgvError("one input only")
            a.input = v
            a.input_format = pending.pop("f", None)
            if "r" in pending:
                a.rate = Fraction(pending.pop("r"))
            a.input_options = pending
            pending = {}
        elif not a.input:                               # input options
            key = opt[1:]
            if key not in ("framerate", "start_number", "pattern_type", "f", "r", "safe"):
                raise ArgvError(f"input option {opt} is not supported in-process")
            pending[key] = v
        elif opt in ("-frames:v", "-vframes"):
            a.frames = int(v)
        elif opt == "-vf":
            a.vf = v
        elif opt == "-roi":
            a.roi = v
        elif opt in ("-c:v", "-vcodec"):
            a.encoder = v
        elif opt in _ENCODER_OPTS:
            a.options[opt[1:]] = v
        elif opt == "-b:v":
            a.bit_rate = _bitrate(v)
        elif opt == "-threads":
            a.threads = int(v)
        elif opt == "-pix_fmt":
            a.pix_fmt = v
        elif opt == "-tag:v":
            a.tag = v
        elif opt == "-f":
            a.output_format = v
        else:
            raise ArgvError(f"option {opt} is not supported in-process")
        i += 2
    if not a.input or not a.output or not a.encoder:
        raise ArgvError("need -i INPUT, -c:v ENCODER and an output")
    if a.rate is None:
        a.rate = Fraction(a.input_options.get("framerate", "25"))
    return a


def parse_chain(chain: str) -> list[tuple[str, str]]:
    """``'format=yuv420p,addroi=x=0:y=0:...'`` -> ``[(name, args), ...]`` (roienc's own simple
    chains: no quoting, no labels)."""
    out = []
    for item in filter(None, (s.strip() for s in chain.split(","))):
        name, _, args = item.partition("=")
        out.append((name, args))
    return out


def read_roi(path: str | Path) -> list[tuple[int, int, str]]:
    """Runs ``(first, last, chain)`` of a ``-roi`` file, checked to be in order and disjoint."""
    doc = json.loads(Path(path).read_text())
    runs = []
    last = -1
    for r in doc["runs"]:
        a, b = (int(x) for x in r["frames"])
        if a <= last or b < a:
            raise ArgvError(f"{path}: runs must be in frame order and disjoint ({a}..{b})")
        runs.append((a, b, str(r["chain"])))
        last = b
    return runs


def write_roi(path: str | Path, runs: list[tuple[int, int]], chains: list[str], **info) -> None:
    """The ``-roi`` file for ``runs`` (inclusive frame ranges) and their addroi chains; runs
    without a chain are left out (their frames carry no ROI)."""
    doc = {"format": "roienc-roi/1", **info,
           "runs": [{"frames": [a, b], "chain": c} for (a, b), c in zip(runs, chains) if c]}
    Path(path).write_text(json.dumps(doc, indent=0) + "\n")


def _chain_graph(av, chain: list[tuple[str, str]], template=None, **buffer_kw):
    g = av.filter.Graph()
    nodes = [g.add_buffer(template=template) if template is not None else g.add_buffer(**buffer_kw)]
    nodes += [g.add(name, args) for name, args in chain]
    nodes.append(g.add("buffersink"))
    g.link_nodes(*nodes)
    g.configure()
    return g


def _open_av():
    try:
        import av
    except ImportError as exc:
        raise ArgvError(f"PyAV is not installed ({exc}): pip install av") from None
    import logging
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, format="[%(name)s] %(levelname)s: %(message)s")
    av.logging.set_level(av.logging.INFO)    # FFmpeg's own messages (e.g. unknown options) to stderr
    logging.getLogger("libav").setLevel(logging.INFO)
    return av


def encode(a: Argv, progress=None) -> int:
    """Run the encode ``a`` describes; return the number of frames encoded."""
    av = _open_av()
    from av.video.frame import PictureType
    runs = read_roi(a.roi) if a.roi else []
    inp = av.open(a.input, format=a.input_format, options=dict(a.input_options))
    out = None
    try:
        ist = inp.streams.video[0]
        ist.thread_type = "AUTO"                # frame threads, as the CLI's decoder
        out = av.open(a.output, "w", format=a.output_format)
        st = out.add_stream(a.encoder, rate=a.rate, options=dict(a.options))
        tb = Fraction(1) / a.rate
        conv = None
        roi_graph = None
        ri = 0
        n = 0
        limit = a.frames if a.frames is not None else float("inf")
        for frame in inp.decode(ist):
            if n >= limit:
                break
            if conv is None:
                vf = parse_chain(a.vf)
                if vf:
                    conv = _chain_graph(av, vf, template=ist)
                first = frame
                if conv is not None:
                    conv.push(frame)
                    first = conv.pull()
                st.width, st.height = first.width, first.height
                st.pix_fmt = a.pix_fmt or first.format.name
                st.time_base = tb
                if a.bit_rate is not None:
                    st.bit_rate = a.bit_rate
                if a.threads is not None:
                    st.codec_context.thread_count = a.threads
                if a.tag:
                    st.codec_context.codec_tag = a.tag
                yf = first
            elif conv is not None:
                conv.push(frame)
                yf = conv.pull()
            else:
                yf = frame
            while ri < len(runs) and runs[ri][1] < n:
                ri, roi_graph = ri + 1, None
            if ri < len(runs) and runs[ri][0] <= n:
                if roi_graph is None:
                    roi_graph = _chain_graph(av, parse_chain(runs[ri][2]), width=yf.width,
                                             height=yf.height, format=yf.format, time_base=tb)
                roi_graph.push(yf)
                yf = roi_graph.pull()
            yf.pts = n
            yf.time_base = tb
            yf.pict_type = PictureType.NONE      # let the encoder choose, as the CLI does
            for pkt in st.encode(yf):
                out.mux(pkt)
            n += 1
            if progress:
                progress(n)
        if n == 0:
            raise ArgvError(f"no frame read from {a.input}")
        for pkt in st.encode(None):
            out.mux(pkt)
    finally:
        if out is not None:
            out.close()
        inp.close()
    return n


def check_options(encoder: str, options: dict[str, str], pix_fmt: str) -> None:
    """A 1-frame encode of a grey 64x64 frame with these encoder options (to /dev/null-like
    memory output); FFmpeg's messages go to stderr, where the caller looks for unknown options."""
    av = _open_av()
    import io
    import numpy as np
    buf = io.BytesIO()
    out = av.open(buf, "w", format="mp4")
    st = out.add_stream(encoder, rate=17, options=dict(options))
    st.width = st.height = 64
    st.pix_fmt = pix_fmt
    f = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24")
    f = f.reformat(format=pix_fmt)
    f.pts = 0
    for pkt in st.encode(f):
        out.mux(pkt)
    for pkt in st.encode(None):
        out.mux(pkt)
    out.close()


def versions() -> dict | None:
    """PyAV's version and the FFmpeg it bundles, with the encoders it has; None without PyAV
    (or one older than :data:`MIN_AV`)."""
    try:
        import av
        import av.codec
    except ImportError:
        return None
    try:
        if tuple(int(x) for x in av.__version__.split(".")[:2]) < MIN_AV:
            return None
    except ValueError:
        pass
    encoders = []
    for name in ("libx265", "libx264", "libvpx-vp9"):
        try:
            av.codec.Codec(name, "w")
            encoders.append(name)
        except Exception:      # noqa: BLE001 - not built in
            pass
    return {"av": av.__version__, "ffmpeg": getattr(av, "ffmpeg_version_info", "unknown"),
            "libraries": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
            "encoders": encoders}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["--check"]:
            doc = json.loads(argv[1])
            check_options(doc["encoder"], doc["options"], doc["pix_fmt"])
            return 0
        if argv[:1] == ["--versions"]:
            print(json.dumps(versions()))
            return 0
        a = parse_argv(argv)

        def progress(k: int) -> None:
            sys.stderr.write(f"frame={k}\n")
            sys.stderr.flush()
        n = encode(a, progress)
        sys.stderr.write(f"roienc.inproc: encoded {n} frames into {a.output}\n")
        return 0
    except Exception as exc:       # noqa: BLE001 - a command: report and exit non-zero
        sys.stderr.write(f"roienc.inproc: error: {type(exc).__name__}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.path.pop(0)        # run as a script: roienc's own modules must not shadow anything
    sys.exit(main())
