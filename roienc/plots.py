"""Rate-distortion plots (matplotlib, Agg): one curve per mode, kbps on x."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from .fileio import write_bytes

LABELS = {"psnr_roi": "PSNR inside ROI (dB)", "psnr_nonroi": "PSNR outside ROI (dB)",
          "psnr_y": "PSNR Y (dB)", "psnr_weighted": "importance-weighted PSNR (dB)",
          "psnr_near_objects": "PSNR of objects inside d_safe (dB)"}


MAX_CLIP_PANELS = 8       # more clips than this: the mean panel only


def _save_png(fig, path: str | Path) -> Path:
    """Lay out ``fig``, write it as a PNG (atomically: :func:`roienc.fileio.write_bytes`), close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return write_bytes(path, buf.getvalue())


def rd_curves(data: pd.DataFrame, metric: str) -> list[tuple[str, pd.DataFrame]]:
    """The RD curves of ``data`` (mean over its clips per rate point): one per (codec, mode),
    modes whose points are identical (roi-settings that is the baseline's command) as one curve
    named by both, joined with '='."""
    agg = (data.groupby(["codec", "mode", "rate_control", "rate_value"], as_index=False)
           [["kbps", metric]].mean())
    names: dict[tuple, list[str]] = {}
    lines: dict[tuple, pd.DataFrame] = {}
    for (codec, mode), g in agg.groupby(["codec", "mode"]):
        g = g.sort_values("kbps")
        key = tuple(np.round(g[["kbps", metric]].to_numpy(float), 6).ravel())
        names.setdefault(key, []).append(f"{codec} {mode}")
        lines[key] = g
    return [(" = ".join(n), lines[k]) for k, n in names.items()]


def _rd_panel(ax, data: pd.DataFrame, metric: str, title: str) -> None:
    """One RD panel (:func:`rd_curves`), kbps on a log axis."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for name, g in rd_curves(data, metric):
        ax.plot(g["kbps"], g[metric], marker="o", label=name)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))   # 20, 50, 100, not 2x10^1
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("bitrate (kbit/s, log scale)")
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)


def rd_plot(results: pd.DataFrame, metric: str, path: str | Path, title: str = "") -> Path:
    """RD curves of ``metric``: one panel per clip (up to :data:`MAX_CLIP_PANELS`) and one of
    the mean over clips; one line per (codec, mode), identical curves drawn once."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = sorted(results["clip"].unique()) if "clip" in results else []
    panels = [(c, results[results["clip"] == c]) for c in clips] if 1 < len(clips) <= MAX_CLIP_PANELS else []
    panels.append((f"mean over {len(clips)} clip{'s' * (len(clips) != 1)}" if clips else "all",
                   results))
    cols = 1 if len(panels) == 1 else 2
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.4 * rows), dpi=100, squeeze=False)
    for ax, (name, data) in zip(axes.ravel(), panels):
        _rd_panel(ax, data, metric, name)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title or LABELS.get(metric, metric), fontsize=13)
    return _save_png(fig, path)


