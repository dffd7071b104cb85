"""Shared fixtures: small generated clips and synthesized Cityscapes data."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from roienc.maps import QPParams
from roienc.tools import find_ffmpeg

SMALL_QP = QPParams(block_size=16, delta=3, background=3, block_stat="mean")


def write_y4m(path: Path, frames: np.ndarray, fps: int = 17) -> Path:
    """Write (N, H, W) luma frames as a 4:2:0 y4m clip (grey chroma)."""
    n, h, w = frames.shape
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        chroma = np.full(((h + 1) // 2) * ((w + 1) // 2), 128, np.uint8).tobytes()
        for fr in frames:
            f.write(b"FRAME\n" + fr.astype(np.uint8).tobytes() + chroma + chroma)
    return path


def moving_texture(n: int = 12, h: int = 96, w: int = 160, seed: int = 0) -> np.ndarray:
    """Smooth random texture scrolling 2 px per frame: real content for an encoder."""
    rng = np.random.default_rng(seed)
    big = gaussian_filter(rng.random((h + 2 * n, w + 2 * n)), 1.5)
    big = (big - big.min()) / (big.max() - big.min()) * 200 + 28
    return np.stack([big[i:i + h, 2 * i:2 * i + w] for i in range(n)])


def decode_luma(path: Path, w: int, h: int, pix_fmt: str = "yuv420p") -> np.ndarray:
    ff = find_ffmpeg().path
    out = subprocess.run([ff, "-loglevel", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", pix_fmt, "-"], capture_output=True, check=True).stdout
    bps = 2 if pix_fmt.endswith("le") else 1
    fsize = (w * h + 2 * ((w + 1) // 2) * ((h + 1) // 2)) * bps
    arr = np.frombuffer(out, np.uint16 if bps == 2 else np.uint8).reshape(-1, fsize // bps)
    return arr[:, :w * h].reshape(-1, h, w).astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    return float(10 * np.log10(peak ** 2 / np.mean((a - b) ** 2)))


@pytest.fixture(scope="session")
def ffmpeg():
    return find_ffmpeg()


@pytest.fixture(scope="session")
def seq_dataset(tmp_path_factory):
    """One synthesized 30-frame snippet at 192x96 with its maps (sequences included)."""
    from roienc.maps import build_maps
    from roienc.synth import synthesize

    root = tmp_path_factory.mktemp("seqcs")
    synthesize(root, split="val", cities=("lindau",), width=192, height=96, seed=2)
    maps = tmp_path_factory.mktemp("seqmaps")
    # 192x96 frames: 16-px blocks with the symmetric +-3 mapping (the encode mechanics tested
    # with this snippet: qg-size 16, addroi geometry, zones) rather than the 2048-px defaults
    build_maps(root, maps, split="val", sequences=True, workers=1, progress=False,
               visualize_every=0, qp=SMALL_QP)
    return root, maps
