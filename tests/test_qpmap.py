"""QP maps: block statistics with partial edges, the QP mapping, output files."""
import numpy as np
import pytest
from PIL import Image

from roienc.errors import InputError
from roienc.qpmap import (block_reduce, importance_to_qp, qp_map_from_importance, render_qp_vis,
                          write_qp_outputs)


def test_block_mean_and_max_with_partial_edges():
    imp = np.zeros((20, 35), np.float32)
    imp[:16, :16] = 1.0
    imp[16:, 32:] = 0.5          # a 4x3 partial corner block
    imp[0, 20] = 0.8
    mean = block_reduce(imp, 16, "mean")
    mx = block_reduce(imp, 16, "max")
    assert mean.shape == mx.shape == (2, 3)
    assert mean[0, 0] == 1.0 and mean[1, 2] == pytest.approx(0.5)   # partial block: real pixels only
    assert mean[0, 1] == pytest.approx(0.8 / 256)
    assert mx[0, 1] == pytest.approx(0.8) and mx[1, 2] == 0.5
    assert mean.dtype == np.float32


def test_qp_mapping_bounds_and_direction():
    grid = np.array([[0.0, 0.5, 1.0]])
    qp = importance_to_qp(grid, 32, 3)
    assert qp.dtype == np.int8 and qp.tolist() == [[35, 32, 29]]
    assert importance_to_qp(grid, 32, 3, gamma=2.0).tolist() == [[35, 34, 29]]
    flat = np.full((2, 2), 0.1)
    assert importance_to_qp(flat, 32, 3).tolist() == [[34, 34], [34, 34]]      # not stretched
    stretched = importance_to_qp(np.array([[0.1, 0.2]]), 32, 3, normalize="frame")
    assert stretched.tolist() == [[35, 29]]
    assert importance_to_qp(flat, 32, 3, normalize="frame").tolist() == [[35, 35], [35, 35]]
    with pytest.raises(InputError):
        importance_to_qp(flat, 32, 3, normalize="clip")
    with pytest.raises(InputError):
        block_reduce(np.zeros((4, 4)), 0)


def test_outputs(tmp_path):
    imp = np.random.default_rng(0).random((50, 70)).astype(np.float32)
    qp = qp_map_from_importance(imp, block=16, base_qp=30, delta=4)
    assert qp.shape == (4, 5) and qp.min() >= 26 and qp.max() <= 34
    paths = write_qp_outputs(tmp_path / "f", qp, base_qp=30, delta=4)
    assert {p.name for p in paths} == {"f_qp_map.npy", "f_qp_map.csv", "f_qp_map_vis.png"}
    assert np.array_equal(np.load(tmp_path / "f_qp_map.npy"), qp)
    csv = np.loadtxt(tmp_path / "f_qp_map.csv", delimiter=",", dtype=int)
    assert np.array_equal(csv, qp)
    assert "#" not in (tmp_path / "f_qp_map.csv").read_text()
    with Image.open(tmp_path / "f_qp_map_vis.png") as vis:   # paletted, decodes to the RGB picture
        assert vis.mode in ("RGB", "P") and vis.width > vis.height
        assert np.array_equal(np.asarray(vis.convert("RGB")), render_qp_vis(qp, 30, 4))


def test_background_offset_is_its_own_parameter():
    from roienc.qpmap import importance_to_qp

    g = np.array([[0.0, 0.1, 0.5, 1.0]])
    # symmetric default: background = delta
    assert importance_to_qp(g, 32, 3).tolist() == [[35, 34, 32, 29]]
    # ROI-only offsets: the background keeps the base QP, importance 1 still gets -delta
    assert importance_to_qp(g, 32, 4, background=0).tolist() == [[32, 32, 30, 28]]
    assert importance_to_qp(g, 32, 6, background=2).tolist() == [[34, 33, 30, 26]]
    from roienc.errors import InputError
    from roienc.maps import QPParams
    with pytest.raises(InputError, match="background"):
        QPParams(base_qp=48, delta=3, background=4)
    assert QPParams(delta=4, background=None).background == 4      # None: symmetric
    assert QPParams(delta=4).background == 0                        # the default knob position
