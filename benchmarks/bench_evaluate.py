"""Evaluation throughput at 2048x1024 against decoding alone.

    python3 benchmarks/bench_evaluate.py [--width 2048 --height 1024] [--repeat 2]

On one synthesized 30-frame snippet encoded once (libx265, preset ultrafast: the encode is not
what is measured), it times

- decode only: the same two FFmpeg pipes ``evaluate`` reads (the encode decoded, the source PNGs
  converted to yuv420p), frames pulled in lockstep, no metrics;
- ``roienc.evaluate.evaluate_clip``: the same plus every metric (PSNR Y/U/V pooled and in/out of
  the ROI, SSIM map, importance-weighted and near-object PSNR, per-frame rows, packet sizes);
- the SSIM map alone (``roienc.metrics.ssim_map``) and scikit-image's ``structural_similarity``
  on the same luma, for reference.

Prints frames/s of each and the metrics' cost relative to decoding (target: <= 1.0, i.e.
evaluation at most twice as slow as decoding alone).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from _timing import best_of



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    from skimage.metrics import structural_similarity

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

        task = EvalTask(side_path, tmp / "maps", None, 0.5, tmp / "frames", ff.path)
        t_dec = best_of(decode_only, args.repeat)
        t_eval = best_of(lambda: evaluate_clip(task), args.repeat)
        rng = np.random.default_rng(0)
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        b = np.clip(a.astype(int) + rng.integers(-6, 7, (h, w)), 0, 255).astype(np.uint8)
        t_ssim = best_of(lambda: ssim_map(a, b), 3)
        t_sk = best_of(lambda: structural_similarity(a, b, data_range=255, gaussian_weights=True,
                                                     sigma=1.5, use_sample_covariance=False), 3)
        print(f"evaluate one {n}-frame clip at {w}x{h} ({pix})")
        print(f"  decode only (encode + source pipes)  {n / t_dec:6.2f} frames/s")
        print(f"  evaluate_clip (all metrics)         {n / t_eval:6.2f} frames/s")
        print(f"  metrics cost / decode cost: {(t_eval - t_dec) / t_dec:.2f} (target <= 1.0)")
        print(f"  SSIM map per frame: roienc {1000 * t_ssim:6.1f} ms, scikit-image "
              f"{1000 * t_sk:6.1f} ms ({t_sk / t_ssim:.1f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
