"""Scale-out: build-maps frames/s with 1 and 2 local workers vs 2 Dask workers, and a projection.

    python3 benchmarks/bench_scale.py [--frames 12] [--width 2048 --height 1024]
                                      [--encode-seconds-per-clip S]

Measures per-frame build-maps cost on synthesized frames with the local process pool (1 and 2
workers) and a 2-worker Dask LocalCluster, then projects the wall time of all of Cityscapes
(~150,000 sequence frames = 5,000 snippets of 30 frames) on N nodes of this machine's size from
the measured costs. The encode cost per clip is measured here on one synthesized 30-frame clip
unless given.
"""
from __future__ import annotations

import _checkout  # noqa: F401  (this checkout's roienc, not an installed copy)

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

CITYSCAPES_SEQUENCE_FRAMES = 150_000
CITYSCAPES_CLIPS = CITYSCAPES_SEQUENCE_FRAMES // 30


def time_build(root: Path, out: Path, spec) -> float:
    from roienc.maps import build_maps

    t = time.perf_counter()
    rep = build_maps(root, out, split="val", executor=spec, visualize_every=30, progress=False)
    dt = time.perf_counter() - t
    assert (rep.manifest["status"] == "ok").all()
    return len(rep.manifest) / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--encode-seconds-per-clip", type=float, default=None)
    args = ap.parse_args()

    from distributed import LocalCluster

    from roienc.executor import ExecutorSpec
    from roienc.synth import synthesize

    tmp = Path(tempfile.mkdtemp(prefix="roienc-scale-"))
    try:
        synthesize(tmp / "cs", split="val", cities=("scalecity",), sequences_per_city=args.frames,
                   width=args.width, height=args.height, with_sequences=False)
        fps = {}
        for w in (1, 2):
            fps[f"local x{w}"] = time_build(tmp / "cs", tmp / f"l{w}", ExecutorSpec("local", w))
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster:
            time_build(tmp / "cs", tmp / "warm", ExecutorSpec("dask", scheduler=cluster.scheduler_address))
            fps["dask x2"] = time_build(tmp / "cs", tmp / "d2",
                                        ExecutorSpec("dask", scheduler=cluster.scheduler_address))
        base = fps["local x1"]
        print(f"build-maps at {args.width}x{args.height}, {args.frames} frames, {os.cpu_count()} cores")
        for k, v in fps.items():
            print(f"  {k:10s}: {v:6.2f} frames/s  ({v / base:4.2f}x local x1)")

        enc_s = args.encode_seconds_per_clip
        if enc_s is None:
            from roienc.dataset import find_clips
            from roienc.encode import RatePoint, encode_many
            synthesize(tmp / "seq", split="val", cities=("scalecity",), sequences_per_city=1,
                       width=args.width, height=args.height, with_sequences=True)
            from roienc.maps import build_maps
            build_maps(tmp / "seq", tmp / "seqmaps", split="val", sequences=True, workers=2,
                       progress=False, visualize_every=0)
            clips = find_clips(tmp / "seq", "val", source="sequence")
            t = time.perf_counter()
            res = encode_many(clips, tmp / "seqmaps", codec="hevc", modes=["roi"],
                              rates=[RatePoint("crf", 28)], out=tmp / "enc", jobs=1, progress=False)
            assert all(r["status"] == "ok" for r in res), res
            enc_s = time.perf_counter() - t
        print(f"  encode (x265 preset medium, ROI, 30 frames): {enc_s:.1f} s/clip on one machine")

        maps_s = CITYSCAPES_SEQUENCE_FRAMES / fps["local x2"]
        enc_total = CITYSCAPES_CLIPS * enc_s
        print("projection for all of Cityscapes sequences (150,000 frames, 5,000 clips), "
              "one encode rate point, nodes like this one:")
        for n in (1, 4, 16, 64):
            total = (maps_s + enc_total) / n
            print(f"  {n:3d} nodes: maps {maps_s / n / 3600:6.2f} h + encode {enc_total / n / 3600:7.2f} h"
                  f" = {total / 3600:7.2f} h")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
