"""Crops of a Cityscapes-layout root: real content with a larger share of objects that matter.

    python3 benchmarks/_crop.py ROOT OUT [--size 1024x512]

For each 30-frame snippet, the window of ``--size`` (on a 64-px lattice) whose pixels are most
often a dynamic class (person, rider, vehicles) in the per-frame labels of ``ROOT/labels_pred``
(the bottom 20% of the frame excluded: the ego vehicle's bonnet is labelled ``car`` there), and
every PNG of the snippet (sequence frames, the annotated frame, gtFine, disparity, per-frame
labels) cut to it; camera and vehicle JSON are copied (a crop keeps fx and the baseline, so
distances are unchanged). A stand-in for content with more objects than the shared snippets,
used by ``bench_tradeoff.py --crop``; its figures are labelled as crops.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

DYNAMIC_IDS = np.arange(24, 34)          # cityscapesScripts labelIds of the dynamic classes


def best_window(share: np.ndarray, size: tuple[int, int], step: int = 64) -> tuple[int, int]:
    """(y, x) of the ``size`` = (w, h) window with the largest sum of ``share``."""
    w, h = size
    H, W = share.shape
    ii = np.pad(share, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    best, at = -1.0, (0, 0)
    for y in range(0, H - h + 1, step):
        for x in range(0, W - w + 1, step):
            s = ii[y + h, x + w] - ii[y, x + w] - ii[y + h, x] + ii[y, x]
            if s > best:
                best, at = s, (y, x)
    return at


def crop_root(root: Path, out: Path, size: tuple[int, int]) -> dict[str, dict]:
    from PIL import Image

    from roienc.fileio import read_png, write_png

    windows = {}
    pred = sorted((root / "labels_pred").rglob("*_labelIds.png"))
    snippets = sorted({p.name[:-len("_000000_labelIds.png")] for p in pred})
    for snip in snippets:
        files = [p for p in pred if p.name.startswith(snip + "_")]
        share = None
        for p in files:
            dyn = np.isin(read_png(p, "labelIds"), DYNAMIC_IDS).astype(np.float64)
            share = dyn if share is None else share + dyn
        share[int(share.shape[0] * 0.8):] = 0
        y, x = best_window(share, size)
        w, h = size
        windows[snip] = {"x": x, "y": y, "w": w, "h": h,
                         "dynamic_share": round(float(share[y:y + h, x:x + w].sum()
                                                      / (len(files) * w * h)), 4)}
        for src in root.rglob(f"{snip}_*"):
            dst = out / src.relative_to(root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.suffix == ".png":
                with Image.open(src) as im:
                    arr = np.asarray(im)
                write_png(dst, np.ascontiguousarray(arr[y:y + h, x:x + w]))
            elif src.name.endswith(("_camera.json", "_vehicle.json")):
                shutil.copy2(src, dst)
    (out / "crops.json").write_text(json.dumps(windows, indent=1))
    return windows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root")
    ap.add_argument("out")
    ap.add_argument("--size", default="1024x512")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    for snip, win in crop_root(Path(args.root), Path(args.out), (w, h)).items():
        print(snip, win)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _checkout  # noqa: F401
    sys.exit(main())
