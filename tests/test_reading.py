"""What a researcher reads (issue 31): distances that could not be measured are counted and
explained, the distance annotation shows each snippet's annotated frame."""
import shutil

import numpy as np
import pytest
from PIL import Image

from roienc.maps import build_maps, read_manifest

KW = dict(split="val", sequences=True, workers=1, progress=False)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    from roienc.synth import synthesize

    r = tmp_path_factory.mktemp("cs")
    synthesize(r, split="val", width=192, height=96, seed=6)
    return r


def test_unknown_distances_are_counted_and_explained(clean, tmp_path):
    root = tmp_path / "cs"
    shutil.copytree(clean, root)
    d = next((root / "disparity_sequence").rglob("*_000007_disparity.png"))
    Image.fromarray(np.zeros(np.asarray(Image.open(d)).shape, np.uint16)).save(d)
    build_maps(root, tmp_path / "m", visualize_every=0, **KW)
    man = read_manifest(tmp_path / "m").set_index("frame_id")
    bad = man.loc[d.name[:-len("_disparity.png")]]
    assert int(bad["objects_unknown_distance"]) == int(bad["objects"]) > 0
    assert "no valid pixel" in bad["distance_note"]
    good = man.drop(index=bad.name)
    assert (good["distance_note"] == "").sum() > len(good) // 2


def test_the_annotation_shows_each_snippets_annotated_frame(clean, tmp_path):
    build_maps(clean, tmp_path / "m", **KW)              # default: every 30th frame
    pics = sorted(p.name for p in (tmp_path / "m").rglob("*_distance_annotation.jpg"))
    assert pics == ["lindau_000000_000019_distance_annotation.jpg"]


def test_report_shows_every_clips_bd_rate_with_its_reliability():
    import pandas as pd

    from roienc.report import bd_clip_tables
    warn = ("bd_rate: Insufficient curve overlap: '69.17'. Minimum overlap: '75.00'. You can "
            "silence this warning by setting `min_overlap=0`")
    rows = [("m", "roi", "baseline", "psnr_roi", v, c, n) for v, c, n in
            ((-17.26, "a_000000", warn), (-28.37, "a_000001", ""), (-22.8, "mean", ""))]
    bd = pd.DataFrame(rows, columns=["maps", "mode", "reference", "metric", "bd_rate_pct", "clip",
                                     "note"])
    page = bd_clip_tables(bd)
    assert "-17.3%<sup" in page and "-28.4%</td>" in page           # each clip, the marked one
    assert "mean of 2" in page and "(1 of 2 marked)" in page         # the mean says it leans on it
    assert "share only 69% of their quality range" in page and "min_overlap" not in page


def test_rd_plot_has_a_panel_per_clip_and_draws_identical_references_once(tmp_path):
    import pandas as pd
    from PIL import Image

    from roienc.plots import rd_curves, rd_plot
    rows = []
    for clip in ("a", "b", "c"):
        for i, crf in enumerate((24, 28, 32, 36)):
            base = dict(clip=clip, codec="hevc", rate_control="crf", rate_value=crf)
            rows += [dict(base, mode="baseline", kbps=1000 / (i + 1), psnr_roi=40 - i),
                     dict(base, mode="roi-settings", kbps=1000 / (i + 1), psnr_roi=40 - i),
                     dict(base, mode="roi", kbps=1100 / (i + 1), psnr_roi=41 - i)]
    res = pd.DataFrame(rows)
    names = [n for n, _ in rd_curves(res, "psnr_roi")]
    assert sorted(names) == ["hevc baseline = hevc roi-settings", "hevc roi"]
    w, h = Image.open(rd_plot(res, "psnr_roi", tmp_path / "rd.png")).size
    assert (w, h) == (1280, 880)                    # 2x2 panels: a, b, c and the mean
    w1, h1 = Image.open(rd_plot(res[res["clip"] == "a"], "psnr_roi", tmp_path / "one.png")).size
    assert (w1, h1) == (640, 440)                   # one clip: its panel only


def test_report_says_why_near_object_psnr_is_empty():
    import pandas as pd

    from roienc.report import near_objects_note
    res = pd.DataFrame({"clip": ["a", "b"], "psnr_near_objects": [float("nan"), 41.0]})
    note = near_objects_note(res)
    assert "NaN for a:" in note and "d_safe" in note and "NaN for a, b" not in note
    assert near_objects_note(res.assign(psnr_near_objects=[40.0, 41.0])) == ""


def test_mean_bd_rates_say_how_many_clips_behind_them_are_marked():
    import pandas as pd

    from roienc.report import mark_means
    warn = "bd_rate: Insufficient curve overlap: '60.00'. Minimum overlap: '75.00'."
    bd = pd.DataFrame([("m", "roi", "baseline", "psnr_roi", c, n) for c, n in
                       (("a", warn), ("b", ""), ("c", warn), ("mean", ""))],
                      columns=["maps", "mode", "reference", "metric", "clip", "note"])
    out = mark_means(bd, bd[bd["clip"] == "mean"])
    assert list(out["clips_marked"]) == ["2 of 3"]


def test_console_tables_say_they_are_means_and_why_bd_rates_are_empty():
    from types import SimpleNamespace

    import pandas as pd

    from roienc.commands.sweep import summary_table
    rows = [dict(maps=m, clip=c, codec="hevc", mode=mode, rate_value=v, kbps=100.0 / v,
                 psnr_roi=30.0, psnr_nonroi=30.0, psnr_y=30.0)
            for c in ("a", "b") for v in (26, 34) for m, mode in (("plain", "baseline"), ("x", "roi"))]
    bd = pd.DataFrame([("x", "roi", "baseline", "psnr_roi", float("nan"), float("nan"), c,
                        "bd_rate: too few points", "self") for c in ("a", "b", "mean")],
                      columns=["maps", "mode", "reference", "metric", "bd_rate_pct", "bd_psnr_db",
                               "clip", "note", "judged_by"])
    text = summary_table(SimpleNamespace(results=pd.DataFrame(rows), bdrate=bd))
    assert "Mean over 2 clips at each rate point" in text
    assert "BD-rate, mean over 2 clips" in text and "2 of 2" in text
    assert "need at least 4 rate points" in text and "this run has 2" in text


def test_report_explains_the_columns_a_reader_could_misread():
    from roienc.report import COLUMNS_HTML
    for col in ("bd_rate_pct", "mean_roi_delta", "mean_roi_offset", "clips_marked", "points"):
        assert f"<code>{col}</code>" in COLUMNS_HTML
