"""Adapter cost: rectangles per frame, adapter time, and the per-frame filter graph's cost.

    python3 benchmarks/bench_adapters.py [--width 2048 --height 1024] [--preset fast]
                                         [--real /work/shared/cityscapes_samples]

1. QP maps at block 16 of a synthesized 2048x1024 snippet (30 frames, moving objects) with
   ``--block-stat mean`` and ``max``, and of the real Cityscapes frame(s) under ``--real`` when
   present: rectangles per frame (how long the addroi chains are), time to cover one grid with
   rectangles, and time to build the 30-frame per-frame filter script.
2. The filter graph in FFmpeg: the snippet read and converted to yuv420p with ``-f null`` output,
   without and with the per-frame ROI script (split / select / addroi / interleave), and a plain
   libx265 encode of the same frames; prints the filter graph's extra seconds and that as a
   fraction of the encode.
"""
from __future__ import annotations

import _checkout  # noqa: F401  (this checkout's roienc, not an installed copy)

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from _timing import best_of



def adapter_figures(label: str, grids: np.ndarray, block: int, width: int, height: int) -> None:
    from roienc.adapters import cover_rectangles, perframe_filter_script, priority_rectangles

    dq = grids.astype(np.int16) - 32
    disjoint = [len(cover_rectangles(g)) for g in dq]
    rects = [len(priority_rectangles(g)) for g in dq]
    t_cover = best_of(lambda: [priority_rectangles(g) for g in dq]) / len(dq)
    t_script = best_of(lambda: perframe_filter_script(dq, block, width, height))
    fs = perframe_filter_script(dq, block, width, height)
    print(f"  {label:28s} {len(dq):3d} frames  grid {dq.shape[2]}x{dq.shape[1]}  rects/frame "
          f"mean {np.mean(rects):6.1f} max {max(rects):4d} (disjoint cover {np.mean(disjoint):6.1f})"
          f"  cover {1000 * t_cover:6.2f} ms/frame  "
          f"script {1000 * t_script:7.1f} ms ({len(fs.runs)} branches, {len(fs.text) / 1024:.0f} KiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--real", default="/work/shared/cityscapes_samples")
    args = ap.parse_args()

    from roienc.adapters import ffmpeg_filter_script_args, perframe_filter_script
    from roienc.dataset import find_clips
    from roienc.encode import input_args
    from roienc.maps import build_maps, load_clip_maps
    from roienc.maps import QPParams
    from roienc.synth import synthesize
    from roienc.tools import find_ffmpeg, run

    ff = find_ffmpeg()
    tmp = Path(tempfile.mkdtemp(prefix="roienc-bench-ad-"))
    try:
        synthesize(tmp / "cs", cities=("benchcity",), width=args.width, height=args.height)
        clip = find_clips(tmp / "cs", "val", source="sequence")[0]
        print(f"adapters at block 16, base QP 32, delta 3 ({args.width}x{args.height})")
        for stat in ("mean", "max"):
            out = tmp / f"maps_{stat}"
            build_maps(tmp / "cs", out, sequences=True, progress=False, visualize_every=0,
                       qp=QPParams(block_stat=stat))
            cm = load_clip_maps(out, clip)
            adapter_figures(f"synth snippet, {stat}", cm.qp, cm.block_size, cm.width, cm.height)
        real = Path(args.real)
        if (real / "gtFine").is_dir():
            for stat in ("mean", "max"):
                out = tmp / f"real_{stat}"
                build_maps(real, out, split="train", speed=10.0, fx=2262.52, baseline=0.209313,
                           progress=False, visualize_every=0, qp=QPParams(block_stat=stat))
                grids = np.stack([np.load(p) for p in sorted(out.rglob("*_qp_map.npy"))])
                adapter_figures(f"real Cityscapes, {stat}, 10 m/s", grids, 16, 2048, 1024)
        else:
            print(f"  (no real samples at {real}: skipped)")

        cm = load_clip_maps(tmp / "maps_mean", clip)
        fs = perframe_filter_script(cm.dq, cm.block_size, cm.width, cm.height, pix_fmt="yuv420p")
        script = tmp / "roi.filter.txt"
        script.write_text(fs.text)
        base = [ff.path, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *input_args(clip)]
        plain_null = base + ["-vf", "format=yuv420p", "-f", "null", "-"]
        roi_null = base + [*ffmpeg_filter_script_args(ff, script), "-map", "[vout]",
                           "-fps_mode", "passthrough", "-f", "null", "-"]
        enc = base + ["-vf", "format=yuv420p", "-c:v", "libx265", "-preset", args.preset,
                      "-crf", "28", "-x265-params", "log-level=error", str(tmp / "plain.mp4")]
        run(plain_null)                                   # warm the page cache
        t_plain = best_of(lambda: run(plain_null))
        t_roi = best_of(lambda: run(roi_null))
        t_enc = best_of(lambda: run(enc), 1)
        extra = t_roi - t_plain
        print(f"filter graph, {len(clip.frame_ids)}-frame snippet, {len(fs.runs)} branches, FFmpeg {ff.version}:")
        print(f"  read + yuv420p, -f null          {t_plain:6.2f} s")
        print(f"  same with per-frame ROI script   {t_roi:6.2f} s  (+{extra:5.2f} s)")
        print(f"  plain libx265 encode ({args.preset:6s})     {t_enc:6.2f} s")
        print(f"  filter graph cost / encode time: {extra / t_enc:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
