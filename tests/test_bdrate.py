"""BD-rate/BD-PSNR signs and edge cases on constructed curves."""
import math

import pandas as pd
import pytest

from roienc.bdrate import BD_COLUMNS, bd_pair, bd_table

RATE = [100.0, 200.0, 400.0, 800.0]
PSNR = [30.0, 33.0, 36.0, 39.0]


def test_sign_on_a_constructed_case():
    cheaper = [r * 0.8 for r in RATE]                 # same quality for 20 % fewer bits
    rate, psnr, note = bd_pair(RATE, PSNR, cheaper, PSNR)
    assert rate == pytest.approx(-20.0, abs=0.5) and psnr > 0
    rate, psnr, _ = bd_pair(RATE, PSNR, [r * 1.25 for r in RATE], PSNR)
    assert rate == pytest.approx(25.0, abs=0.5) and psnr < 0


def test_too_few_points_and_non_finite():
    r, p, note = bd_pair(RATE[:2], PSNR[:2], RATE[:2], PSNR[:2])
    assert math.isnan(r) and math.isnan(p) and ">= 3" in note
    r, p, note = bd_pair(RATE, [30, 33, math.inf, 39], RATE, PSNR)   # the inf point is dropped
    assert math.isfinite(r) and "3 RD points" in note
    r, p, note = bd_pair(RATE, [30, math.inf, math.inf, 39], RATE, PSNR)
    assert math.isnan(r) and "have 2, 4" in note
    r, p, note = bd_pair(RATE[:3], PSNR[:3], [x * 0.9 for x in RATE[:3]], PSNR[:3])
    assert r == pytest.approx(-10, abs=0.5) and "less reliable" in note


def test_overlap_warning_is_recorded():
    far = [r * 20 for r in RATE]
    r, p, note = bd_pair(RATE, PSNR, far, [40, 43, 46, 49])
    assert "overlap" in note.lower()


def test_table_columns_and_mean():
    rows = []
    for clip, f in (("a", 0.8), ("b", 0.9)):
        for r, q in zip(RATE, PSNR):
            for mode, rr in (("baseline", r), ("roi", r * f)):
                rows.append(dict(clip=clip, codec="hevc", mode=mode, kbps=rr, psnr_roi=q,
                                 psnr_nonroi=q, psnr_y=q, psnr_weighted=q))
    t = bd_table(pd.DataFrame(rows))
    assert list(t.columns) == BD_COLUMNS
    mean = t[(t["clip"] == "mean") & (t["metric"] == "psnr_roi")].iloc[0]
    assert mean["mode"] == "roi" and mean["reference"] == "baseline"
    assert mean["bd_rate_pct"] == pytest.approx(-15.0, abs=0.5)


def test_roi_settings_splits_the_gain():
    """With a roi-settings run, roi is measured against both references: settings x ROI."""
    rows = []
    for r, q in zip(RATE, PSNR):
        for mode, rr in (("baseline", r), ("roi-settings", r * 0.9), ("roi", r * 0.72)):
            rows.append(dict(clip="a", codec="hevc", mode=mode, kbps=rr, psnr_roi=q,
                             psnr_nonroi=q, psnr_y=q, psnr_weighted=q))
    t = bd_table(pd.DataFrame(rows))
    m = t[(t["clip"] == "mean") & (t["metric"] == "psnr_roi")].set_index(["mode", "reference"])
    assert set(m.index) == {("roi", "baseline"), ("roi-settings", "baseline"), ("roi", "roi-settings")}
    assert m.loc[("roi-settings", "baseline"), "bd_rate_pct"] == pytest.approx(-10.0, abs=0.5)
    assert m.loc[("roi", "roi-settings"), "bd_rate_pct"] == pytest.approx(-20.0, abs=0.5)
    assert m.loc[("roi", "baseline"), "bd_rate_pct"] == pytest.approx(-28.0, abs=0.5)
