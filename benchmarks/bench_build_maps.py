"""build-maps throughput on synthesized 2048x1024 frames vs the seed's original algorithm.

The seed (the prototype roienc replaced) computed one mean disparity per *class*, turned it into
a class importance, block-averaged with Python loops and drew every output as a matplotlib
figure (``imshow`` + ``savefig``). It is reimplemented faithfully below, producing the same set
of outputs (importance npy/png/vis, QP map csv/npy/vis, object table, annotation), and both are
run in this process on the same frames.

    python3 benchmarks/bench_build_maps.py [--frames 12] [--workers 1,2]

Both produce the default output set: every per-frame file, the distance annotation on every 30th
frame. Module imports are paid before timing starts (one warm-up frame each).

Prints seconds per frame of each, their ratio, and the roienc scaling with --workers.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def seed_build_maps(root: Path, out: Path, split: str, v_default: float = 10.0,
                    visualize_every: int = 30) -> int:
    """The seed algorithm: class-level mean disparity, loop block means, matplotlib outputs."""
    import json

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    from cityscapesscripts.helpers.labels import id2label

    static = {"road", "sidewalk", "parking", "rail track", "building", "wall", "fence",
              "guard rail", "bridge", "tunnel", "pole", "polegroup", "vegetation", "terrain", "sky"}
    void = {"unlabeled", "ego vehicle", "rectification border", "out of roi", "license plate"}
    n = 0
    for lab_path in sorted((root / "gtFine" / split).glob("*/*_gtFine_labelIds.png")):
        fid = lab_path.name[: -len("_gtFine_labelIds.png")]
        city = lab_path.parent.name
        labels = np.array(Image.open(lab_path))
        disp = np.array(Image.open(root / "disparity" / split / city / f"{fid}_disparity.png")).astype(np.float64)
        cam = json.load(open(root / "camera" / split / city / f"{fid}_camera.json"))
        veh = json.load(open(root / "vehicle" / split / city / f"{fid}_vehicle.json"))
        fx, b, v = cam["intrinsic"]["fx"], cam["extrinsic"]["baseline"], veh.get("speed", v_default)
        d_safe = max(5.0, v * 2.5 + v * v / (2 * 3.4))
        imp = np.zeros(labels.shape, np.float64)
        rows = []
        for lid in np.unique(labels):
            name = id2label[int(lid)].name
            mask = labels == lid
            if name in void:
                continue
            if name in static:
                imp[mask] = 0.1
                continue
            dvals = disp[mask]
            dvals = dvals[dvals > 0]
            if dvals.size == 0:
                imp[mask] = 1.0
                continue
            dist = fx * b / ((dvals.mean() - 1) / 256.0)
            val = 1.0 if dist <= d_safe else math.exp(-math.log(2) / d_safe * (dist - d_safe))
            imp[mask] = val
            rows.append((name, int(mask.sum()), dist, val))
        o = out / split / city
        o.mkdir(parents=True, exist_ok=True)
        np.save(o / f"{fid}_importance.npy", imp.astype(np.float32))
        Image.fromarray((imp * 255).round().astype(np.uint8)).save(o / f"{fid}_importance.png")
        fig = plt.figure(figsize=(20.48, 10.24), dpi=100)
        plt.imshow(imp, cmap="hot", vmin=0, vmax=1)
        plt.axis("off")
        fig.savefig(o / f"{fid}_importance_vis.png")
        plt.close(fig)
        bs = 16
        gh, gw = math.ceil(imp.shape[0] / bs), math.ceil(imp.shape[1] / bs)
        qp = np.zeros((gh, gw), int)
        for i in range(gh):
            for j in range(gw):
                m = imp[i * bs:(i + 1) * bs, j * bs:(j + 1) * bs].mean()
                qp[i, j] = round(32 + 3 - 6 * m)
        np.savetxt(o / f"{fid}_qp_map.csv", qp, fmt="%d", delimiter=",")
        np.save(o / f"{fid}_qp_map.npy", qp.astype(np.int8))
        fig = plt.figure(figsize=(12, 6))
        plt.imshow(qp, cmap="viridis")
        plt.colorbar(label="QP")
        fig.savefig(o / f"{fid}_qp_map_vis.png")
        plt.close(fig)
        with open(o / f"{fid}_objects.csv", "w") as f:
            f.write("label,pixels,distance_m,importance\n")
            for r in rows:
                f.write(",".join(map(str, r)) + "\n")
        n += 1
        if (n - 1) % visualize_every:
            continue
        img = np.array(Image.open(root / "leftImg8bit" / split / city / f"{fid}_leftImg8bit.png"))
        fig = plt.figure(figsize=(20.48, 10.24), dpi=100)
        plt.imshow(img)
        plt.title(f"d_safe = {d_safe:.1f} m")
        plt.axis("off")
        fig.savefig(o / f"{fid}_distance_annotation.png")
        plt.close(fig)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12, help="annotated frames to synthesize")
    ap.add_argument("--workers", default="1,2", help="roienc worker counts to time")
    args = ap.parse_args()

    from roienc.maps import build_maps
    from roienc.synth import synthesize

    tmp = Path(tempfile.mkdtemp(prefix="roienc-bench-"))
    try:
        t = time.perf_counter()
        synthesize(tmp / "cs", split="val", cities=("benchcity",), sequences_per_city=args.frames,
                   width=2048, height=1024, with_sequences=False)
        print(f"synthesized {args.frames} frames of 2048x1024 in {time.perf_counter() - t:.1f} s")

        # warm-up (imports, colormaps, colour bar) on one frame, untimed
        synthesize(tmp / "warm", split="val", cities=("warm",), width=2048, height=1024,
                   with_sequences=False)
        seed_build_maps(tmp / "warm", tmp / "warm_seed", "val")
        build_maps(tmp / "warm", tmp / "warm_roienc", split="val", workers=1, progress=False)

        t = time.perf_counter()
        n = seed_build_maps(tmp / "cs", tmp / "seed", "val")
        seed_s = (time.perf_counter() - t) / n
        print(f"seed algorithm (1 core)          : {seed_s:7.3f} s/frame  {1 / seed_s:6.2f} frames/s")

        results = {}
        for w in [int(x) for x in args.workers.split(",")]:
            out = tmp / f"roienc{w}"
            t = time.perf_counter()
            # default output set: every file per frame, distance annotation every 30th frame
            rep = build_maps(tmp / "cs", out, split="val", workers=w, visualize_every=30,
                             progress=False)
            dt = (time.perf_counter() - t) / len(rep.manifest)
            assert (rep.manifest["status"] == "ok").all(), rep.manifest
            results[w] = dt
            print(f"roienc build-maps --workers {w}   : {dt:7.3f} s/frame  {1 / dt:6.2f} frames/s"
                  f"  speed-up vs seed {seed_s / dt:5.1f}x")
        if 1 in results:
            for w, dt in results.items():
                if w != 1:
                    print(f"scaling 1 -> {w} workers: {results[1] / dt:.2f}x (ideal {w}x, "
                          f"{os.cpu_count()} cores)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
