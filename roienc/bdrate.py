"""BD-rate and BD-PSNR of each mode against the references (the ``bjontegaard`` package).

Two references, named in every row: ``baseline`` (the plain encoder) for every mode, and, when
the run has it, ``roi-settings`` (the ROI encode's own settings with zero offsets) for the ROI
modes, which splits a gain into what the encoder settings bring (roi-settings vs baseline) and
what the ROI itself brings (roi vs roi-settings).

Per clip, each mode's RD points (at least 3; 4 or more as usual) (kbps, metric) are compared with the reference mode's with
``method='akima'``; the ``mean`` row averages the per-clip values. Negative BD-rate = fewer bits
for the same quality. Fewer than 3 finite points, or curves that overlap too little (the package
warns below ``min_overlap``), give NaN or a value with the reason in ``note``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .errors import InputError

BD_COLUMNS = ["mode", "reference", "metric", "bd_rate_pct", "bd_psnr_db", "clip", "points", "note"]
METRICS = ("psnr_roi", "psnr_nonroi", "psnr_y", "psnr_weighted")


def bd_pair(rate_ref, dist_ref, rate_test, dist_test, method: str = "akima") -> tuple[float, float, str]:
    """(bd_rate_pct, bd_psnr_db, note) for two RD curves; NaN with a note when undefined."""
    import bjontegaard as bd

    def clean(r, d):
        pts = sorted((float(a), float(b)) for a, b in zip(r, d)
                     if math.isfinite(a) and math.isfinite(b) and a > 0)
        return [p[0] for p in pts], [p[1] for p in pts]

    r1, d1 = clean(rate_ref, dist_ref)
    r2, d2 = clean(rate_test, dist_test)
    if len(r1) < 3 or len(r2) < 3:
        return float("nan"), float("nan"), f"needs >= 3 finite RD points per curve (have {len(r1)}, {len(r2)})"
    if len(set(d1)) < len(d1) or len(set(d2)) < len(d2):
        return float("nan"), float("nan"), "quality values repeat: curve is not strictly monotone"
    notes = [] if min(len(r1), len(r2)) >= 4 else ["3 RD points: less reliable than the usual 4"]
    out = []
    for fn in (bd.bd_rate, bd.bd_psnr):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                val = float(fn(r1, d1, r2, d2, method=method, require_matching_points=False))
            except Exception as exc:  # the package raises ValueError etc. on degenerate curves
                val = float("nan")
                notes.append(f"{fn.__name__}: {exc}")
        notes += [f"{fn.__name__}: {w.message}" for w in caught]
        out.append(val)
    return out[0], out[1], "; ".join(dict.fromkeys(notes))


SETTINGS_REFERENCE = "roi-settings"
ROI_MODES = ("roi", "roi+zones")


def bd_table(results: pd.DataFrame, reference: str = "baseline",
             metrics: tuple[str, ...] = METRICS, method: str = "akima") -> pd.DataFrame:
    """BD rows of every mode against ``reference`` and, where the run has a ``roi-settings``
    reference, of the ROI modes against it too; per clip and averaged (``clip='mean'``)."""
    check_results(results, metrics)
    parts = [_bd_rows(results, reference, None, metrics, method)]
    if reference == "baseline" and (results["mode"] == SETTINGS_REFERENCE).any():
        parts.append(_bd_rows(results, SETTINGS_REFERENCE, ROI_MODES, metrics, method))
    return pd.DataFrame([r for part in parts for r in part], columns=BD_COLUMNS)


def check_results(results, metrics: tuple[str, ...] = METRICS) -> None:
    """``results`` is a table of encodes with the columns a BD table reads (``codec``, ``clip``,
    ``mode``, ``kbps`` and every metric asked for); InputError naming what is missing."""
    if not isinstance(results, pd.DataFrame):
        raise InputError(f"bd_table takes a pandas DataFrame of encodes (evaluate's results), got "
                         f"{type(results).__name__}")
    if isinstance(metrics, (str, bytes)):
        raise InputError(f"metrics takes a tuple of column names, got the string {metrics!r}; "
                         f"pass ({metrics!r},)")
    need = ["codec", "clip", "mode", "kbps", *metrics]
    missing = [c for c in need if c not in results.columns]
    if missing:
        raise InputError(f"bd_table: the results lack the column(s) {', '.join(missing)} (it needs "
                         f"{', '.join(need)}): pass the table `roienc evaluate` writes (its --report "
                         "CSV) or a sweep's results.csv")


def _bd_rows(results: pd.DataFrame, reference: str, only: tuple[str, ...] | None,
             metrics: tuple[str, ...], method: str) -> list[list]:
    rows = []
    for codec, by_codec in results.groupby("codec"):
        modes = [m for m in by_codec["mode"].unique() if m != reference and (only is None or m in only)]
        for mode in sorted(modes):
            for metric in metrics:
                per_clip = []
                for clip, g in by_codec.groupby("clip"):
                    ref = g[g["mode"] == reference].sort_values("kbps")
                    test = g[g["mode"] == mode].sort_values("kbps")
                    if ref.empty or test.empty:
                        continue
                    r, p, note = bd_pair(ref["kbps"], ref[metric], test["kbps"], test[metric], method)
                    per_clip.append((r, p))
                    rows.append([mode, reference, metric, r, p, clip, f"{len(ref)}/{len(test)}", note])
                if per_clip:
                    rs = [a for a, _ in per_clip if math.isfinite(a)]
                    ps = [b for _, b in per_clip if math.isfinite(b)]
                    rows.append([mode, reference, metric, float(np.mean(rs)) if rs else float("nan"),
                                 float(np.mean(ps)) if ps else float("nan"), "mean",
                                 f"{len(rs)} clips", "" if rs else "no clip had a defined BD value"])
    return rows