def frontier_plot(frontier: pd.DataFrame, path: str | Path) -> Path:
    """BD-rate psnr_roi (y) against BD-rate psnr_nonroi (x) of each QP mapping, the Pareto front
    joined; down and left is better (fewer bits for the same quality inside / outside)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    f = frontier.dropna(subset=["bd_psnr_roi_pct", "bd_psnr_nonroi_pct"])
    ax.scatter(f["bd_psnr_nonroi_pct"], f["bd_psnr_roi_pct"], color="0.55", zorder=2,
               label="QP mapping")
    front = f[f["pareto"].astype(bool)].sort_values("bd_psnr_nonroi_pct")
    ax.plot(front["bd_psnr_nonroi_pct"], front["bd_psnr_roi_pct"], "o-", color="C3", zorder=3,
            label="Pareto front")
    named = f if len(f) <= 8 else f[f["pareto"].astype(bool)]   # crowded: name the front only
    for _, r in named.iterrows():
        rate = r.get("rate_budget")
        rate = f" r{rate:+g}%" if rate is not None and pd.notna(rate) else ""
        ax.annotate(f"b{r['block_size']} {r['block_stat']} d{r['delta']} bg{r['background']}{rate}",
                    (r["bd_psnr_nonroi_pct"], r["bd_psnr_roi_pct"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel("BD-rate, PSNR outside ROI (%), vs plain baseline")
    ax.set_ylabel("BD-rate, PSNR inside ROI (%), vs plain baseline")
    ax.set_title("Trade-off of QP mappings (lower is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save_png(fig, path)


FRAMES_PLOT_CLIPS = 6          # panels of frames_plot (the first clips; frames.csv has them all)


def frames_plot(frames: pd.DataFrame, path: str | Path) -> Path | None:
    """What each frame got, one panel per clip (the first :data:`FRAMES_PLOT_CLIPS`): per frame
    of the ROI encode at the clip's middle rate point, the measured file growth against the plain
    encode's same frame (solid) and the rate model's prediction (dashed), one colour per QP
    mapping. None when no frame has a measured growth."""
    f = frames.copy()
    for c in ("measured_pct", "predicted_pct", "rate_value", "frame"):
        f[c] = pd.to_numeric(f[c], errors="coerce")
    f = f.dropna(subset=["measured_pct"])
    if f.empty:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = list(dict.fromkeys(f["clip"]))[:FRAMES_PLOT_CLIPS]
    maps = list(dict.fromkeys(f["maps"]))
    cols = min(3, len(clips))
    rows = -(-len(clips) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), dpi=100, squeeze=False)
    for ax, clip in zip(axes.flat, clips):
        g = f[f["clip"] == clip]
        rates = sorted(g["rate_value"].unique())
        rate = rates[(len(rates) - 1) // 2]
        for i, m in enumerate(maps):
            h = g[(g["maps"] == m) & (g["rate_value"] == rate)].sort_values("frame")
            if h.empty:
                continue
            name = str(m) if len(maps) > 1 else "measured"
            ax.plot(h["frame"], h["measured_pct"], "-", color=f"C{i}", lw=1.2, label=name)
            if h["predicted_pct"].notna().any():
                ax.plot(h["frame"], h["predicted_pct"], "--", color=f"C{i}", lw=1,
                        label="predicted" if len(maps) == 1 else None)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(f"{clip}, {g['rate_control'].iloc[0]} {rate:g}", fontsize=9)
        ax.set_xlabel("frame")
        ax.set_ylabel("growth vs plain, same frame (%)")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(clips):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    return _save_png(fig, path)


def gain_vs_share_plot(bd: pd.DataFrame, results: pd.DataFrame, path: str | Path) -> Path | None:
    """Per clip, the BD-rate of the ``roi`` encode against the plain baseline inside (psnr_roi,
    left) and outside the ROI (psnr_nonroi, right) against the clip's ROI share of the pixels (the
    judging regions), one colour per QP mapping: how the gain falls as the ROI grows. None with
    fewer than 2 clips."""
    need = {"maps", "mode", "reference", "metric", "bd_rate_pct", "clip"}
    if not need <= set(bd.columns) or not {"clip", "roi_fraction", "mode"} <= set(results.columns):
        return None
    share = (results[results["mode"] == "baseline"].groupby("clip")["roi_fraction"].mean())
    b = bd[(bd["mode"] == "roi") & (bd["reference"] == "baseline") & (bd["clip"] != "mean")]
    b = b[b["clip"].isin(share.index)].dropna(subset=["bd_rate_pct"])
    if b["clip"].nunique() < 2:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = list(dict.fromkeys(b["maps"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, metric, label in ((axes[0], "psnr_roi", "inside the ROI"),
                              (axes[1], "psnr_nonroi", "outside the ROI")):
        for i, m in enumerate(maps):
            h = b[(b["maps"] == m) & (b["metric"] == metric)]
            ax.scatter(100 * share[h["clip"]].to_numpy(), h["bd_rate_pct"], s=18, color=f"C{i}",
                       label=str(m) if len(maps) > 1 else None)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("ROI share of the pixels (%)")
        ax.set_ylabel(f"BD-rate, PSNR {label} (%)")
        ax.set_title(f"Per clip: {metric} against ROI share", fontsize=10)
        ax.grid(True, alpha=0.3)
    if len(maps) > 1:
        axes[0].legend(fontsize=7)
    return _save_png(fig, path)
