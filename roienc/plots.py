"""Rate-distortion plots (matplotlib, Agg): one curve per mode, kbps on x."""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from .fileio import write_bytes

LABELS = {"psnr_roi": "PSNR inside ROI (dB)", "psnr_nonroi": "PSNR outside ROI (dB)",
          "psnr_y": "PSNR Y (dB)", "psnr_weighted": "importance-weighted PSNR (dB)",
          "psnr_near_objects": "PSNR of objects inside d_safe (dB)"}


def rd_plot(results: pd.DataFrame, metric: str, path: str | Path, title: str = "") -> Path:
    """Mean over clips per mode and rate point; one line per (codec, mode)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    agg = (results.groupby(["codec", "mode", "rate_control", "rate_value"], as_index=False)
           [["kbps", metric]].mean())
    for (codec, mode), g in agg.groupby(["codec", "mode"]):
        g = g.sort_values("kbps")
        ax.plot(g["kbps"], g[metric], marker="o", label=f"{codec} {mode}")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))   # 20, 50, 100, not 2x10^1
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("bitrate (kbit/s, log scale)")
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_title(title or LABELS.get(metric, metric))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return write_bytes(path, buf.getvalue())


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
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return write_bytes(path, buf.getvalue())
