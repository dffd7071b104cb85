"""Evaluation throughput at 2048x1024 against decoding alone.

    python3 benchmarks/bench_evaluate.py [--width 2048 --height 1024] [--repeat 5]

On one synthesized 30-frame snippet encoded once (libx265, preset ultrafast: the encode is not
what is measured), it times, in rounds that run every variant back to back (so each round's
ratios compare runs made under the same machine load):

- decode only: the same two FFmpeg pipes ``evaluate`` reads (the encode decoded, the source PNGs
  converted to yuv420p), frames pulled in lockstep, no metrics;
- ``roienc.evaluate.evaluate_clip`` as ``roienc evaluate`` runs it by default: the same plus
  every metric but SSIM (PSNR Y/U/V pooled and in/out of the ROI, importance-weighted and
  near-object PSNR, per-frame rows, packet sizes), pipelined (metrics of frame n in worker
  threads while frame n+1 is taken, the maps of the next frames read in another);
- the same with ``ssim=True`` (``evaluate --ssim``: the SSIM map too), and both with
  ``pipeline=False`` (every metric in the calling thread, one frame at a time);
- the SSIM map alone (``roienc.metrics.ssim_map``) and scikit-image's ``structural_similarity``
  on the same luma, for reference.

Prints frames/s of each (best and worst round), CPU ms per frame (this process and its FFmpeg
children, which machine load disturbs far less than wall time), and the metrics' cost relative
to decoding, ``(t_evaluate - t_decode) / t_decode``, per round (target: <= 1.0, i.e. evaluation at
most twice as slow as decoding alone; 0 would be metrics entirely hidden behind decoding), and
the same ratio in CPU time (what it tends to under full load, when nothing overlaps).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _timing import best_of

import _checkout  # noqa: F401  (this checkout's roienc, not an installed copy)


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children (the FFmpeg pipes)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _timed(fn) -> tuple[float, float]:
    c, t = _cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t, _cpu() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    args = ap.parse_args()

    from skimage.metrics import structural_similarity

    import roienc
    print(f"roienc from {Path(roienc.__file__).parent}")

    from roienc.dataset import find_clips
    from roienc.encode import RatePoint, encode_many
    from roienc.evaluate import EvalTask, FrameReader, _decode_cmd, _source_cmd, evaluate_clip
    from roienc.maps import build_maps
    from roienc.metrics import ssim_map
    from roienc.synth import synthesize
    from roienc.tools import find_ffmpeg

    ff = find_ffmpeg()
    tmp = Path(tempfile.mkdtemp(prefix="roienc-bench-eval-"))
    try:
        synthesize(tmp / "cs", cities=("benchcity",), width=args.width, height=args.height)
        build_maps(tmp / "cs", tmp / "maps", sequences=True, progress=False, visualize_every=0)
        clips = find_clips(tmp / "cs", "val", source="sequence")
        res = encode_many(clips, tmp / "maps", modes=["baseline"], rates=[RatePoint("crf", 28)],
                          out=tmp / "enc", preset="ultrafast", progress=False)
        side_path = next((tmp / "enc").rglob("*.json"))
        side = res[0]
        n, w, h, pix = len(side["frame_ids"]), side["width"], side["height"], side["pix_fmt"]

        def decode_only() -> None:
            dec = FrameReader(_decode_cmd(ff.path, side_path.with_suffix(".mp4"), pix), w, h, pix)
            src = FrameReader(_source_cmd(ff.path, side), w, h, pix)
            k = sum(1 for _ in zip(dec, src))
            dec.close()
            src.close()
            assert k == n, k

        def task(**kw) -> EvalTask:
            return EvalTask(side_path, tmp / "maps", None, 0.5, tmp / "frames", ff.path, **kw)

        DEC, DEF, SSIM = ("decode only (encode + source pipes)", "evaluate (default, no SSIM)",
                          "evaluate --ssim")
        variants = {
            DEC: decode_only,
            DEF: lambda: evaluate_clip(task(ssim=False)),
            SSIM: lambda: evaluate_clip(task(ssim=True)),
            "evaluate, pipeline=False": lambda: evaluate_clip(task(ssim=False, pipeline=False)),
            "evaluate --ssim, pipeline=False": lambda: evaluate_clip(task(ssim=True, pipeline=False)),
        }
        load0 = os.getloadavg()[0]
        evaluate_clip(task(ssim=True))                 # warm-up: page cache, thread pools
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        for _ in range(args.repeat):
            for name, fn in variants.items():
                times[name].append(_timed(fn))
        load1 = os.getloadavg()[0]
        rng = np.random.default_rng(0)
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        b = np.clip(a.astype(int) + rng.integers(-6, 7, (h, w)), 0, 255).astype(np.uint8)
        t_ssim = best_of(lambda: ssim_map(a, b), 3)
        t_sk = best_of(lambda: structural_similarity(a, b, data_range=255), 3)

        print(f"evaluate one {n}-frame clip at {w}x{h} ({pix}); {args.repeat} rounds, "
              f"{os.cpu_count()} CPUs, load average {load0:.1f} -> {load1:.1f}")
        print(f"  {'':38s} {'frames/s best/worst':>20s} {'CPU ms/frame':>13s}   "
              "metrics cost / decode cost per round")
        dec = times[DEC]
        for name, tt in times.items():
            walls = [t for t, _ in tt]
            cpu = 1000 * min(c for _, c in tt) / n
            line = f"  {name:38s} {n / min(walls):8.2f} / {n / max(walls):6.2f}     {cpu:8.1f}"
            if tt is not dec:
                ratios = [(t - d) / d for (t, _), (d, _) in zip(tt, dec)]
                line += "      " + " ".join(f"{r:5.2f}" for r in ratios)
            print(line)
        for name in (DEF, SSIM):
            tt = times[name]
            ratios = sorted((t - d) / d for (t, _), (d, _) in zip(tt, dec))
            cpu_ratio = (min(c for _, c in tt) - min(c for _, c in dec)) / min(c for _, c in dec)
            print(f"  metrics cost / decode cost, {name}: wall median {np.median(ratios):.2f}, "
                  f"range {ratios[0]:.2f}-{ratios[-1]:.2f} (target <= 1.0); "
                  f"in CPU time: {cpu_ratio:.2f}")
        print(f"  SSIM map per frame: roienc {1000 * t_ssim:6.1f} ms, scikit-image "
              f"{1000 * t_sk:6.1f} ms ({t_sk / t_ssim:.1f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
