"""The report's 'what each frame got' tables on hand-made sidecars (no encoder): the plain encode
of the same clip and rate point is the reference, frame for frame; rows without an encode and
runs without results give empty tables, not errors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from roienc.report import FRAMES_COLUMNS, frames_summary, frames_table


def _side(path, frame_bytes, offsets=None, predicted=None):
    adapter = {}
    if offsets is not None:
        n = len(offsets)
        adapter["frame_offsets"] = {"min": [min(o, 0) for o in offsets], "mean_roi": offsets,
                                    "max": [0] * n, "roi_block_share": [0.1] * n}
    if predicted is not None:
        adapter["frame_predicted_pct"] = predicted
    path.write_text(json.dumps({"frame_bytes": frame_bytes, "adapter": adapter,
                                "frame_ids": [f"f{i}" for i in range(len(frame_bytes))]}))
    return str(path)


def _row(sidecar, mode, crf, maps="m"):
    return {"maps": maps if mode != "baseline" else "plain", "clip": "c", "codec": "hevc",
            "mode": mode, "rate_control": "crf", "rate_value": float(crf), "sidecar": sidecar}


def test_each_frame_against_the_plain_encodes_same_frame(tmp_path):
    rows = [_row(_side(tmp_path / "b28.json", [1000, 200, 100]), "baseline", 28),
            _row(_side(tmp_path / "b32.json", [500, 100, 50]), "baseline", 32),
            _row(_side(tmp_path / "r28.json", [1100, 200, 90], [-3.0, -2.0, 0.0], [9.0, 8.0, 0.0]), "roi", 28),
            _row(_side(tmp_path / "r32.json", [600, 100, 50], [-3.0, -2.0, 0.0], [9.0, 8.0, 0.0]), "roi", 32),
            _row(float("nan"), "roi", 36)]             # no encode behind it: left out
    fr = frames_table(pd.DataFrame(rows))
    assert list(fr.columns) == FRAMES_COLUMNS and len(fr) == 6
    at28 = fr[fr["rate_value"] == 28]
    assert at28["measured_pct"].tolist() == pytest.approx([10.0, 0.0, -10.0])   # not CRF 32's
    assert fr[fr["rate_value"] == 32]["measured_pct"].tolist() == pytest.approx([20.0, 0.0, 0.0])
    s = frames_summary(fr).set_index("rate_value")
    assert s.loc[28.0, "file_pct"] == pytest.approx(100 * (1390 / 1300 - 1))
    assert s.loc[28.0, "frame_err_pts"] == pytest.approx(np.mean([1.0, 8.0, 10.0]))
    assert s.loc[32.0, "measured_max"] == pytest.approx(20.0)


def test_missing_reference_and_empty_runs(tmp_path):
    # an ROI encode whose plain twin is absent: its bytes, no growth
    fr = frames_table(pd.DataFrame([_row(_side(tmp_path / "r.json", [10, 20], [-1.0, -1.0]), "roi", 30)]))
    assert fr["bytes"].tolist() == [10, 20] and fr["measured_pct"].isna().all()
    assert fr["predicted_pct"].isna().all()          # no rate budget, no maps: unknown
    assert frames_table(pd.DataFrame()).empty and frames_summary(frames_table(pd.DataFrame())).empty


def test_frames_plot(tmp_path):
    from roienc.plots import frames_plot

    rows = [_row(_side(tmp_path / "b.json", [1000, 200, 100]), "baseline", 28),
            _row(_side(tmp_path / "r.json", [1100, 200, 90], [-3.0, -2.0, 0.0], [9.0, 8.0, 0.0]), "roi", 28)]
    png = frames_plot(frames_table(pd.DataFrame(rows)), tmp_path / "f.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
    # nothing measured (no plain twin): no plot rather than an empty one
    assert frames_plot(frames_table(pd.DataFrame(rows[1:])), tmp_path / "g.png") is None
    assert not (tmp_path / "g.png").exists()


def test_gain_vs_share_plot(tmp_path):
    from roienc.plots import gain_vs_share_plot

    res = pd.DataFrame([{"clip": c, "mode": "baseline", "roi_fraction": f}
                        for c, f in (("a", 0.02), ("b", 0.1))])
    bd = pd.DataFrame([{"maps": "m", "mode": "roi", "reference": "baseline", "metric": met,
                        "bd_rate_pct": v, "clip": c}
                       for c in ("a", "b", "mean") for met, v in (("psnr_roi", -30.0), ("psnr_nonroi", 5.0))])
    png = gain_vs_share_plot(bd, res, tmp_path / "g.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
    # one clip: no scatter to read
    assert gain_vs_share_plot(bd[bd["clip"] != "b"], res, tmp_path / "h.png") is None
    assert gain_vs_share_plot(pd.DataFrame(), res, tmp_path / "i.png") is None
