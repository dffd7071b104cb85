"""Block QP grids -> encoder instructions: FFmpeg addroi chains, per-frame filter scripts,
x265 zones and x265 qpfiles.

Everything here is text a user can read, copy and run with stock FFmpeg/x265; the encoder classes
(:mod:`roienc.encoders`) use it unchanged. What is one encoder's own (which settings make it
ignore the ROI, libvpx's units and levels, the SVT-AV1 map) lives with its class; the names that
lived here (``check_roi_compatible``, ``check_vp9_roi``, ``vpx_delta_grids``, ``VPX_MAX_*``)
still import from here.

- **addroi**: the delta grid ``dq = qp - base_qp`` is covered by block-aligned rectangles that
  may overlap, the first listed winning where they do (:func:`priority_rectangles`; FFmpeg's
  libx264/libx265 wrappers walk the ROI list in reverse, and ``addroi`` appends), each an
  ``addroi=x:y:w:h:qoffset=<dq>/<range>``; libx264/libx265 multiply ``qoffset`` by the QP range
  (51 for 8-bit, 63 for 10-bit), so ``dq/51`` is an exact offset of ``dq`` QP.
- **per-frame ROI**: addroi has no timeline support, so a filter script cuts the stream with one
  ``segment`` filter into one branch per run of frames with identical grids (each frame goes to
  its own branch only), applies the run's chain, ``concat``s the runs in order and renumbers
  timestamps (``setpts=N/FRAME_RATE/TB``; run with ``-fps_mode passthrough``). The previous
  graph, ``split`` into one ``trim`` per run (``router='trim'``), sent every frame to every
  branch not yet finished. Either way FFmpeg's scheduler (``ff_filter_graph_run_once``) scans
  all filters of the graph at every step, so the cost grows with the square of the number of
  addroi filters: fewer rectangles matter twice.
  The first design, ``select='between(n,a,b)'`` + ``interleave``, is correct but ``interleave``
  waits for a frame on every input before it emits one, so it holds back up to the whole clip:
  measured with FFmpeg 5.1 at 1024x512, 300 one-frame runs, peak RSS 283 MiB with interleave vs
  62 MiB with trim/concat (30 runs: 74 vs 57 MiB). Worse, its output time base (1/1000000) made
  x265 rate-control the clip as if at ~1 MHz (average QP 37.9 vs 32.4 at the same CRF). The
  segment (or trim)/concat graph without its addroi filters gives the baseline's exact
  bitstream (a test).
- **zones**: one frame-level QP per frame (mean block QP, rounded), equal neighbours collapsed into
  ``start,end,q=QP`` (or ``b=<ratio>``) zones for ``-x265-params zones=`` / ``x265 --zones``.
  x265 3.5 matches zones in encode order with ``framesDone + 1 >= start && framesDone < end``
  (``RateControl::getZone``), so clip frames ``a..b`` (0-based, inclusive) are written as zone
  ``a+1,b+1``; written as ``a,b`` the last frame of every zone falls into the next one (measured
  with x265 3.5 CSV logs). Zones are frame-exact only without B-frames (``bframes=0``): a B
  picture is rate-controlled in encode order, after its references. Under CRF the first IDR
  keeps the QP the rate control gives it (measured: CRF 30 -> 27.1 whatever the zone says).
- **qpfile**: ``<frame> <type> <qp>`` lines for ``x265 --qpfile``. x265 requires a frame type on
  every line, so the qpfile forces the GOP: ``I`` (IDR) on frame 0 and every ``keyint``-th frame,
  ``P`` elsewhere. Encoder configs for qpfile mode therefore use ``bframes=0``; the baseline of a
  qpfile comparison must use the same config.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Rect:
    """A region of interest in pixels (clipped to the frame) with its QP delta."""

    x: int
    y: int
    w: int
    h: int
    dq: int


def cover_rectangles(dq: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """Exact, non-overlapping cover of the non-zero cells of ``dq`` by equal-value rectangles.

    Each row is cut into maximal runs of equal non-zero value; a run identical in columns and
    value to an open rectangle of the row above extends it. Returns
    ``(row0, col0, row1_exclusive, col1_exclusive, dq)`` in block units, sorted by position.
    """
    g = np.asarray(dq)
    if g.ndim != 2:
        raise InputError(f"dq grid must be 2-D, got shape {g.shape}")
    open_: dict[tuple[int, int, int], int] = {}   # (c0, c1, val) -> row0
    done: list[tuple[int, int, int, int, int]] = []
    gh, gw = g.shape
    for r in range(gh + 1):
        runs: set[tuple[int, int, int]] = set()
        if r < gh:
            row = g[r]
            cuts = np.flatnonzero(np.diff(row)) + 1
            starts = np.concatenate(([0], cuts))
            ends = np.concatenate((cuts, [gw]))
            runs = {(int(s), int(e), int(row[s])) for s, e in zip(starts, ends) if row[s] != 0}
        for key in list(open_):
            if key not in runs:
                c0, c1, val = key
                done.append((open_.pop(key), c0, r, c1, val))
        for key in runs:
            open_.setdefault(key, r)
    done.sort()
    return done


def _greedy_cover(must: np.ndarray, ok: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Rectangles inside ``ok`` whose union contains every ``must`` cell (greedy, few).

    From the first uncovered ``must`` cell in row-major order, every width is tried with the
    tallest height ``ok`` allows there; the rectangle covering most uncovered ``must`` cells wins.
    """
    gh, gw = must.shape
    rows = np.arange(gh)[:, None]
    next_bad = np.minimum.accumulate(np.where(ok, gh, rows)[::-1], axis=0)[::-1]
    down = next_bad - rows                           # run of ok cells from (r, c) downwards
    cols = np.arange(gw)[None, :]
    right = np.minimum.accumulate(np.where(ok, gw, cols)[:, ::-1], axis=1)[:, ::-1]
    todo = must.copy()
    out = []
    for idx in np.flatnonzero(must):                 # row-major: the first uncovered must cell
        r, c = divmod(int(idx), gw)
        if not todo[r, c]:
            continue
        stop = int(right[r, c])                      # end of the ok run rightwards
        heights = np.minimum.accumulate(down[r, c:stop])           # height for width 1..
        sub = todo[r:r + int(heights[0]), c:stop]
        csum = sub.cumsum(0, dtype=np.int32).cumsum(1)             # covered must cells
        gain = csum[heights - 1, np.arange(len(heights))]
        k = int(np.argmax(gain))
        out.append((r, c, r + int(heights[k]), c + k + 1))
        todo[r:r + int(heights[k]), c:c + k + 1] = False
    return out


