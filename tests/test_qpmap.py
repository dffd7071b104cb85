"""QP maps: block statistics (partial edge blocks exact), the QP mapping and the files."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from roienc.errors import InputError
from roienc.qpmap import (block_reduce, importance_to_qp, qp_map_from_importance, render_qp_vis,
                          write_qp_outputs)
from roienc.vis import colormap_lut


def _reference_blocks(imp: np.ndarray, b: int, fn) -> np.ndarray:
    h, w = imp.shape
    out = np.empty((math.ceil(h / b), math.ceil(w / b)))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = fn(imp[i * b:(i + 1) * b, j * b:(j + 1) * b])
    return out


@pytest.mark.parametrize("shape,block", [((64, 128), 16), ((37, 50), 16), ((1, 1), 16),
                                         ((17, 33), 8), ((100, 70), 32)])
@pytest.mark.parametrize("stat", ["mean", "max"])
def test_block_reduce_matches_slicing_reference(shape, block, stat):
    rng = np.random.default_rng(sum(shape) + block)
    imp = rng.random(shape, dtype=np.float32)
    got = block_reduce(imp, block, stat)
    ref = _reference_blocks(imp, block, np.mean if stat == "mean" else np.max)
    assert got.dtype == np.float32
    assert got.shape == (math.ceil(shape[0] / block), math.ceil(shape[1] / block))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)


def test_partial_edge_blocks_use_only_real_pixels():
    # 20x20 frame, block 16: the edge blocks hold 4 columns / 4 rows of real pixels.
    imp = np.zeros((20, 20), np.float32)
    imp[:, 16:] = 1.0                      # the whole real part of the right edge blocks
    g = block_reduce(imp, 16, "mean")
    assert g.shape == (2, 2)
    assert g[0, 1] == pytest.approx(1.0)   # not 4/16: padding is not counted
    assert g[1, 1] == pytest.approx(1.0)
    assert g[0, 0] == 0.0
    # a single important pixel in the bottom-right corner is not lost
    imp = np.zeros((33, 47), np.float32)
    imp[-1, -1] = 1.0
    assert block_reduce(imp, 16, "max")[-1, -1] == 1.0
    assert block_reduce(imp, 16, "mean")[-1, -1] == pytest.approx(1.0 / (1 * 15))


def test_block_mean_preserves_total_importance():
    rng = np.random.default_rng(3)
    imp = rng.random((45, 61), dtype=np.float32)
    g = block_reduce(imp, 16, "mean").astype(np.float64)
    rows = np.diff(np.minimum(np.arange(0, 45 + 16, 16), 45))
    cols = np.diff(np.minimum(np.arange(0, 61 + 16, 16), 61))
    assert (g * np.outer(rows, cols)).sum() == pytest.approx(imp.sum(dtype=np.float64), rel=1e-6)


def test_max_protects_a_block_touching_an_object_mean_does_not():
    imp = np.zeros((32, 32), np.float32)
    imp[0:2, 0:2] = 1.0                   # 4 of 256 pixels of the first block
    assert block_reduce(imp, 16, "max")[0, 0] == 1.0
    assert block_reduce(imp, 16, "mean")[0, 0] == pytest.approx(4 / 256)
    qp_max = qp_map_from_importance(imp, stat="max")
    qp_mean = qp_map_from_importance(imp, stat="mean")
    assert qp_max[0, 0] == 29 and qp_mean[0, 0] == 35


@pytest.mark.parametrize("bad,match", [
    (np.zeros((0, 4)), "non-empty"), (np.zeros(5), "2-D"), (np.full((4, 4), np.nan), "NaN")])
def test_block_reduce_rejects_bad_maps(bad, match):
    with pytest.raises(InputError, match=match):
        block_reduce(bad, 16)


def test_block_reduce_rejects_bad_options():
    with pytest.raises(InputError, match="block size"):
        block_reduce(np.zeros((4, 4)), 0)
    with pytest.raises(InputError, match="'mean' or 'max'"):
        block_reduce(np.zeros((4, 4)), 2, "median")


def test_qp_mapping_end_points_and_direction():
    g = np.array([[0.0, 0.5, 1.0, 0.1]], np.float32)
    qp = importance_to_qp(g, 32, 3)
    assert qp.dtype == np.int8
    assert qp.tolist() == [[35, 32, 29, 34]]       # 35 - 6*0.1 = 34.4 -> 34
    # gamma < 1 lifts mid importances (lower QP), gamma > 1 lowers them
    assert importance_to_qp(np.array([[0.25]]), 32, 3, gamma=0.5)[0, 0] == 32   # 35-6*0.5
    assert importance_to_qp(np.array([[0.5]]), 32, 3, gamma=2.0)[0, 0] == 34    # 35-1.5 -> 34 (half to even)
    assert importance_to_qp(np.array([[0.5]]), 30, 0).tolist() == [[30]]        # delta 0: flat


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 48), st.integers(0, 3), st.floats(0.2, 4.0),
       st.lists(st.floats(0, 1), min_size=1, max_size=40))
def test_qp_always_within_range_and_monotone(base, delta, gamma, values):
    g = np.array(sorted(values), np.float32)[None, :]
    qp = importance_to_qp(g, base, delta, gamma).astype(int)[0]
    assert qp.min() >= base - delta and qp.max() <= base + delta
    assert (np.diff(qp) <= 0).all()                 # more importance never raises QP


def test_all_background_frame_is_not_stretched_by_default():
    g = np.full((4, 6), 0.1, np.float32)
    g[0, 0] = 0.2
    plain = importance_to_qp(g, 32, 3)
    assert set(np.unique(plain)) <= {34, 33}        # static stays near the top of the range
    stretched = importance_to_qp(g, 32, 3, normalize="frame")
    assert stretched[0, 0] == 29 and stretched[1, 1] == 35   # seed behaviour, opt-in only
    flat = importance_to_qp(np.full((2, 2), 0.3), 32, 3, normalize="frame")
    assert (flat == 35).all()                       # constant frame: no division by zero


def test_qp_mapping_rejects_bad_parameters():
    with pytest.raises(InputError, match="normalisation"):
        importance_to_qp(np.zeros((2, 2)), 32, 3, normalize="clip")
    with pytest.raises(InputError, match="QP range"):
        importance_to_qp(np.zeros((2, 2)), 2, 3)
    with pytest.raises(InputError, match="gamma"):
        importance_to_qp(np.zeros((2, 2)), 32, 3, gamma=0.0)


def test_write_qp_outputs_files_round_trip(tmp_path):
    imp = np.zeros((70, 100), np.float32)
    imp[20:50, 30:60] = 1.0
    qp = qp_map_from_importance(imp, block=16)
    assert qp.shape == (5, 7)
    prefix = tmp_path / "val" / "ulm" / "ulm_000000_000019"
    paths = write_qp_outputs(prefix, qp, base_qp=32, delta=3)
    names = sorted(p.name for p in paths)
    assert names == ["ulm_000000_000019_qp_map.csv", "ulm_000000_000019_qp_map.npy",
                     "ulm_000000_000019_qp_map_vis.png"]
    npy = np.load(prefix.with_name(prefix.name + "_qp_map.npy"))
    assert npy.dtype == np.int8 and (npy == qp).all()
    text = prefix.with_name(prefix.name + "_qp_map.csv").read_text()
    assert text.count("\n") == 5 and text.splitlines()[0].count(",") == 6   # no header
    csv = np.loadtxt(prefix.with_name(prefix.name + "_qp_map.csv"), delimiter=",", dtype=int,
                     ndmin=2)
    assert (csv == qp).all()
    assert not [p for p in prefix.parent.iterdir() if ".tmp" in p.name]      # atomic writes
    vis = np.asarray(Image.open(prefix.with_name(prefix.name + "_qp_map_vis.png")))
    assert vis.ndim == 3 and vis.shape[2] == 3


def test_vis_colours_low_qp_blue_high_qp_yellow():
    qp = np.array([[29, 35], [32, 35]], np.int8)
    vis = render_qp_vis(qp, 32, 3, scale=10)
    lut = colormap_lut("viridis")
    low, high = vis[5, 5].astype(int), vis[5, 15].astype(int)
    assert (low == lut[0]).all() and (high == lut[255]).all()
    assert low[2] > low[0] and low[2] > low[1]            # blue-purple
    assert high[0] > 200 and high[1] > 200 and high[2] < 80   # yellow
    assert vis.shape[0] == 20 and vis.shape[1] > 20          # colour bar appended at the right
    bar = vis[:, 20:]
    # the bar carries every QP colour of the range (one band per integer QP)
    colours = {tuple(c) for c in bar.reshape(-1, 3)}
    big = render_qp_vis(np.full((40, 40), 32, np.int8), 32, 3)
    bar_big = {tuple(c) for c in big[:, 40 * 12:].reshape(-1, 3)}
    assert tuple(lut[0]) in bar_big and tuple(lut[255]) in bar_big
    assert len(colours) > 2
