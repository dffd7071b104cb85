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
from scipy.ndimage import uniform_filter


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
    ux = uniform_filter(x, win_size)
    uy = uniform_filter(y, win_size)
    uxx = uniform_filter(x * x, win_size)
    uyy = uniform_filter(y * y, win_size)
    uxy = uniform_filter(x * y, win_size)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    a1 = 2 * ux * uy + c1
    a2 = 2 * vxy + c2
    b1 = ux * ux + uy * uy + c1
    b2 = vx + vy + c2
    return (a1 * a2) / (b1 * b2)


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
            s = float(err2[mask].sum(dtype=np.float64)) if n else 0.0
            ss = float(ssim[mask].sum(dtype=np.float64)) if (ssim is not None and n) else 0.0
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
        self.wsq += float(np.dot(weight.ravel().astype(np.float64), err2.ravel()))
        self.w += float(weight.sum(dtype=np.float64))

    def psnr(self, peak: float = 255.0) -> float:
        return psnr_from_mse(self.wsq / self.w, peak) if self.w > 0 else float("nan")
