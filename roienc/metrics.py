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
    OpenCV box filters (~10x faster than scikit-image); the map is returned in float32.

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
    res = out if out is not None else np.empty(ref.shape, np.float32)
    consts = (c1, c2, cn)
    if ref.ndim == 2 and ref.dtype == dist.dtype and ref.dtype in (np.uint8, np.uint16):
        # Integer frames: straight into the box filters, in strips of rows (plus the window's
        # halo) so the float64 moments of a strip stay in cache. A window sum of integers is an
        # exact integer however it is computed, so every moment is the float64 full-frame one
        # bit for bit (and the map with it).
        h, wd = ref.shape
        half = win_size // 2
        unit = 64 // math.gcd(wd, 64)          # strips start at multiples of 64 elements (below)
        rows = unit * max(1, -(-_STRIP_ROWS // unit))
        ux, uy, uxy, ud2, num = _workspace((rows + 2 * half, wd), 5)
        # x*y and (x-y)^2 exactly: 8-bit ones in uint16 (the square from a table), 10/12-bit
        # ones in float64 (exact too)
        small = ref.dtype == np.uint8
        tdtype = np.uint16 if small else np.float64
        tbuf = _scratch((3, rows + 2 * half, wd), tdtype)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            a0, a1 = max(0, r0 - half), min(h, r1 + half)
            m = a1 - a0
            x, y, t, d = ref[a0:a1], dist[a0:a1], tbuf[0, :m], tbuf[1, :m]
            ad = tbuf[2].reshape(-1).view(np.uint8)[:m * wd].reshape(m, wd) if small else None
            cv2.boxFilter(x, f64, k, dst=ux[:m], borderType=border)      # E[x]
            cv2.boxFilter(y, f64, k, dst=uy[:m], borderType=border)      # E[y]
            np.multiply(x, y, out=t, dtype=tdtype)       # numpy: 6x cv2's mixed-type multiply
            cv2.boxFilter(t, f64, k, dst=uxy[:m], borderType=border)     # E[xy]
            if small:
                cv2.absdiff(x, y, dst=ad)
                cv2.LUT(ad, _SQUARES_U16, dst=d)
            else:
                cv2.subtract(x, y, dst=d, dtype=f64)
                cv2.multiply(d, d, dst=d)
            cv2.boxFilter(d, f64, k, dst=ud2[:m], borderType=border)     # E[(x-y)^2]
            o0, o1 = r0 - a0, r1 - a0                 # the strip's own rows, halo dropped
            _ssim_from_moments(*(b[o0:o1] for b in (ux, uy, uxy, ud2, num)),
                               res[r0:r1], *consts)
        return res
    ux, uy, uxy, ud2, num = _workspace(ref.shape, 5)
    x, y = ud2, num
    np.copyto(x, ref, casting="unsafe")
    np.copyto(y, dist, casting="unsafe")
    cv2.boxFilter(x, f64, k, dst=ux, borderType=border)              # E[x]
    cv2.boxFilter(y, f64, k, dst=uy, borderType=border)              # E[y]
    cv2.multiply(x, y, dst=uxy)
    cv2.boxFilter(uxy, f64, k, dst=uxy, borderType=border)           # E[xy]
    cv2.subtract(x, y, dst=x)
    cv2.multiply(x, x, dst=x)
    cv2.boxFilter(x, f64, k, dst=ud2, borderType=border)             # E[(x-y)^2]
    # the element-wise passes chunk by chunk (cache-resident pieces instead of eleven sweeps
    # over 16 MB arrays)
    flat = [a.reshape(-1) for a in (ux, uy, uxy, ud2, num, res)]
    for lo in range(0, res.size, _CHUNK):
        _ssim_from_moments(*(a[lo:lo + _CHUNK] for a in flat), *consts)
    return res


_SQUARES_U16 = (np.arange(256, dtype=np.uint16) ** 2).reshape(1, 256)


_STRIP_ROWS = 64          # rows per strip of integer frames (2048 wide: 6 x 1.1 MB of moments;
                          # fewer calls: ~9% faster than 32 rows, though 32 fit the caches better)
_CHUNK = 1 << 14          # elements per element-wise chunk of the float path (128 KB of float64)


def _ssim_from_moments(ux, uy, uxy, ud2, num, res, c1: float, c2: float, cn: float) -> None:
    """The SSIM map from the window moments E[x], E[y], E[xy], E[(x-y)^2], element-wise (all
    arrays contiguous, the moments overwritten), with the denominator's terms as the numerator's
    plus those of the difference image d = x - y:

        b1 = ux^2 + uy^2 + c1 = a1 + (ux - uy)^2           (a1 = 2*ux*uy + c1)
        b2 = var_x + var_y + c2 = a2 + cn*(E[d^2] - (ux - uy)^2)   (a2 = 2*cov_xy + c2)

    (identical frames: d = 0, b = a, exactly 1). Every piece a caller passes starts at a multiple
    of 64 elements from the start of the frame and only the last one ends at its end, so OpenCV
    splits them into SIMD and scalar elements as it splits the whole frame (its SIMD addWeighted
    may fuse multiply-adds): the map is the full-frame one bit for bit."""
    # fused passes (cv2.addWeighted = a*s1 + b*s2 + g)
    cv2.multiply(ux, uy, dst=num)                                    # ux*uy
    cv2.addWeighted(uxy, 2 * cn, num, -2 * cn, c2, dst=uxy)          # a2 = 2*cov_xy + c2
    cv2.addWeighted(num, 2.0, num, 0.0, c1, dst=num)                 # a1 = 2*ux*uy + c1
    cv2.subtract(ux, uy, dst=ux)
    cv2.multiply(ux, ux, dst=ux)                                     # (ux - uy)^2
    cv2.addWeighted(ud2, cn, ux, -cn, 0.0, dst=ud2)                  # cn*var_d
    cv2.add(ud2, uxy, dst=ud2)                                       # b2
    cv2.add(ux, num, dst=ux)                                         # b1
    cv2.multiply(num, uxy, dst=num)                                  # a1*a2
    cv2.multiply(ux, ud2, dst=ux)                                    # b1*b2
    cv2.divide(num, ux, dst=res, dtype=cv2.CV_32F)                   # the map itself in float32


_WS = threading.local()


def _scratch(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """One scratch array of ``shape`` and ``dtype``, reused per thread."""
    key = (shape, np.dtype(dtype))
    arr = getattr(_WS, "scratch", None)
    if arr is None or arr[0] != key:
        arr = (key, np.empty(shape, dtype))
        _WS.scratch = arr
    return arr[1]


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
        self.add_sums(*self.frame_sums(err2, weight))

    @staticmethod
    def frame_sums(err2: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
        """``(sum(w*err^2), sum(w))`` of one frame, as :meth:`add` adds them."""
        w = weight.ravel()
        e = err2.ravel()
        if w.dtype != e.dtype:
            w = w.astype(e.dtype)
        return float(np.dot(w, e)), float(w.sum(dtype=np.float64))

    def add_sums(self, wsq: float, w: float) -> None:
        """Add one frame given ``sum(w*err^2)`` and ``sum(w)``."""
        self.wsq += wsq
        self.w += w

    def psnr(self, peak: float = 255.0) -> float:
        return psnr_from_mse(self.wsq / self.w, peak) if self.w > 0 else float("nan")
