"""What the ROI machinery costs next to the encoder: wall time and peak memory, ROI vs baseline.

    python3 benchmarks/bench_encode.py [--width 1024 --height 512] [--preset medium]
                                       [--repeat 2] [--long-frames 300]
    python3 benchmarks/bench_encode.py --real /work/real [--real-maps MAPS] --preset fast
                                       [--repeat 3] [--long-frames 300] [--long-repeat 2]
                                       [--no-old] [--zero-offsets] [--same-size]
                                       [--engines pyav,ffmpeg]

``--real``: the first real snippet (2048x1024, per-frame maps from predicted labels): the exact
baseline and roi commands of ``encode_many`` for each engine (``--engines``: the in-process PyAV
runner and the FFmpeg CLI with its per-frame filter graph), timed alternately (wall and child CPU
seconds, best of ``--repeat``), each ROI encode against its own engine's baseline, and the CLI's
previous split/trim graph with the disjoint cover; then the same on a ``--long-frames`` clip.
With ``--zero-offsets`` also each engine's ROI encode with every offset 0 (same rectangles and
graphs, the baseline's bitstream): the machinery's own cost, apart from the encoder's extra work
on the bits the ROI moves; with ``--same-size`` each engine's ROI encode at the CRF that makes its
file the baseline's size (the ROI's lower QPs spend more bits at the same CRF, and coding more
bits takes x265 longer). On a shared machine quote the CPU ratios (wall times follow the load).
Skips with a message without the data.

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

import _checkout  # noqa: F401  (this checkout's roienc, not an installed copy)

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
        for suffix in ("_qp_map.npy", "_importance.npz", "_importance.npy"):
            if (src_maps / f"{old}{suffix}").exists():
                os.symlink(src_maps / f"{old}{suffix}", map_dir / f"{new}{suffix}")
        ids.append(new)
        paths.append(p)
    return Clip(f"{city}_{seq}_long{n}", clip.split, city, "sequence", ids, paths, clip.fps), tmp / "longmaps"


def _timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU (user+sys of the child) seconds of one command."""
    import subprocess
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def real_graphs(clip, maps_root: Path, preset: str, repeat: int, out: Path, old: bool,
                engines: tuple[str, ...] = ("pyav", "ffmpeg"), zero: bool = False,
                matched: bool = False) -> None:
    """ROI vs baseline on one clip of real maps: the encode commands roienc runs (built by
    encode_many, per engine: the in-process PyAV runner and the FFmpeg CLI), timed alternately,
    each ROI encode against the baseline of its own engine (its own encoder build); with ``old``
    also the CLI's previous graph (split/trim, disjoint cover); with ``zero`` each engine's ROI
    encode with every offset set to 0 (the same rectangles, runs and graphs, the baseline's
    bitstream: what the ROI machinery alone costs, apart from the encoder's work on the ROI); with
    ``matched`` each engine's ROI encode at the CRF that gives the baseline's file size
    (:func:`rate_matched_crf`)."""
    import re
    from roienc.adapters import perframe_filter_script, qp_range_for
    from roienc.encode import RatePoint, encode_many
    from roienc.maps import load_clip_maps

    variants: dict[str, tuple[list[str], str]] = {}      # name -> (argv, its baseline's name)
    rects = {}
    m = load_clip_maps(maps_root, clip)
    for eng in engines:
        res = {r["mode"]: r for r in encode_many([clip], maps_root, codec="hevc",
                                                 modes=["baseline", "roi"], engine=eng,
                                                 rates=[RatePoint("crf", 28)], out=out / eng,
                                                 preset=preset, progress=False)}
        for r in res.values():
            if r["status"] != "ok":
                raise RuntimeError(r.get("error"))
        base = f"{eng} baseline"
        variants[base] = (res["baseline"]["commands"][0], base)
        variants[f"{eng} roi"] = (res["roi"]["commands"][0], base)
        ad = res["roi"]["adapter"]
        rects[f"{eng} roi"] = (sum(ad["rects_per_frame"]) / len(ad["rects_per_frame"]), ad["runs"],
                               Path(ad.get("roi_file") or ad["filter_script"]).stat().st_size)
        if zero:
            cmd = res["roi"]["commands"][0]
            src = Path(ad.get("roi_file") or ad["filter_script"])
            z = out / f"{eng}_zero{''.join(src.suffixes[-2:]) if eng == 'ffmpeg' else '.roi.json'}"
            z.write_text(re.sub(r"qoffset=-?\d+/", "qoffset=0/", src.read_text()))
            variants[f"{eng} roi, zero offsets"] = ([str(z) if a == str(src) else a for a in cmd], base)
        if eng == "ffmpeg" and old:
            roi_cmd = res["roi"]["commands"][0]
            fs = perframe_filter_script(m.dq, m.block_size, m.width, m.height,
                                        qp_range=qp_range_for("yuv420p"), pix_fmt="yuv420p",
                                        router="trim", overlapping=False)
            script = out / "old_graph.filter.txt"
            script.write_text(fs.text)
            rects["ffmpeg roi, old graph"] = (sum(fs.rects_per_frame) / len(fs.rects_per_frame),
                                              len(fs.runs), len(fs.text))
            i = next(k for k, a in enumerate(roi_cmd) if a in ("-filter_complex_script", "-/filter_complex"))
            variants["ffmpeg roi, old graph"] = (roi_cmd[:i + 1] + [str(script)] + roi_cmd[i + 2:], base)
    if matched:
        for eng in engines:
            cmd, base = variants[f"{eng} roi"]
            crf = rate_matched_crf(cmd, variants[base][0], out / "match.mp4")
            variants[f"{eng} roi, same size"] = (_with_crf(cmd, crf), base)
    best = {k: (float("inf"), float("inf")) for k in variants}
    size = {}
    for _ in range(repeat):
        for k, (cmd, _) in variants.items():
            w, c = _timed(cmd[:-1] + [str(out / "bench.mp4")])
            best[k] = (min(best[k][0], w), min(best[k][1], c))
            size[k] = (out / "bench.mp4").stat().st_size
    for k, (w, c) in best.items():
        bw, bc = best[variants[k][1]]
        extra = ""
        if k in rects:
            n, runs, nbytes = rects[k]
            extra = f"  ({n:.0f} rects/frame, {runs} runs, {nbytes / 1024:.0f} KiB ROI file)"
        if k.endswith("same size"):
            cmd = variants[k][0]
            extra = f"  (CRF {cmd[cmd.index('-crf') + 1]})"
        print(f"  {k:22s} wall {w:7.2f} s  {w / bw:5.3f}x   cpu {c:7.2f} s  {c / bc:5.3f}x"
              f"   size {size[k] / size[variants[k][1]]:5.3f}x{extra}", flush=True)


