"""Reading each frame's bytes from an encode: PyAV's demuxer against an FFmpeg process.

    python3 benchmarks/bench_probe.py [--width 512 --height 256] [--repeat 20]

What ``roienc encode`` records per frame (``frame_bytes``, display order) and what a sweep's
frames table reads from older encodes. On one synthesized 30-frame snippet encoded once with
libx265 preset fast (B-pictures: decode order differs from display order), it times, best of
``--repeat``:

- ``frame_sizes_demuxed``: PyAV's demuxer in-process, packets sorted by pts (what encode uses);
- ``packets`` + ``display_order_sizes``: an ``ffmpeg -f framecrc`` run (what encode ran before);
- ``mp4_video_sample_sizes``: the MP4's sample size table read by roienc (decode order, no pts:
  what evaluate uses for the file's total), for reference.

Prints ms per file and the ratio to the FFmpeg run, and checks that the first two give the same
sizes and that all three give the same total.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _timing import best_of

import _checkout  # noqa: F401  (this checkout's roienc, not an installed copy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    from roienc.dataset import find_clips
    from roienc.encode import RatePoint, encode_many
    from roienc.evaluate import mp4_video_sample_sizes
    from roienc.probe import display_order_sizes, frame_sizes_demuxed, packets
    from roienc.synth import synthesize
    from roienc.tools import find_ffmpeg

    ff = find_ffmpeg().path
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as t:
        tmp = Path(t)
        synthesize(tmp / "cs", width=args.width, height=args.height, seed=1)
        encode_many(find_clips(tmp / "cs", "val"), None, modes=["baseline"],
                    rates=[RatePoint("crf", 28)], out=tmp / "enc", preset="fast", progress=False)
        mp4 = next((tmp / "enc").rglob("*.mp4"))
        demuxed = frame_sizes_demuxed(mp4)
        framecrc = display_order_sizes(packets(ff, mp4))
        table = mp4_video_sample_sizes(mp4)
        assert demuxed == framecrc, "PyAV and FFmpeg disagree on the frame sizes"
        assert sum(table) == sum(demuxed) and len(table) == len(demuxed)
        reordered = table != demuxed
        t_av = best_of(lambda: frame_sizes_demuxed(mp4), args.repeat)
        t_ff = best_of(lambda: display_order_sizes(packets(ff, mp4)), args.repeat)
        t_tab = best_of(lambda: mp4_video_sample_sizes(mp4), args.repeat)
    print(f"{args.width}x{args.height}, {len(demuxed)} frames, {sum(demuxed)} bytes; decode order "
          f"{'differs from' if reordered else 'equals'} display order; best of {args.repeat}")
    print(f"{'reader':34s} {'ms/file':>9s} {'vs FFmpeg':>10s}")
    for name, t in (("PyAV demuxer (display order)", t_av), ("FFmpeg framecrc (display order)", t_ff),
                    ("MP4 stsz table (decode order)", t_tab)):
        print(f"{name:34s} {t * 1000:9.2f} {t / t_ff:10.3f}")


if __name__ == "__main__":
    main()