def priority_rectangles(dq: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """Few, possibly overlapping rectangles that give exactly the grid ``dq`` when the **first**
    rectangle covering a block wins (what libx264/libx265 do: FFmpeg's wrappers fill the offset
    map iterating the ROI list in reverse, "because the first region in the list applies when
    regions overlap"; ``addroi`` appends each region to the frame's list, so the first filter of
    a chain is the first region).

    Values are taken farthest from the most common value first: each value's blocks are covered
    by rectangles that may also span blocks already claimed by earlier (higher-priority)
    rectangles. The most common value comes last, as one whole-frame rectangle (nothing when it
    is 0, the encoder's default). Never longer than :func:`cover_rectangles` (kept if shorter). Returns ``(row0, col0, row1_excl, col1_excl, dq)`` in list order.
    """
    g = np.asarray(dq)
    if g.ndim != 2:
        raise InputError(f"dq grid must be 2-D, got shape {g.shape}")
    best = cover_rectangles(g)
    vals, counts = np.unique(g, return_counts=True)
    if len(vals) <= 1 or len(best) <= 1:
        return best
    by_count = [int(v) for v in vals[np.argsort(counts, kind="stable")]]
    bg = by_count[-1]
    rest = by_count[:-1]
    # by distance from the background value: nested rings of a blurred object, its core first,
    # each ring then spans the core in one rectangle. Measured on real maps (2048x1024, block
    # 16): 96 rectangles a frame against 145 for the disjoint cover; rarest-first, ascending or
    # descending values, or 0 as the background (free) won rarely and by little.
    orders = [tuple(sorted(rest, key=lambda v: (-abs(v - bg), v)) + [bg])]
    gh, gw = g.shape
    for order in orders:
        rects: list[tuple[int, int, int, int, int]] = []
        claimed = np.zeros(g.shape, bool)
        for v in order[:-1]:
            must = (g == v) & ~claimed
            if must.any():
                rects += [(r0, c0, r1, c1, v) for r0, c0, r1, c1 in _greedy_cover(must, must | claimed | (g == v))]
                claimed |= must
            if len(rects) >= len(best):
                break
        else:
            if order[-1] != 0 and not claimed.all():
                rects.append((0, 0, gh, gw, order[-1]))
            if len(rects) < len(best):
                best = rects
    return best


def paint_first_wins(rects: Sequence[tuple[int, int, int, int, int]], shape: tuple[int, int]) -> np.ndarray:
    """The offset grid an encoder derives from ``rects`` (block units, first rectangle wins,
    uncovered blocks 0): the list painted in reverse, as FFmpeg's libx264/libx265 wrappers do."""
    out = np.zeros(shape, np.int16)
    for r0, c0, r1, c1, v in reversed(list(rects)):
        out[r0:r1, c0:c1] = v
    return out


def roi_rects(dq: np.ndarray, block: int, width: int, height: int, *,
              overlapping: bool = True) -> list[Rect]:
    """Rectangles in pixels, clipped to ``width x height``, in priority order (first wins):
    :func:`priority_rectangles`, or with ``overlapping=False`` the disjoint
    :func:`cover_rectangles`."""
    rects = []
    cover = priority_rectangles(dq) if overlapping else cover_rectangles(dq)
    for r0, c0, r1, c1, val in cover:
        x, y = c0 * block, r0 * block
        rects.append(Rect(x, y, min(c1 * block, width) - x, min(r1 * block, height) - y, val))
    return rects


def qp_range_for(pix_fmt: str | None) -> int:
    """QP range libx264/libx265 scale ``qoffset`` by: 51 + 6*(bit_depth-8)."""
    m = re.search(r"p(\d+)(le|be)?$", pix_fmt or "")
    depth = int(m.group(1)) if m and int(m.group(1)) in (9, 10, 12, 14, 16) else 8
    return 51 + 6 * (depth - 8)


def addroi_chain(rects: Sequence[Rect], qp_range: int = 51) -> str:
    """``addroi=...,addroi=...`` ('' when there is nothing to say)."""
    return ",".join(f"addroi=x={r.x}:y={r.y}:w={r.w}:h={r.h}:qoffset={r.dq}/{qp_range}"
                    for r in rects)


@dataclass
class FilterScript:
    """A per-frame ROI filter graph for ``-filter_complex_script`` / ``-/filter_complex``."""

    text: str
    runs: list[tuple[int, int]]           # inclusive frame ranges with identical grids
    rects_per_frame: list[int]
    out_label: str = "vout"
    chains: list[str] = field(default_factory=list)

    @property
    def has_roi(self) -> bool:
        return any(self.rects_per_frame)


def frame_runs(grids: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive ranges of consecutive frames whose grids are identical."""
    n = len(grids)
    if n == 0:
        return []
    flat = np.asarray(grids).reshape(n, -1)
    change = np.flatnonzero(np.any(flat[1:] != flat[:-1], axis=1)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change - 1, [n - 1]))
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


def perframe_filter_script(dq_grids: Sequence[np.ndarray] | np.ndarray, block: int, width: int,
                           height: int, *, qp_range: int = 51, in_label: str = "0:v",
                           out_label: str = "vout", pix_fmt: str | None = None,
                           router: str = "segment", overlapping: bool = True,
                           clear: bool = False) -> FilterScript:
    """Filter graph applying each frame's ROI rectangles (see module docstring).

    ``router='segment'`` (FFmpeg >= 5.0) cuts the stream into the runs with one ``segment``
    filter: every frame goes to its own branch only. ``'trim'`` is the older graph (``split`` into
    one ``trim`` per run: every frame visits every branch not yet finished). ``overlapping``:
    :func:`roi_rects` with the fewer, first-wins rectangles (default) or the disjoint cover.
    ``clear``: every run's chain ends with the whole-frame delta-0 region (:func:`clear_region`),
    so every frame carries ROI side data (libvpx keeps a previous frame's map otherwise).
    """
    if router not in ("segment", "trim"):
        raise InputError(f"router must be 'segment' or 'trim', got {router!r}")
    grids = np.asarray(dq_grids)
    if grids.ndim != 3 or len(grids) == 0:
        raise InputError(f"need a stack of dq grids (N, gh, gw), got shape {grids.shape}")
    runs = frame_runs(grids)
    tail = [clear_region(width, height)] if clear else []
    chains = [addroi_chain(roi_rects(grids[a], block, width, height, overlapping=overlapping)
                           + tail, qp_range) for a, _ in runs]
    rects_per_frame = [0] * len(grids)
    for (a, b), chain in zip(runs, chains):
        n = chain.count("addroi=")
        for i in range(a, b + 1):
            rects_per_frame[i] = n
    head = f"[{in_label}]" + (f"format={pix_fmt}," if pix_fmt else "")
    if len(runs) == 1:
        text = head + (chains[0] or "null") + f"[{out_label}]"
    else:
        n = len(runs)
        outs = "".join(f"[s{i}]" for i in range(n))
        if router == "segment":
            lines = [head + "segment=frames=" + "|".join(str(a) for a, _ in runs[1:]) + outs + ";"]
        else:
            lines = [head + f"split={n}" + outs + ";"]
        for i, ((a, b), chain) in enumerate(zip(runs, chains)):
            cut = ("" if router == "segment" else f"trim=start_frame={a}:end_frame={b + 1},") + "setpts=PTS-STARTPTS"
            lines.append(f"[s{i}]{cut}{',' + chain if chain else ''}[r{i}];")
        lines.append("".join(f"[r{i}]" for i in range(n))
                     + f"concat=n={n}:v=1:a=0,setpts=N/FRAME_RATE/TB[{out_label}]")
        text = "\n".join(lines)
    return FilterScript(text + "\n", runs, rects_per_frame, out_label, chains)


def graph_router(ffmpeg) -> str:
    """``'segment'`` when the FFmpeg has the ``segment`` filter (5.0+) or its filters are unknown,
    else ``'trim'``."""
    filters = getattr(ffmpeg, "filters", None)
    return "trim" if filters and "segment" not in filters else "segment"


def ffmpeg_filter_script_args(ffmpeg, script_path) -> list[str]:
    """Option that reads a filter graph from a file: ``-/filter_complex`` on FFmpeg 7+,
    ``-filter_complex_script`` before (removed in 8)."""
    major = getattr(ffmpeg, "major", None)
    if major is not None and major >= 7:
        return ["-/filter_complex", str(script_path)]
    return ["-filter_complex_script", str(script_path)]


def frame_qps(qp_grids: Sequence[np.ndarray] | np.ndarray) -> list[int]:
    """Frame-level QP per frame: mean of its block QPs, rounded half away from zero."""
    grids = np.asarray(qp_grids, dtype=np.float64)
    means = grids.reshape(len(grids), -1).mean(axis=1)
    return [int(math.floor(m + 0.5)) for m in means]


def _collapse(values: Sequence) -> list[tuple[int, int, object]]:
    out: list[tuple[int, int, object]] = []
    for i, v in enumerate(values):
        if out and out[-1][2] == v and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i, v)
        else:
            out.append((i, i, v))
    return out


def zones_string(frame_qps_: Sequence[int], mode: str = "q", *, qp_offset: int = 0) -> str:
    """x265 zones for per-frame QPs.

    ``mode='q'``: ``start,end,q=QP`` with QP = frame QP + ``qp_offset`` (clipped to 0..51), so a
    rate sweep shifts absolute QPs with its rate point. ``mode='b'``: ``start,end,b=<ratio>``, a
    bitrate multiplier relative to the clip mean: ``2**((mean_qp - qp)/6)`` (6 QP = 2x bits), so
    the rate control keeps the target and only redistributes bits.
    """
    qps = list(frame_qps_)
    if not qps:
        return ""
    if mode == "q":
        vals = [min(51, max(0, q + qp_offset)) for q in qps]
        return "/".join(f"{a + 1},{b + 1},q={v}" for a, b, v in _collapse(vals))
    if mode == "b":
        mean = float(np.mean(qps))
        vals = [round(2.0 ** ((mean - q) / 6.0), 3) for q in qps]
        return "/".join(f"{a + 1},{b + 1},b={v:g}" for a, b, v in _collapse(vals))
    raise InputError(f"--zone-mode must be 'q' or 'b', got {mode!r}")


def qpfile_text(frame_qps_: Sequence[int], *, frame_types: Sequence[str] | None = None,
                qp_offset: int = 0, keyint: int | None = None) -> str:
    """``<frame> <type> <qp>`` per frame for ``x265 --qpfile`` (see module docstring)."""
    qps = list(frame_qps_)
    if frame_types is None:
        frame_types = ["I" if i == 0 or (keyint and i % keyint == 0) else "P" for i in range(len(qps))]
    if len(frame_types) != len(qps):
        raise InputError("qpfile: one frame type per frame is needed")
    bad = [t for t in frame_types if t not in ("I", "i", "K", "P", "B", "b")]
    if bad:
        raise InputError(f"qpfile: frame types must be I, i, K, P, B or b, got {bad[0]!r}")
    return "".join(f"{i} {t} {min(51, max(0, q + qp_offset))}\n"
                   for i, (t, q) in enumerate(zip(frame_types, qps)))


def parse_params(text: str | None) -> dict[str, str]:
    """``'a=1:b=2:c'`` -> ``{'a': '1', 'b': '2', 'c': '1'}`` (x264/x265 params syntax)."""
    out: dict[str, str] = {}
    for item in (text or "").split(":"):
        if not item:
            continue
        k, _, v = item.partition("=")
        out[k.strip()] = v.strip() if _ else "1"
    return out


# --- levels ---------------------------------------------------------------------------------
# Encoders whose ROI is a segmentation map carry few distinct offsets a picture: libvpx-vp9 7
# non-zero (8 segments, segment 0 is delta 0), SVT-AV1 8 values a map line.
MAX_LEVELS = 7


def quantise_levels(values: np.ndarray, weights: np.ndarray | None = None,
                    max_levels: int = MAX_LEVELS) -> np.ndarray:
    """``values`` (integers) with at most ``max_levels`` distinct non-zero values, 0 kept as 0.

    The rule: the weighted squared error ``sum w * (v - q(v))**2`` is minimised exactly over all
    quantisers whose levels are integers, one of them 0 (free: segment 0) and at most
    ``max_levels`` others. With the 0 level fixed, nearest-level assignment still makes every
    level's cell an interval of the sorted distinct values, so a dynamic programme over those
    (at most 127 here) finds the optimum; a free level sits at its cell's weighted mean, rounded
    (the best integer for a squared error). ``weights``: one per value (default 1: every block
    counts the same). Values that already fit are returned unchanged.
    """
    v = np.asarray(values)
    w = np.ones(v.shape) if weights is None else np.broadcast_to(np.asarray(weights, float), v.shape)
    uniq, inv = np.unique(v.ravel(), return_inverse=True)
    if np.count_nonzero(uniq) <= max_levels:
        return v.copy()
    wsum = np.bincount(inv, weights=w.ravel(), minlength=len(uniq))
    x = uniq.astype(np.float64)
    n = len(x)
    # prefix sums for O(1) interval costs
    cw = np.concatenate(([0.0], np.cumsum(wsum)))
    cwx = np.concatenate(([0.0], np.cumsum(wsum * x)))
    cwxx = np.concatenate(([0.0], np.cumsum(wsum * x * x)))

    def cost(i: int, j: int, centre: float) -> float:      # values i..j-1 at ``centre``
        W, S, Q = cw[j] - cw[i], cwx[j] - cwx[i], cwxx[j] - cwxx[i]
        return Q - 2 * centre * S + centre * centre * W

    def free_centre(i: int, j: int) -> float:
        W = cw[j] - cw[i]
        return float(np.floor((cwx[j] - cwx[i]) / W + 0.5)) if W > 0 else 0.0

    inf = float("inf")
    best = np.full((n + 1, max_levels + 1), inf)
    back: dict[tuple[int, int], tuple[int, int, float]] = {}
    best[0, 0] = 0.0
    for j in range(1, n + 1):
        for i in range(j):
            cz = cost(i, j, 0.0)
            c = free_centre(i, j)
            cf = cost(i, j, c)
            for k in range(max_levels + 1):
                if best[i, k] == inf:
                    continue
                if best[i, k] + cz < best[j, k]:             # a cell at level 0 (not counted)
                    best[j, k] = best[i, k] + cz
                    back[(j, k)] = (i, k, 0.0)
                if k < max_levels and c != 0 and best[i, k] + cf < best[j, k + 1]:
                    best[j, k + 1] = best[i, k] + cf
                    back[(j, k + 1)] = (i, k, c)
    k = int(np.argmin(best[n]))
    level = np.zeros(n)
    j = n
    while j > 0:
        i, k, c = back[(j, k)]
        level[i:j] = c
        j = i
    return level[inv].reshape(v.shape).astype(v.dtype)


def clear_region(width: int, height: int) -> Rect:
    """The whole-frame delta-0 region listed last on every frame of a libvpx ROI encode: it
    changes no block a real region covers (first listed wins) and replaces the previous frame's
    map, which libvpx otherwise keeps."""
    return Rect(0, 0, width, height, 0)


# per-encoder rules moved to their encoder classes (roienc.encoders), importable from here as before
_MOVED = {"check_roi_compatible": "x26x", "check_vp9_roi": "vp9", "vpx_delta_grids": "vp9",
          "VPX_MAX_DELTA": "vp9", "VPX_MAX_LEVELS": "vp9"}


def __getattr__(name: str):
    """The names :data:`_MOVED` lists, from their encoder's module (imported when first asked
    for: the encoder modules import this one)."""
    if name in _MOVED:
        import importlib
        return getattr(importlib.import_module(f"roienc.encoders.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