def _with_crf(cmd: list[str], crf: float) -> list[str]:
    i = cmd.index("-crf")
    return cmd[:i + 1] + [f"{crf:.2f}"] + cmd[i + 2:]


def rate_matched_crf(roi_cmd: list[str], base_cmd: list[str], out: Path,
                     tol: float = 0.015) -> float:
    """The CRF at which the ROI encode's file is the baseline's size (within ``tol``): x265's rate
    roughly halves per +6 CRF, so start there and refine by the secant on log size (untimed
    encodes). The ROI encode at the baseline's CRF spends more bits (the ROI's lower QPs); at the
    same size the encoder does the same amount of coding, so the time ratio shows what the ROI
    itself costs."""
    import math
    import subprocess

    def log_size(cmd: list[str]) -> float:
        subprocess.run(cmd[:-1] + [str(out)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return math.log(out.stat().st_size)

    target = log_size(base_cmd)
    c0 = float(roi_cmd[roi_cmd.index("-crf") + 1])
    l0 = log_size(roi_cmd)
    c1 = c0 + 6 * (l0 - target) / math.log(2)
    tried = [(abs(l0 - target), c0)]
    for _ in range(4):
        l1 = log_size(_with_crf(roi_cmd, c1))
        tried.append((abs(l1 - target), c1))
        if abs(l1 - target) < tol or l1 == l0:
            break
        c0, l0, c1 = c1, l1, c1 + (c1 - c0) * (l1 - target) / (l0 - l1)
    return min(tried)[1]                  # the closest CRF tried


def real_main(args) -> None:
    """``--real``: the shared real snippets (per-frame maps from predicted labels)."""
    from roienc.dataset import find_clips

    root, maps = Path(args.real), Path(args.real_maps) if args.real_maps else None
    if not (root / "leftImg8bit_sequence").is_dir():
        print(f"SKIP real-data benchmark: no real Cityscapes root at {root} (build one with "
              "python3 /work/shared/cityscapes_sequences/make_root.py DIR, pass --real DIR)")
        return
    tmp = Path(tempfile.mkdtemp(prefix="roienc-bench-real-"))
    try:
        if maps is None or not (maps / "params.json").is_file():
            from roienc.maps import build_maps
            maps = maps or tmp / "maps"
            print(f"building maps of {root} (--sequences, labels_pred, speed 10) into {maps} ...")
            build_maps(root, maps, split="train", sequences=True, labels_root=root / "labels_pred",
                       speed=10.0, progress=False, visualize_every=0)
        clips = [c for c in find_clips(root, "train", source="sequence")]
        clip = clips[0]
        print(f"real clip {clip.clip_id}: {len(clip.frame_ids)} frames, x265 preset {args.preset}, "
              f"CRF 28, one job, {os.cpu_count()} cores, best of {args.repeat} "
              f"(ratios against the baseline of this run; target <= 1.05)")
        engines = tuple(args.engines.split(","))
        real_graphs(clip, maps, args.preset, args.repeat, tmp / "short", old=not args.no_old,
                    engines=engines, zero=args.zero_offsets, matched=args.same_size)
        if args.long_frames:
            lclip, lmaps = long_clip(root, maps, clip, args.long_frames, tmp)
            print(f"long clip: {args.long_frames} frames (the snippet forwards and backwards), "
                  f"best of {args.long_repeat}")
            real_graphs(lclip, lmaps, args.preset, args.long_repeat, tmp / "long",
                        old=not args.no_old, engines=engines, zero=args.zero_offsets,
                        matched=args.same_size)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--long-frames", type=int, default=300)
    ap.add_argument("--real", metavar="ROOT", help="real Cityscapes root with leftImg8bit_sequence "
                    "and labels_pred (e.g. /work/real): benchmark the real snippets instead")
    ap.add_argument("--real-maps", metavar="DIR", help="their maps (built with --sequences "
                    "--labels-root ROOT/labels_pred --speed 10 if absent)")
    ap.add_argument("--long-repeat", type=int, default=1)
    ap.add_argument("--no-old", action="store_true", help="skip the previous graph (split/trim)")
    ap.add_argument("--zero-offsets", action="store_true", help="--real: also time each engine's "
                    "ROI encode with all offsets 0 (the machinery's cost alone)")
    ap.add_argument("--same-size", action="store_true", help="--real: also time each engine's "
                    "ROI encode at the CRF that gives the baseline's file size (the encoder's "
                    "extra work on the ROI's bits taken out)")
    ap.add_argument("--engines", default="pyav,ffmpeg", help="--real: engines to time "
                    "(pyav: in-process runner, ffmpeg: the FFmpeg CLI)")
    args = ap.parse_args()
    if args.real:
        real_main(args)
        return

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
