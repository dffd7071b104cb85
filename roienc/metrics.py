"""Region quality metrics on numpy frames (pure functions).

PSNR of a region is computed from the squared error *pooled* over that region's pixels across
the whole clip: ``10*log10(peak^2 / (sum err^2 / n))`` — not the mean of per-frame PSNRs (which is
also reported, as ``*_framemean``). An empty region gives NaN; a region without error gives inf.
SSIM is computed on luma with the Wang et al. 7x7 uniform window (scikit-image's defaults:
``win_size=7``, sample covariance, K1=0.01, K2=0.03) as a full map, then averaged over a region.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

try:                                   # OpenCV's box filter is ~13x faster than scipy's here
    import cv2
except ImportError:                    # pragma: no cover - opencv-python-headless is a dependency
    cv2 = None
from scipy.ndimage import uniform_filter


def _box(a: np.ndarray, size: int) -> np.ndarray:
    """Mean over a ``size`` x ``size`` window, edges mirrored like scipy's ``mode='reflect'``."""
    if cv2 is not None and a.dtype == np.float32:
        return cv2.boxFilter(a, -1, (size, size), borderType=cv2.BORDER_REFLECT)
    return uniform_filter(a, size)


def _masked_sum(a: np.ndarray, mask: np.ndarray) -> float:
    """``a[mask].sum()`` without the gather: a dot product with the mask as 0/1 weights."""
    return float(np.dot(a.ravel(), mask.ravel().astype(a.dtype)))


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB; inf for mse 0, NaN for NaN (empty region)."""
    if mse != mse:  # NaN
        return float("nan")
    if mse <= 0:
        return float("inf")
    return 10.0 * math.log10(peak * peak / mse)


def ssim_map(ref: np.ndarray, dist: np.ndarray, data_range: float = 255.0,
             win_size: int = 7) -> np.ndarray:
    """Full SSIM map, equal to ``skimage.metrics.structural_similarity(..., full=True)[1]`` with
    its defaults (uniform window, sample covariance), computed in float32 for speed."""
    x = np.asarray(ref, dtype=np.float32)
    y = np.asarray(dist, dtype=np.float32)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    npix = win_size * win_size
    cov_norm = npix / (npix - 1.0)
    ux = _box(x, win_size)
    uy = _box(y, win_size)
    uxx = _box(x * x, win_size)
    uyy = _box(y * y, win_size)
    uxy = _box(x * y, win_size)
    # in place where possible: at 2048x1024 every temporary is 8 MB
    uxx -= ux * ux
    uyy -= uy * uy
    uxy -= ux * uy
    vx, vy, vxy = uxx, uyy, uxy
    vx *= cov_norm
    vy *= cov_norm
    vxy *= cov_norm
    a1 = ux * uy
    a1 *= 2
    a1 += c1
    a2 = vxy
    a2 *= 2
    a2 += c2
    b1 = ux
    b1 *= ux
    uy *= uy
    b1 += uy
    b1 += c1
    b2 = vx
    b2 += vy
    b2 += c2
    a1 *= a2
    b1 *= b2
    a1 /= b1
    return a1


@dataclass
class RegionAccumulator:
    """Pools squared error and SSIM over a region across frames; also keeps per-frame PSNRs."""

    sq: float = 0.0
    n: int = 0
    ssim_sum: float = 0.0
    frame_psnr: list[float] = field(default_factory=list)

    def add(self, err2: np.ndarray, mask: np.ndarray | None, ssim: np.ndarray | None = None,
            peak: float = 255.0) -> tuple[float, float]:
        """Add one frame; return its (psnr, ssim mean) over the region."""
        if mask is None:
            s, n = float(err2.sum(dtype=np.float64)), err2.size
            ss = float(ssim.sum(dtype=np.float64)) if ssim is not None else 0.0
        else:
            n = int(np.count_nonzero(mask))
            s = _masked_sum(err2, mask) if n else 0.0
            ss = _masked_sum(ssim, mask) if (ssim is not None and n) else 0.0
        self.sq += s
        self.n += n
        self.ssim_sum += ss
        p = psnr_from_mse(s / n, peak) if n else float("nan")
        self.frame_psnr.append(p)
        return p, (ss / n if n else float("nan"))

    def psnr(self, peak: float = 255.0) -> float:
        return psnr_from_mse(self.sq / self.n, peak) if self.n else float("nan")

    def ssim(self) -> float:
        return self.ssim_sum / self.n if self.n else float("nan")

    def frame_mean_psnr(self) -> float:
        """Mean of per-frame PSNRs over frames where the region is non-empty and finite."""
        v = [p for p in self.frame_psnr if math.isfinite(p)]
        return float(np.mean(v)) if v else float("nan")


@dataclass
class WeightedAccumulator:
    """Importance-weighted squared error: ``sum(w*err^2) / sum(w)`` pooled across frames."""

    wsq: float = 0.0
    w: float = 0.0

    def add(self, err2: np.ndarray, weight: np.ndarray) -> None:
        w = weight.ravel()
        e = err2.ravel()
        if w.dtype != e.dtype:
            w = w.astype(e.dtype)
        self.wsq += float(np.dot(w, e))
        self.w += float(w.sum(dtype=np.float64))

    def psnr(self, peak: float = 255.0) -> float:
        return psnr_from_mse(self.wsq / self.w, peak) if self.w > 0 else float("nan")
