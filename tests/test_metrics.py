"""Region metrics against hand computations on tiny frames."""
import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from roienc.metrics import RegionAccumulator, WeightedAccumulator, psnr_from_mse, ssim_map


def test_psnr_hand_computed():
    ref = np.full((4, 4), 100.0)
    dist = ref.copy()
    dist[0, 0] += 4          # error 16 in one pixel of 16 -> MSE 1
    assert psnr_from_mse(float(((ref - dist) ** 2).mean())) == pytest.approx(10 * math.log10(255 ** 2))
    assert psnr_from_mse(0.0) == math.inf
    assert math.isnan(psnr_from_mse(float("nan")))


def test_pooled_vs_per_frame_mean():
    acc = RegionAccumulator()
    mask = np.array([[True, False], [True, False]])
    acc.add(np.array([[1.0, 50.0], [1.0, 50.0]]), mask)     # region MSE 1
    acc.add(np.array([[100.0, 0.0], [100.0, 0.0]]), mask)   # region MSE 100
    pooled = 10 * math.log10(255 ** 2 / 50.5)
    framemean = (10 * math.log10(255 ** 2 / 1) + 10 * math.log10(255 ** 2 / 100)) / 2
    assert acc.psnr() == pytest.approx(pooled)
    assert acc.frame_mean_psnr() == pytest.approx(framemean)
    assert acc.psnr() < acc.frame_mean_psnr()               # pooling weights bad frames more


def test_empty_and_full_regions():
    err = np.ones((3, 3))
    empty = RegionAccumulator()
    empty.add(err, np.zeros((3, 3), bool), np.ones((3, 3)))
    assert math.isnan(empty.psnr()) and math.isnan(empty.ssim()) and empty.n == 0
    assert math.isnan(empty.frame_mean_psnr())
    full = RegionAccumulator()
    full.add(err, np.ones((3, 3), bool), np.full((3, 3), 0.5))
    whole = RegionAccumulator()
    whole.add(err, None, np.full((3, 3), 0.5))
    assert full.psnr() == whole.psnr() == pytest.approx(10 * math.log10(255 ** 2))
    assert full.ssim() == 0.5


def test_weighted_psnr():
    w = WeightedAccumulator()
    w.add(np.array([4.0, 100.0]), np.array([1.0, 0.0]))
    assert w.psnr() == pytest.approx(10 * math.log10(255 ** 2 / 4))
    assert math.isnan(WeightedAccumulator().psnr())


def test_known_noise_psnr():
    rng = np.random.default_rng(0)
    ref = rng.integers(30, 220, (64, 64)).astype(np.float64)
    noisy = ref + rng.choice([-3.0, 3.0], ref.shape)         # |error| = 3 everywhere: MSE 9
    acc = RegionAccumulator()
    acc.add((ref - noisy) ** 2, None)
    assert acc.psnr() == pytest.approx(10 * math.log10(255 ** 2 / 9))


def test_ssim_map_matches_scikit_image():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 56)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    _, ref = structural_similarity(a, b, data_range=255, full=True)
    assert np.abs(ssim_map(a, b) - ref).max() < 1e-4
    assert np.allclose(ssim_map(a, a), 1.0, atol=1e-5)


def test_ssim_map_exact_on_smooth_and_flat_content():
    """Smooth gradients are where single-precision moments cancel (E[x^2] - E[x]^2): the map
    must still equal scikit-image's, and identical flat frames must score exactly 1."""
    yy, xx = np.mgrid[0:96, 0:160]
    a = (128 + 100 * np.sin(xx / 30) * np.cos(yy / 20)).astype(np.uint8)
    b = np.clip(a.astype(int) + np.random.default_rng(2).integers(-2, 3, a.shape), 0, 255).astype(np.uint8)
    _, ref = structural_similarity(a, b, data_range=255, full=True)
    assert np.abs(ssim_map(a, b) - ref).max() < 1e-6
    flat = np.full((32, 48), 200, np.uint8)
    assert (ssim_map(flat, flat) == 1.0).all()
    a10, b10 = a.astype(np.uint16) * 4, b.astype(np.uint16) * 4
    _, ref10 = structural_similarity(a10, b10, data_range=1023, full=True)
    assert np.abs(ssim_map(a10, b10, data_range=1023) - ref10).max() < 1e-6


@pytest.mark.parametrize("shape", [(40, 56), (131, 257), (7, 7), (1, 13)])
@pytest.mark.parametrize("dtype,peak", [(np.uint8, 255), (np.uint16, 1023)])
def test_ssim_map_integer_path_equals_float64_path(shape, dtype, peak):
    """Integer frames go straight into the box filters and the element-wise passes run in chunks
    (131x257 spans several): the map must be the float64-copy path's bit for bit."""
    rng = np.random.default_rng(4)
    a = rng.integers(0, peak + 1, shape).astype(dtype)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, shape), 0, peak).astype(dtype)
    fast = ssim_map(a, b, data_range=peak)
    assert np.array_equal(fast, ssim_map(a.astype(np.float64), b.astype(np.float64), data_range=peak))
    out = np.empty(shape, np.float32)
    assert ssim_map(a, b, data_range=peak, out=out) is out and np.array_equal(out, fast)


def test_weighted_add_sums_is_add():
    rng = np.random.default_rng(5)
    err, w = rng.random((30, 40)).astype(np.float32), rng.random((30, 40))
    a, b = WeightedAccumulator(), WeightedAccumulator()
    a.add(err, w)
    b.add_sums(*WeightedAccumulator.frame_sums(err, w))
    assert (a.wsq, a.w) == (b.wsq, b.w)
