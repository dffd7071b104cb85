"""Region quality metrics on numpy frames (pure functions).

PSNR of a region is computed from the squared error *pooled* over that region's pixels across
the whole clip: ``10*log10(peak^2 / (sum err^2 / n))`` — not the mean of per-frame PSNRs (which is
also reported, as ``*_framemean``). An empty region gives NaN; a region without error gives inf.
SSIM is computed on luma with the Wang et al. 7x7 uniform window (scikit-image's defaults:
``win_size=7``, sample covariance, K1=0.01, K2=0.03) as a full map, then averaged over a region.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import cv2                              # box filters ~13x faster than scipy's uniform_filter
import numpy as np


def masked_sum(a: np.ndarray, mask: np.ndarray) -> float:
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
             win_size: int = 7, out: np.ndarray | None = None) -> np.ndarray:
    """Full SSIM map, equal (within 1e-7) to ``skimage.metrics.structural_similarity(...,
    full=True)[1]`` with its defaults (uniform window, sample covariance). Moments in float64 with
    OpenCV box filters (~8x faster than scikit-image); the map is returned in float32.

    ``out`` (float32, the frame's shape) receives the map; pass the same array frame after frame
    to avoid allocating (and page-faulting) fresh 8 MB buffers at 2048x1024.
    """
    ref, dist = np.asarray(ref), np.asarray(dist)
    if ref.shape != dist.shape:
        raise ValueError(f"ssim_map: shapes differ {ref.shape} vs {dist.shape}")
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    npix = win_size * win_size
    cn = npix / (npix - 1.0)                                         # sample covariance
    # BORDER_REFLECT mirrors edges like scipy's uniform_filter(mode='reflect') in scikit-image
    k, border = (win_size, win_size), cv2.BORDER_REFLECT
    # float64 like scikit-image: in float32, E[x^2] - E[x]^2 cancels catastrophically on smooth
    # content (SSIM off by 2e-4, identical flat frames scoring 0.99997)
    f64 = cv2.CV_64F
    x, y, ux, uy, t, num = _workspace(ref.shape, 6)
    np.copyto(x, ref, casting="unsafe")
    np.copyto(y, dist, casting="unsafe")
    cv2.boxFilter(x, f64, k, dst=ux, borderType=border)
    cv2.boxFilter(y, f64, k, dst=uy, borderType=border)
    cv2.multiply(x, y, dst=t)
    uxy = cv2.boxFilter(t, f64, k, dst=t, borderType=border)         # E[xy]
    uxx = cv2.sqrBoxFilter(x, f64, k, dst=x, borderType=border)      # E[x^2] (x no longer needed)
    uyy = cv2.sqrBoxFilter(y, f64, k, dst=y, borderType=border)      # E[y^2]
    # fused passes (cv2.addWeighted = a*s1 + b*s2 + g)
    cv2.multiply(ux, uy, dst=num)                                    # ux*uy
    cv2.addWeighted(uxy, 2 * cn, num, -2 * cn, c2, dst=uxy)          # a2 = 2*cov_xy + c2
    cv2.addWeighted(num, 2.0, num, 0.0, c1, dst=num)                 # a1 = 2*ux*uy + c1
    cv2.multiply(num, uxy, dst=num)                                  # a1*a2
    cv2.multiply(ux, ux, dst=ux)
    cv2.multiply(uy, uy, dst=uy)
    cv2.add(ux, uy, dst=ux)                                          # ux^2 + uy^2
    cv2.addWeighted(uxx, cn, uyy, cn, c2, dst=uxx)                   # cn*(E[x^2]+E[y^2]) + c2
    cv2.addWeighted(uxx, 1.0, ux, -cn, 0.0, dst=uxx)                 # b2 = var_x + var_y + c2
    cv2.addWeighted(ux, 1.0, ux, 0.0, c1, dst=ux)                    # b1 = ux^2 + uy^2 + c1
    cv2.multiply(ux, uxx, dst=ux)                                    # b1*b2
    res = out if out is not None else np.empty(ref.shape, np.float32)
    return cv2.divide(num, ux, dst=res, dtype=cv2.CV_32F)            # the map itself in float32


_WS = threading.local()


def _workspace(shape: tuple[int, ...], n: int) -> list[np.ndarray]:
    """``n`` float64 scratch arrays of ``shape``, reused per thread."""
    key = (shape, n)
    ws = getattr(_WS, "arrays", None)
    if ws is None or ws[0] != key:
        ws = (key, [np.empty(shape, np.float64) for _ in range(n)])
        _WS.arrays = ws
    return ws[1]


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
            s = masked_sum(err2, mask) if n else 0.0
            ss = masked_sum(ssim, mask) if (ssim is not None and n) else 0.0
        return self.add_sums(s, n, ss, peak)

    def add_sums(self, sq: float, n: int, ssim_sum: float = 0.0,
                 peak: float = 255.0) -> tuple[float, float]:
        """Add one frame given its region's sum of squared errors, pixel count and SSIM sum."""
        self.sq += sq
        self.n += n
        self.ssim_sum += ssim_sum
        p = psnr_from_mse(sq / n, peak) if n else float("nan")
        self.frame_psnr.append(p)
        return p, (ssim_sum / n if n else float("nan"))

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
