"""The rate model and the rate-budget mapping: offsets follow the budget, integers keep the mean."""
from __future__ import annotations

import numpy as np
import pytest

from roienc.errors import InputError
from roienc.qpmap import rate_qp_map
from roienc.ratemodel import (QP_PER_DOUBLING, block_weights, dither, luma_activity, offset_grid,
                              predicted_rate, solve_offsets)


def test_luma_activity_is_the_cell_std():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 256, (20, 30)).astype(np.uint8)        # partial edge cells (20 = 2*8+4)
    act = luma_activity(y)
    assert act.shape == (3, 4)
    assert act[0, 0] == pytest.approx(y[:8, :8].std(), rel=1e-5)
    assert act[2, 3] == pytest.approx(y[16:, 24:].std(), rel=1e-5)
    assert luma_activity(np.full((16, 16, 3), 77, np.uint8)).max() == 0


def test_block_weights_sum_the_cells_of_each_block():
    act = np.arange(12, dtype=np.float32).reshape(3, 4)      # 8-px cells of a 24x32 frame
    w = block_weights(act, (2, 2), 16, exponent=1.0)          # 16-px blocks: 2x2 cells, last row 1
    assert w[0, 0] == pytest.approx((0 + 1 + 4 + 5) + 4)      # + floor 1 per cell
    assert w[1, 1] == pytest.approx((10 + 11) + 2)
    with pytest.raises(InputError, match="does not cover"):
        block_weights(act, (3, 3), 16)


@pytest.mark.parametrize("block", [2, 4, 6, 10, 12, 20, 24])
@pytest.mark.parametrize("size", [(96, 192), (37, 53), (1024, 2048)])
def test_block_weights_of_any_block_size(block, size):
    """Blocks smaller than the 8-px cells or not aligned with them share each cell by area: the
    weights add up to the cells', no block gets none, and a frame of uniform texture gives every
    whole block the same weight. (Blocks of 2, 6, 10 px on 96x192 or 2048x1024 frames used to be
    refused as "maps of another frame size"; blocks under 8 px left most blocks at 0.)"""
    rng = np.random.default_rng(1)
    act = luma_activity(rng.integers(0, 256, size).astype(np.uint8))
    shape = (-(-size[0] // block), -(-size[1] // block))
    w = block_weights(act, shape, block, size=size)
    assert w.shape == shape and (w > 0).all()
    assert w.sum() == pytest.approx((act + 1).sum())
    flat = block_weights(np.zeros_like(act), shape, block, size=size)
    # blocks over whole cells only (a partial edge cell weighs a whole cell's floor)
    whole = flat[: size[0] // 8 * 8 // block, : size[1] // 8 * 8 // block]
    assert whole.size and np.allclose(whole, block * block / 64)   # floor 1 per 64-px cell
    qp, choice = rate_qp_map(np.pad(np.ones((8, 8)), ((0, size[0] - 8), (0, size[1] - 8))),
                             act, budget_pct=5.0, block=block, stat="max")
    assert qp.shape == shape and np.isfinite(choice.predicted_pct)
    if min(shape) >= 8:              # enough blocks for the dithered grid to keep the budget
        assert choice.predicted_pct <= 5.0 + 1.5
    with pytest.raises(InputError, match="another frame size"):
        block_weights(act, (shape[0] + 2, shape[1]), block, size=size)


def test_predicted_rate_halves_per_doubling_step():
    w = np.ones((2, 2))
    assert predicted_rate(np.zeros((2, 2)), w) == 0.0
    assert predicted_rate(np.full((2, 2), QP_PER_DOUBLING), w) == pytest.approx(-0.5)
    assert predicted_rate(np.full((2, 2), -QP_PER_DOUBLING), w) == pytest.approx(1.0)


def _frame(roi_share: float, n: int = 40) -> np.ndarray:
    s = np.zeros((n, n))
    s.flat[: int(round(roi_share * n * n))] = 1.0
    return s


def test_offsets_follow_the_budget_as_the_roi_grows():
    """Small ROI: the full delta fits; larger ROI: the delta shrinks so the predicted bits stay at
    the budget; with a background cap the background pays first."""
    w = np.ones((40, 40))
    small = solve_offsets(_frame(0.01), w, 0.05, 6, 0)
    assert small.roi_delta == 6 and small.predicted <= 0.05
    deltas = []
    for share in (0.05, 0.10, 0.20):
        o = solve_offsets(_frame(share), w, 0.05, 6, 0)
        assert o.background == 0 and o.predicted == pytest.approx(0.05, abs=1e-6)
        deltas.append(o.roi_delta)
    assert deltas[0] > deltas[1] > deltas[2] > 0
    paid = solve_offsets(_frame(0.10), w, 0.0, 6, 3)           # rate-neutral, background pays
    assert paid.roi_delta == 6 and 0 < paid.background < 3
    assert paid.predicted == pytest.approx(0.0, abs=1e-6)
    capped = solve_offsets(_frame(0.50), w, 0.0, 6, 1)         # cap reached: the ROI gives way
    assert capped.background == 1 and 0 < capped.roi_delta < 6
    assert capped.predicted == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InputError):
        solve_offsets(_frame(0.1), w, float("nan"), 6, 0)


def test_costly_blocks_weigh_more():
    """The same ROI area costs more bits when it is textured: a smaller delta under one budget."""
    s = _frame(0.10)
    flat = solve_offsets(s, np.where(s > 0, 1.0, 1.0), 0.05, 9, 0)
    textured = solve_offsets(s, np.where(s > 0, 4.0, 1.0), 0.05, 9, 0)
    assert textured.roi_delta < flat.roi_delta


def test_dither_keeps_integers_and_the_mean():
    o = np.full((8, 8), -2.25)
    d = dither(o)
    assert set(np.unique(d)) == {-3, -2} and d.mean() == pytest.approx(-2.25)
    assert np.array_equal(dither(np.zeros((5, 7))), np.zeros((5, 7)))
    assert np.array_equal(dither(np.full((3, 3), -4.0)), np.full((3, 3), -4))
    assert np.array_equal(offset_grid(np.array([[0.0, 1.0]]), 6, 2), np.array([[2.0, -6.0]]))


def test_rate_qp_map_records_its_choice():
    imp = np.zeros((64, 128), np.float32)
    imp[:32, :64] = 1.0                                         # a quarter of the frame
    act = np.full((8, 16), 10.0, np.float32)
    qp, choice = rate_qp_map(imp, act, budget_pct=5.0, block=16, base_qp=32, delta=6, background=0)
    assert qp.dtype == np.int8 and qp.shape == (4, 8)
    assert 0 < choice.roi_delta < 6 and choice.background == 0
    assert abs(choice.predicted_pct - 5.0) < 1.5                # dithering rounds the grid
    assert (qp[2:, :] == 32).all() and (qp[:2, :4] < 32).all()
    zero, c0 = rate_qp_map(np.zeros((64, 128), np.float32), act, budget_pct=5.0, block=16)
    assert (zero == 32).all() and c0.predicted_pct == 0
