"""Importance map -> per-block QP grid (pure numpy), and the grid's files.

``qp = base_qp + background - (background + delta) * imp_block**gamma``, rounded: importance 1
gets ``base_qp - delta`` (the ROI's gain), importance 0 gets ``base_qp + background`` (what the
background gives up). ``background`` defaults to ``delta`` (the symmetric mapping
``base_qp + delta - 2*delta*imp**gamma``); ``background = 0`` gives ROI-only offsets. Block importance is the mean (or max)
over each ``block x block`` tile; edge tiles of frames whose size is not a multiple of the block
are partial and use only their real pixels, so the grid is ``ceil(H/b) x ceil(W/b)``.
"""
from __future__ import annotations

import functools
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .fileio import write_csv, write_npy, write_png


def block_reduce(importance: np.ndarray, block: int, stat: str = "mean") -> np.ndarray:
    """float32 grid ``(ceil(H/b), ceil(W/b))`` of block means or maxima (partial edges exact), or
    with ``submax`` the mean of the maxima of each block's 2x2 sub-blocks (an even ``block``): a
    block an object touches in one quarter gets a quarter of what ``max`` gives it."""
    imp = np.asarray(importance, dtype=np.float32)
    if imp.ndim != 2 or imp.size == 0:
        raise InputError(f"importance map must be a non-empty 2-D array, got shape {imp.shape}")
    if int(block) != block or block < 1:
        raise InputError(f"block size must be a positive integer, got {block}")
    block = int(block)
    if stat == "submax":
        if block % 2:
            raise InputError(f"block statistic 'submax' needs an even block size, got {block}")
        return block_reduce(block_reduce(imp, block // 2, "max"), 2, "mean")
    if not np.isfinite(imp).all():
        raise InputError("importance map contains NaN or infinite values; it must lie in [0, 1]")
    h, w = imp.shape
    gh, gw = -(-h // block), -(-w // block)
    ph, pw = gh * block - h, gw * block - w
    if stat == "max":
        padded = np.pad(imp, ((0, ph), (0, pw)), constant_values=-np.inf) if ph or pw else imp
        return padded.reshape(gh, block, gw, block).max(axis=(1, 3)).astype(np.float32)
    if stat != "mean":
        raise InputError(f"block statistic must be 'mean', 'max' or 'submax', got {stat!r}")
    padded = np.pad(imp, ((0, ph), (0, pw))) if ph or pw else imp
    # sum rows of each block first (contiguous), then columns; float64 accumulators
    sums = padded.reshape(gh, block, gw * block).sum(axis=1, dtype=np.float64)
    sums = sums.reshape(gh, gw, block).sum(axis=2)
    rows = np.full(gh, block, np.float64)
    rows[-1] = h - (gh - 1) * block
    cols = np.full(gw, block, np.float64)
    cols[-1] = w - (gw - 1) * block
    return (sums / np.outer(rows, cols)).astype(np.float32)


def importance_to_qp(grid: np.ndarray, base_qp: int, delta: int, gamma: float = 1.0,
                     normalize: str = "none", background: int | None = None,
                     floor: float = 0.0) -> np.ndarray:
    """int8 QP grid in ``[base_qp - delta, base_qp + background]``; high importance -> low QP."""
    bg = delta if background is None else background
    if delta < 0 or bg < 0 or base_qp - delta < 0 or base_qp + bg > 63:
        raise InputError(f"base QP {base_qp} with delta {delta} and background {bg} leaves the QP "
                         "range 0..63 (8-bit encoders accept 0..51)")
    qp = np.rint(base_qp + bg - float(bg + delta) * block_strength(grid, gamma, normalize, floor))
    return np.clip(qp, base_qp - delta, base_qp + bg).astype(np.int8)


def block_strength(grid: np.ndarray, gamma: float = 1.0, normalize: str = "none",
                   floor: float = 0.0) -> np.ndarray:
    """float64 ``((imp_block - floor) / (1 - floor))**gamma`` in [0, 1] (after the optional
    per-frame stretch; importance at or below ``floor`` counts as background): the share of the
    ROI delta a block gets, the rest of ``1`` being its share of the background offset."""
    if not (np.isfinite(gamma) and gamma > 0):
        raise InputError(f"gamma must be a positive number, got {gamma}")
    if not (np.isfinite(floor) and 0 <= floor < 1):
        raise InputError(f"importance floor must be in [0, 1), got {floor}")
    g = np.asarray(grid, dtype=np.float64)
    if not np.isfinite(g).all():
        raise InputError("block importance grid contains NaN or infinite values")
    g = np.clip(g, 0.0, 1.0)
    if normalize == "frame":
        lo, hi = float(g.min()), float(g.max())
        g = (g - lo) / (hi - lo) if hi > lo else np.zeros_like(g)
    elif normalize != "none":
        raise InputError(f"qp normalisation must be 'none' or 'frame', got {normalize!r}")
    if floor > 0:
        g = np.clip((g - floor) / (1.0 - floor), 0.0, 1.0)
    return g ** gamma


@dataclass(frozen=True)
class RateChoice:
    """The offsets a rate budget chose for one frame, as recorded in ``<id>_rate.json``."""

    budget_pct: float
    roi_delta: float          # continuous QP decrease of importance 1 (before dithering)
    background: float         # continuous QP increase of importance 0
    predicted_pct: float      # predicted bit change of the integer grid written, percent
    mean_roi_offset: float    # mean integer offset over blocks of strength >= 0.5 (NaN: none)

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else round(v, 4))
                for k, v in asdict(self).items()}


def rate_qp_map(importance: np.ndarray, activity: np.ndarray, *, budget_pct: float, block: int = 32,
                stat: str = "max", base_qp: int = 32, delta: int = 6, background: int = 0,
                gamma: float = 1.0, normalize: str = "none", exponent: float = 1.0,
                floor: float = 0.0) -> tuple[np.ndarray, RateChoice]:
    """int8 QP grid whose bits, predicted by :mod:`roienc.ratemodel` from the frame's luma
    ``activity``, grow by at most ``budget_pct`` percent: the ROI gets up to ``delta`` QP less,
    beyond the budget the background pays up to ``background`` QP more, then the ROI delta
    shrinks. Continuous offsets are dithered to integers with the same mean."""
    from .ratemodel import block_weights, dither, offset_grid, predicted_rate, solve_offsets

    grid = block_reduce(importance, block, stat)
    s = block_strength(grid, gamma, normalize, floor)
    w = block_weights(activity, s.shape, block, exponent=exponent, size=np.shape(importance))
    off = solve_offsets(s, w, budget_pct / 100.0, float(delta), float(background))
    dq = dither(offset_grid(s, off.roi_delta, off.background))
    qp = np.clip(base_qp + dq, 0, 51).astype(np.int8)
    dq = qp.astype(np.int16) - base_qp
    roi = s >= 0.5
    choice = RateChoice(float(budget_pct), off.roi_delta, off.background,
                        100.0 * predicted_rate(dq, w),
                        float(-dq[roi].mean()) if roi.any() else float("nan"))
    return qp, choice


def qp_map_from_importance(importance: np.ndarray, *, block: int = 16, stat: str = "mean",
                           base_qp: int = 32, delta: int = 3, gamma: float = 1.0,
                           normalize: str = "none", background: int | None = None,
                           floor: float = 0.0) -> np.ndarray:
    """Block reduction then QP mapping in one call."""
    return importance_to_qp(block_reduce(importance, block, stat), base_qp, delta, gamma, normalize,
                            background, floor)


def _qp_colours(base_qp: int, delta: int) -> np.ndarray:
    """uint8 (2*delta+1, 3): the 'viridis' colour of each integer QP from low to high."""
    from .vis import colormap_lut

    lut = colormap_lut("viridis")
    n = 2 * delta + 1
    return lut[np.rint(np.linspace(0, 255, n)).astype(int)] if n > 1 else lut[[0]]


@functools.cache
def _colour_bar(height: int, base_qp: int, delta: int) -> np.ndarray:
    """A vertical colour bar labelled in QP, one band per integer QP in exactly the colours of
    :func:`render_qp_vis`; rendered with matplotlib once per (height, range) and cached, so the
    per-frame cost of the visualisation is a table lookup and a concatenation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from PIL import Image

    lo, hi = base_qp - delta, base_qp + delta
    cmap = ListedColormap(_qp_colours(base_qp, delta) / 255.0)
    bounds = np.arange(lo - 0.5, hi + 1.0, 1.0)
    dpi = 100
    fig = plt.figure(figsize=(1.5, max(height, 60) / dpi), dpi=dpi)
    ax = fig.add_axes([0.1, 0.05, 0.22, 0.9])
    step = max(1, (hi - lo + 1) // 12)  # at most ~12 labels
    ColorbarBase(ax, cmap=cmap, norm=BoundaryNorm(bounds, cmap.N), boundaries=bounds,
                 ticks=np.arange(lo, hi + 1, step))
    ax.set_ylabel("QP", fontsize=13)
    ax.tick_params(labelsize=12)       # readable when the picture is shown at half its width
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    buf.seek(0)
    bar = np.asarray(Image.open(buf).convert("RGB"))
    if bar.shape[0] != height:
        bar = np.asarray(Image.fromarray(bar).resize((bar.shape[1], height)))
    bar = _fit_colours(bar, _qp_colours(base_qp, delta), 256)
    bar.setflags(write=False)
    return bar


def _codes(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    return (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]


def _fit_colours(bar: np.ndarray, reserved: np.ndarray, limit: int) -> np.ndarray:
    """``bar`` with at most ``limit`` colours together with the ``reserved`` ones: the rarest
    other colours (anti-aliased text and edges) become their nearest kept colour, so the QP
    picture stays a paletted PNG (at --delta 6 the bar had 279 colours)."""
    codes = _codes(bar)
    uniq, inv, counts = np.unique(codes, return_inverse=True, return_counts=True)
    rcodes = np.unique(_codes(reserved))
    extra = np.flatnonzero(~np.isin(uniq, rcodes))
    room = limit - len(rcodes)
    if len(extra) <= room:
        return bar
    order = extra[np.argsort(-counts[extra], kind="stable")]
    drop = order[max(room, 0):]
    keep_codes = np.concatenate([rcodes, uniq[order[:max(room, 0)]]])
    rgb = lambda c: np.stack([(c >> 16) & 255, (c >> 8) & 255, c & 255], axis=-1)
    dist = ((rgb(uniq[drop])[:, None, :] - rgb(keep_codes)[None, :, :]) ** 2).sum(axis=2)
    mapped = uniq.copy()
    mapped[drop] = keep_codes[dist.argmin(axis=1)]
    return rgb(mapped[inv.reshape(codes.shape)]).astype(np.uint8)


@functools.cache
def _indexed_bar(height: int, base_qp: int, delta: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The colour bar as palette indices ``(bar_idx, palette)``: the palette starts with the
    ``2*delta+1`` QP colours (index = QP - lo) followed by the bar's other colours; None when
    they do not fit in 256 (the caller then writes RGB)."""
    bar = _colour_bar(height, base_qp, delta)
    qcol = _qp_colours(base_qp, delta)
    codes, qcodes = _codes(bar), _codes(qcol)
    uniq, inv = np.unique(codes, return_inverse=True)
    extra = uniq[~np.isin(uniq, qcodes)]
    allcodes = np.concatenate([qcodes, extra])
    if len(allcodes) > 256:
        return None
    first = {int(c): i for i, c in reversed(list(enumerate(allcodes)))}
    lut = np.array([first[int(c)] for c in uniq], np.uint8)
    bar_idx = lut[inv.reshape(codes.shape)]
    palette = np.stack([(allcodes >> 16) & 255, (allcodes >> 8) & 255, allcodes & 255],
                       axis=1).astype(np.uint8)
    return bar_idx, palette


def _qp_scale(qp: np.ndarray, scale: int | None) -> int:
    return scale if scale is not None else max(1, min(16, 512 // max(1, qp.shape[0])))


def _qp_index(qp: np.ndarray, base_qp: int, delta: int) -> np.ndarray:
    q = np.asarray(qp)
    if q.ndim != 2 or q.size == 0:
        raise InputError(f"QP grid must be a non-empty 2-D array, got shape {q.shape}")
    return np.clip(q.astype(np.int64) - (base_qp - delta), 0, 2 * delta).astype(np.uint8)


def render_qp_vis_indexed(qp: np.ndarray, base_qp: int, delta: int,
                          scale: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`render_qp_vis` as ``(indices, palette)`` (uint8 HxW, (n, 3) RGB): decodes to the
    same RGB, one byte a pixel. None when the colour bar has more than 256 colours."""
    idx = _qp_index(qp, base_qp, delta)
    s = _qp_scale(idx, scale)
    img = np.repeat(np.repeat(idx, s, axis=0), s, axis=1)
    got = _indexed_bar(img.shape[0], base_qp, delta)
    if got is None:
        return None
    bar_idx, palette = got
    return np.concatenate([img, bar_idx], axis=1), palette


def render_qp_vis(qp: np.ndarray, base_qp: int, delta: int, scale: int | None = None) -> np.ndarray:
    """RGB picture of a QP grid: 'viridis' (low QP blue, high QP yellow), each block drawn as a
    ``scale x scale`` square (default: about 512 pixels high), plus a colour bar labelled in QP.
    QPs outside ``base_qp +/- delta`` take the colour of the nearest end."""
    idx = _qp_index(qp, base_qp, delta)
    img = _qp_colours(base_qp, delta)[idx]
    s = _qp_scale(idx, scale)
    img = np.repeat(np.repeat(img, s, axis=0), s, axis=1)
    bar = _colour_bar(img.shape[0], base_qp, delta)
    return np.concatenate([img, bar], axis=1)


def write_qp_outputs(prefix: Path, qp: np.ndarray, *, base_qp: int, delta: int,
                     vis: bool = True) -> list[Path]:
    """``<prefix>_qp_map.npy`` (int8), ``_qp_map.csv`` (no header) and ``_qp_map_vis.png``
    (paletted: the QP colours and the colour bar's fit in 256, so one byte a pixel)."""
    prefix = Path(prefix)
    name = prefix.name
    paths = [write_npy(prefix.with_name(name + "_qp_map.npy"), np.asarray(qp, np.int8)),
             write_csv(prefix.with_name(name + "_qp_map.csv"), np.asarray(qp, int).tolist())]
    if vis:
        target = prefix.with_name(name + "_qp_map_vis.png")
        indexed = render_qp_vis_indexed(qp, base_qp, delta)
        paths.append(write_png(target, indexed[0], palette=indexed[1]) if indexed is not None else
                     write_png(target, render_qp_vis(qp, base_qp, delta)))
    return paths


__all__ = ["RateChoice", "block_reduce", "block_strength", "importance_to_qp", "rate_qp_map", "qp_map_from_importance", "render_qp_vis",
           "render_qp_vis_indexed", "write_qp_outputs"]
