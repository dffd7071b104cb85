"""What the ROI machinery costs next to the encoder: wall time and peak memory, ROI vs baseline.

    python3 benchmarks/bench_encode.py [--width 1024 --height 512] [--preset medium]
                                       [--repeat 2] [--long-frames 300]

On one synthesized Cityscapes-format snippet (30 frames, moving objects, so the per-frame QP maps
differ frame to frame and the per-frame filter script has one branch per distinct map) it runs
``roienc.encode.encode_many`` in baseline and roi mode at the same preset and CRF, alternating,
``--repeat`` times each, and prints the best wall times and their ratio (target <= 1.05).

Then peak resident memory of the encoder process (FFmpeg, read from ``RUSAGE_CHILDREN`` in a
fresh process per run) for a 30-frame and a ``--long-frames`` clip (the snippet's frames and maps
repeated under new frame numbers), baseline vs roi: the per-frame filter graph grows with the
number of distinct maps, so this shows whether long clips need chunking.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _encode(args: tuple) -> tuple[float, int, dict]:
    """Run one encode in this (fresh) process; wall seconds, child peak RSS (KiB), sidecar."""
    clip, maps, mode, preset, out = args
    from roienc.encode import RatePoint, encode_many

    t = time.perf_counter()
    res = encode_many([clip], maps, codec="hevc", modes=[mode], rates=[RatePoint("crf", 28)],
                      out=out, preset=preset, progress=False)
    dt = time.perf_counter() - t
    if res[0]["status"] != "ok":
        raise RuntimeError(res[0].get("error"))
    return dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, res[0]


def in_fresh_process(args: tuple) -> tuple[float, int, dict]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_encode, (args,))


def long_clip(root: Path, maps: Path, clip, n: int, tmp: Path):
    """A clip of ``n`` frames: the snippet's frames (and maps) repeated under new frame numbers."""
    from roienc.dataset import Clip

    city, seq = clip.city, clip.frame_ids[0].split("_")[1]
    img_dir = tmp / "long" / "leftImg8bit_sequence" / clip.split / city
    map_dir = tmp / "longmaps" / clip.split / city
    img_dir.mkdir(parents=True)
    map_dir.mkdir(parents=True)
    shutil.copy(maps / "params.json", tmp / "longmaps" / "params.json")
    src_maps = maps / clip.split / city
    ids, paths = [], []
    for i in range(n):
        k = i % len(clip.frame_ids)
        # play the snippet forwards then backwards so the motion has no jump
        if (i // len(clip.frame_ids)) % 2:
            k = len(clip.frame_ids) - 1 - k
        old, new = clip.frame_ids[k], f"{city}_{seq}_{i:06d}"
        p = img_dir / f"{new}_leftImg8bit.png"
        os.symlink(clip.image_paths[k], p)
        for suffix in ("_qp_map.npy", "_importance.npy"):
            os.symlink(src_maps / f"{old}{suffix}", map_dir / f"{new}{suffix}")
        ids.append(new)
        paths.append(p)
    return Clip(f"{city}_{seq}_long{n}", clip.split, city, "sequence", ids, paths, clip.fps), tmp / "longmaps"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--long-frames", type=int, default=300)
    args = ap.parse_args()

    from roienc.dataset import find_clips
    from roienc.maps import build_maps
    from roienc.synth import synthesize

    tmp = Path(tempfile.mkdtemp(prefix="roienc-bench-enc-"))
    try:
        synthesize(tmp / "cs", cities=("benchcity",), width=args.width, height=args.height)
        build_maps(tmp / "cs", tmp / "maps", sequences=True, progress=False, visualize_every=0)
        clip = find_clips(tmp / "cs", "val", source="sequence")[0]
        print(f"clip {clip.clip_id}: {len(clip.frame_ids)} frames {args.width}x{args.height}, "
              f"x265 preset {args.preset}, CRF 28, {os.cpu_count()} cores")

        best = {"baseline": float("inf"), "roi": float("inf")}
        side = {}
        for r in range(args.repeat):
            for mode in ("baseline", "roi"):
                dt, _, s = in_fresh_process((clip, tmp / "maps", mode, args.preset, tmp / f"e{r}"))
                best[mode] = min(best[mode], dt)
                side[mode] = s
        ad = side["roi"]["adapter"]
        print(f"  baseline wall {best['baseline']:7.2f} s   ({side['baseline']['kbps']:.0f} kbps)")
        print(f"  roi      wall {best['roi']:7.2f} s   ({side['roi']['kbps']:.0f} kbps, "
              f"{ad.get('runs', '?')} filter branches, "
              f"{sum(ad['rects_per_frame']) / len(ad['rects_per_frame']):.0f} rects/frame)")
        print(f"  roi / baseline wall time: {best['roi'] / best['baseline']:.3f}x (target <= 1.05)")

        lclip, lmaps = long_clip(tmp / "cs", tmp / "maps", clip, args.long_frames, tmp)
        print("peak RSS of the encoder process (FFmpeg + x265):")
        rss = {}
        for name, c, m in (("30", clip, tmp / "maps"), (str(args.long_frames), lclip, lmaps)):
            for mode in ("baseline", "roi"):
                dt, kib, s = in_fresh_process((c, m, mode, args.preset, tmp / f"rss{name}"))
                rss[(name, mode)] = kib
                extra = f", {s['adapter'].get('runs', '?')} branches" if mode == "roi" else ""
                print(f"  {name:>4s} frames {mode:8s}: {kib / 1024:7.1f} MiB  ({dt:6.1f} s{extra})")
        for mode in ("baseline", "roi"):
            a, b = rss[("30", mode)], rss[(str(args.long_frames), mode)]
            print(f"  {mode:8s} {args.long_frames} vs 30 frames: {b / a:.2f}x peak RSS")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
