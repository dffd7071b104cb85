"""Adapters without an encoder: rectangle cover, addroi text, filter scripts, zones, qpfile."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from roienc.adapters import (Rect, addroi_chain, cover_rectangles, ffmpeg_filter_script_args,
                             frame_qps, paint_first_wins, perframe_filter_script,
                             priority_rectangles, qp_range_for, qpfile_text, roi_rects, zones_string)
from roienc.encoders.x26x import check_roi_compatible
from roienc.errors import InputError
from roienc.tools import Tool


@settings(max_examples=200, deadline=None)
@given(arrays(np.int8, st.tuples(st.integers(1, 12), st.integers(1, 12)), elements=st.integers(-3, 3)))
def test_cover_is_exact_and_disjoint(grid):
    painted = np.zeros(grid.shape, np.int16)
    count = np.zeros(grid.shape, np.int16)
    for r0, c0, r1, c1, v in cover_rectangles(grid):
        assert v != 0 and r1 > r0 and c1 > c0
        assert (grid[r0:r1, c0:c1] == v).all()
        painted[r0:r1, c0:c1] = v
        count[r0:r1, c0:c1] += 1
    assert count.max() <= 1                      # no overlaps
    assert np.array_equal(painted, grid)         # union == non-zero blocks, values kept


@settings(max_examples=300, deadline=None)
@given(arrays(np.int8, st.tuples(st.integers(1, 14), st.integers(1, 14)), elements=st.integers(-3, 3)))
def test_priority_cover_gives_the_grid_when_the_first_rectangle_wins(grid):
    """What libx264/libx265 derive from the (overlapping) rectangles, first one winning, is
    exactly the grid, block for block; and never more rectangles than the disjoint cover."""
    rects = priority_rectangles(grid)
    for r0, c0, r1, c1, v in rects:
        assert 0 <= r0 < r1 <= grid.shape[0] and 0 <= c0 < c1 <= grid.shape[1]
    assert np.array_equal(paint_first_wins(rects, grid.shape), grid)
    assert len(rects) <= len(cover_rectangles(grid))


def test_priority_cover_uses_a_background_rectangle():
    g = np.full((64, 128), 2, np.int8)          # a real map's shape: background +2, objects
    g[10:20, 10:30] = -3
    g[9:21, 9:31][[0, -1], :] = -1              # a ring around the object
    g[40:42, 100:104] = 0
    rects = priority_rectangles(g)
    assert rects[-1] == (0, 0, 64, 128, 2)      # dominant value last, whole frame
    assert len(rects) < len(cover_rectangles(g))
    assert np.array_equal(paint_first_wins(rects, g.shape), g)
    px = roi_rects(g, 16, 2040, 1020)           # pixels, clipped, same order
    assert (px[-1].w, px[-1].h, px[-1].dq) == (2040, 1020, 2)


def test_cover_merges_blocks():
    g = np.zeros((64, 128), np.int8)
    g[10:30, 20:60] = -3
    assert cover_rectangles(g) == [(10, 20, 30, 60, -3)]
    assert cover_rectangles(np.zeros((3, 3), np.int8)) == []


def test_rects_are_clipped_and_chain_is_exact():
    g = np.array([[0, -3], [2, 0]], np.int8)
    rects = roi_rects(g, 16, 20, 30, overlapping=False)   # frame 20x30: last column/row partial
    assert roi_rects(g, 16, 20, 30) == rects                # nothing to gain by overlapping
    assert rects == [Rect(16, 0, 4, 16, -3), Rect(0, 16, 16, 14, 2)]
    assert addroi_chain(rects) == ("addroi=x=16:y=0:w=4:h=16:qoffset=-3/51,"
                                   "addroi=x=0:y=16:w=16:h=14:qoffset=2/51")
    assert addroi_chain(rects, 63).endswith("qoffset=2/63")
    assert qp_range_for("yuv420p") == 51 and qp_range_for("yuv420p10le") == 63
    assert addroi_chain([]) == ""


def test_perframe_script_runs_and_single_run():
    a = np.zeros((2, 3), np.int8)
    b = a.copy()
    b[0, 0] = -2
    fs = perframe_filter_script(np.stack([a, a, b, b, b, a]), 16, 48, 32)
    assert fs.runs == [(0, 1), (2, 4), (5, 5)]
    assert fs.rects_per_frame == [0, 0, 1, 1, 1, 0]
    assert "segment=frames=2|5[s0][s1][s2]" in fs.text
    assert "[s1]setpts=PTS-STARTPTS,addroi=x=0:y=0:w=16:h=16:qoffset=-2/51[r1]" in fs.text
    assert "[r0][r1][r2]concat=n=3:v=1:a=0,setpts=N/FRAME_RATE/TB[vout]" in fs.text
    fs = perframe_filter_script(np.stack([a, a, b, b, b, a]), 16, 48, 32, router="trim")
    assert "split=3[s0][s1][s2]" in fs.text
    assert ("[s1]trim=start_frame=2:end_frame=5,setpts=PTS-STARTPTS,"
            "addroi=x=0:y=0:w=16:h=16:qoffset=-2/51[r1]") in fs.text
    assert "[r0][r1][r2]concat=n=3:v=1:a=0,setpts=N/FRAME_RATE/TB[vout]" in fs.text
    single = perframe_filter_script(np.stack([b, b]), 16, 48, 32, pix_fmt="yuv420p")
    assert "split" not in single.text and single.text.startswith("[0:v]format=yuv420p,addroi=")
    assert not perframe_filter_script(np.stack([a]), 16, 48, 32).has_roi


def test_filter_script_option_by_version():
    old = Tool("ffmpeg", "/x", "5.1.9-0+deb12u1", "PATH")
    new = Tool("ffmpeg", "/x", "n9.0.2-17-g2a571b6068", "PATH")
    assert ffmpeg_filter_script_args(old, "f.txt") == ["-filter_complex_script", "f.txt"]
    assert ffmpeg_filter_script_args(new, "f.txt") == ["-/filter_complex", "f.txt"]


def test_zones_and_qpfile():
    grids = np.array([np.full((2, 2), 30), np.full((2, 2), 30), [[31, 32], [32, 32]], np.full((2, 2), 34)])
    qps = frame_qps(grids)
    assert qps == [30, 30, 32, 34]                 # 31.75 rounds to 32
    assert zones_string(qps) == "1,2,q=30/3,3,q=32/4,4,q=34"   # x265 zone frames are 1-based
    assert zones_string(qps, qp_offset=-4) == "1,2,q=26/3,3,q=28/4,4,q=30"
    b = zones_string(qps, "b")
    ratios = [float(z.split("b=")[1]) for z in b.split("/")]
    assert ratios[0] > 1 > ratios[-1]              # lower QP -> more bits
    assert qpfile_text([30, 31, 32], keyint=2) == "0 I 30\n1 P 31\n2 I 32\n"
    assert qpfile_text([30], qp_offset=30) == "0 I 51\n"   # clipped
    with pytest.raises(InputError):
        qpfile_text([30], frame_types=["X"])
    with pytest.raises(InputError):
        zones_string(qps, "x")


@pytest.mark.parametrize("kwargs, match", [
    (dict(rate_control="qp"), "constant-QP"),
    (dict(params="aq-mode=0"), "aq-mode=0"),
    (dict(params="aq-strength=0.0"), "aq-strength"),
    (dict(params="hevc-aq=1"), "hevc-aq"),
    (dict(preset="ultrafast"), "ultrafast"),
    (dict(preset="superfast"), "superfast"),
    (dict(tune="grain"), "grain"),
])
def test_roi_refusals(kwargs, match):
    args = dict(codec="hevc", rate_control="crf", params="aq-mode=1")
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        check_roi_compatible(**args)


def test_roi_warns_about_qg_size():
    assert check_roi_compatible("hevc", "crf", "aq-mode=1", "medium", None, block_size=16)
    assert not check_roi_compatible("hevc", "crf", "aq-mode=1:qg-size=16", "medium", None, block_size=16)


def test_graph_router_falls_back_to_trim_without_segment():
    from roienc.adapters import graph_router
    assert graph_router(Tool("ffmpeg", "/x", "5.1", "PATH", frozenset(), frozenset({"segment", "trim"}))) == "segment"
    assert graph_router(Tool("ffmpeg", "/x", "4.4", "PATH", frozenset(), frozenset({"split", "trim"}))) == "trim"
    assert graph_router(None) == "segment"
