"""``roienc demo``: the whole pipeline in one command, on synthesized data or a real root.

Synthesizes a small Cityscapes-format sample (unless ``cityscapes_root`` is given), builds the
maps, runs a two-mode sweep (baseline vs roi, 3 CRF points, SSIM evaluated too: the frames are
small) and returns the summary.
"""
from __future__ import annotations

from pathlib import Path

from .encode import RatePoint
from .importance import ImportanceParams
from .maps import QPParams
from .sweep import SweepResult, run_sweep
from .synth import synthesize

DEMO_CRF = (24, 30, 36)


def run_demo(out: str | Path, cityscapes_root: str | Path | None = None, *, split: str = "val",
             cities: list[str] | None = None, width: int = 384, height: int = 192,
             preset: str = "fast", speed: float | None = None, progress: bool = True) -> SweepResult:
    out = Path(out)
    if cityscapes_root is None:
        cityscapes_root = out / "data"
        if not (Path(cityscapes_root) / "leftImg8bit").is_dir():
            synthesize(cityscapes_root, split=split, cities=("lindau", "ulm"), width=width,
                       height=height, seed=0)
    # the default mapping: at 384x192 too it beats 16-px blocks, whose qg-size 16 alone costs
    # x265 about a fifth more bits on these frames (README, demo)
    opts = dict(importance=ImportanceParams(), speed=speed, qp=QPParams())
    return run_sweep(cityscapes_root, out / "run", split=split, cities=cities, codec="hevc",
                     modes=("baseline", "roi"), rates=[RatePoint("crf", c) for c in DEMO_CRF],
                     map_options=opts, preset=preset, progress=progress, ssim=True,
                     argv=["roienc", "demo", "--out", str(out)])
