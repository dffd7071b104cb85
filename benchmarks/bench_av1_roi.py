"""Is SVT-AV1's ROI map applied, and which mapping of roienc's QP maps works? On a real snippet.

    python3 benchmarks/bench_av1_roi.py [--root ROOT] [--snippet aachen_000000] [--frames 17]
                                        [--preset 10] [--crf 30,36,42,48] [--scale 6.5]

Needs SvtAv1EncApp >= 1.6 (``--roi-map-file``; found as roienc finds it: ``$ROIENC_SVTAV1``, PATH;
CI installs 2.3.0 with ``.ci/svtav1``) and an FFmpeg with an AV1 decoder; skips with a message
otherwise. The real snippet comes from ``../shared/cityscapes_sequences`` (``make_root.py``) when
``--root`` is absent. roienc's maps are built with each frame's own predicted labels
(``labels_pred``) driving the encoder **and** judging it (ROI = importance >= 0.5), as
bench_tradeoff.py does, so only the AV1 mapping is compared. The full 2048x1024 frames, the first
``--frames`` of the snippet, SvtAv1EncApp driven directly (CRF, ``--keyint 250``), decoded, PSNR of
Y pooled over the frames per region (as roienc's evaluate does); about 2 minutes on 2 cores.

1. **Applied per picture**: a uniform +40 map, and the bitstream's own frame headers (FFmpeg's
   ``trace_headers``): each coded picture's base_q_idx, and whether its segmentation carries the
   offset. Line N of the file is picture N in display order and stays in force until the next line.
2. **Negative offsets saturate**: a uniform -40 map next to plain CRF-10 (the same qindex), and the
   same map with ``--lambda-scale-factors 32`` (lambda / 4, what a step halved asks for). SVT-AV1
   applies a segment's offset to the quantiser only; the RD lambda stays the picture's (or the
   superblock's delta-q) one, so finer steps in a segment are largely thrown away by mode decision
   and RDOQ; coarser steps are not.
3. **Mappings** (``--variants``): BD-rates against plain SVT-AV1 at the same CRFs, and bytes /
   PSNR at the middle CRF: roienc <= 0.1's (``old``: area mean of the 32-px QP map per 64x64
   block x 4, negative), the 64x64 block's minimum (its most important pixel) x ``--scale``
   (``min``, negative), the same shifted per picture so its most important blocks get 0 and the
   rest positive offsets (``shifted``; ``mean-shifted`` with the area mean), the shifted minimum
   times a factor per temporal layer (``layers:F0/F1/F2/F3/F4``, layer 0 = key frame and base
   layer of the mini-GOP of 16, 4 = the odd pictures), and roienc's current mapping (``roienc``:
   :func:`roienc.encoders.svtav1.roi_map_grids` with the packaged ``[roi] qp_scale``).

Measured (2026-12-07, SVT-AV1 2.3.0 of Debian 13, preset 10, 17 frames; docs/results.md, "AV1 ROI
with SVT-AV1"): every coded picture carries its line's offsets as segments; uniform -40 costs +36%
bytes for +0.8 dB where CRF -10 (the same qindex) costs +112% for +2.6 dB, uniform +40 saves 39%
for -1.9 dB; negative mappings reach -8..-12% psnr_roi, shifted ones -20..-31% at +2..+17%
psnr_nonroi, and scaling the offsets down on the upper temporal layers (1/1/0.7/0.35/0.15)
moves the front to about -24% at +0.6..+3.9%.
"""
from __future__ import annotations

import _checkout  # this checkout's roienc, not an installed copy (and REPO for build-maps)

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from roienc import svtav1
from roienc.adapters import quantise_levels
from roienc.bdrate import bd_pair
from roienc.configs import load_config
from roienc.encoders.svtav1 import frame_headers
from roienc.errors import ToolError
from roienc.tools import find_ffmpeg

SHARED = Path(__file__).resolve().parents[2] / "shared" / "cityscapes_sequences"
REGIONS = ("psnr_roi", "psnr_nonroi", "psnr_y")


class Snippet:
    """The first ``n`` frames of a snippet as y4m, its ROI masks and roienc's 32-px delta-QP grids."""

    def __init__(self, root: Path, maps: Path, snippet: str, n: int, work: Path, ffmpeg: str):
        city = snippet.split("_")[0]
        seq = root / "leftImg8bit_sequence" / "train" / city
        self.y4m = work / f"{snippet}.y4m"
        subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-start_number", "0",
                        "-framerate", "17", "-i", str(seq / f"{snippet}_%06d_leftImg8bit.png"),
                        "-frames:v", str(n), "-vf", "format=yuv420p", "-f", "yuv4mpegpipe",
                        str(self.y4m)], check=True)
        params = json.loads((maps / "params.json").read_text())
        mdir = maps / "train" / city
        ids = [f"{snippet}_{i:06d}" for i in range(n)]
        self.roi = np.stack([np.load(mdir / f"{i}_importance.npz")["importance"] >= 0.5 for i in ids])
        self.n, self.h, self.w = self.roi.shape
        self.block = int(params["qp"]["block_size"])
        self.dq = np.stack([np.load(mdir / f"{i}_qp_map.npy").astype(np.int16) - int(params["qp"]["base_qp"])
                            for i in ids])
        self.src = read_y(self.y4m, self.w, self.h, n, y4m=True)


def read_y(path: Path, w: int, h: int, n: int, y4m: bool = False) -> np.ndarray:
    data = Path(path).read_bytes()
    out, i = [], (data.index(b"\n") + 1 if y4m else 0)
    for _ in range(n):
        if y4m:
            i = data.index(b"\n", i) + 1
        out.append(np.frombuffer(data, np.uint8, w * h, i).reshape(h, w))
        i += w * h * 3 // 2
    return np.stack(out)


def block_min(dq: np.ndarray, block: int, w: int, h: int, target: int = 64) -> np.ndarray:
    """Most negative delta QP (the most important pixel) of each ``target`` block of a frame."""
    full = np.repeat(np.repeat(np.asarray(dq, float), block, 0), block, 1)[:h, :w]
    gh, gw = -(-h // target), -(-w // target)
    pad = np.full((gh * target, gw * target), np.nan)
    pad[:h, :w] = full
    return np.nanmin(pad.reshape(gh, target, gw, target), axis=(1, 3))


def min_grids(s: Snippet, scale: float, shifted: bool) -> np.ndarray:
    out = []
    for g in s.dq:
        v = np.round(block_min(g, s.block, s.w, s.h) * scale)
        if shifted:
            v = v - v.min()
        v = np.clip(v, -svtav1.SVT_MAX_OFFSET, svtav1.SVT_MAX_OFFSET).astype(np.int16)
        out.append(quantise_levels(v, max_levels=svtav1.SVT_MAX_LEVELS))
    return np.stack(out)


def layer(pic: int, levels: int = 4) -> int:
    """Temporal layer of display picture ``pic`` in SVT-AV1's hierarchical mini-GOP of
    2**levels pictures (0: key frame / base layer)."""
    k = pic % (1 << levels)
    return 0 if k == 0 else levels - (k & -k).bit_length() + 1


def shifted_grids(s: Snippet, stat: str, scale: float, layer_scale: tuple[float, ...] | None = None) -> np.ndarray:
    """Per picture, (64x64 block statistic of the map QP - the picture's lowest) x scale (x the
    picture's temporal layer's factor), >= 0: ``stat`` 'min' or 'mean'."""
    out = []
    for i, g in enumerate(s.dq):
        m = block_min(g, s.block, s.w, s.h) if stat == "min" else svtav1.block_means(g, s.block, s.w, s.h)
        f = scale * (layer_scale[layer(i)] if layer_scale else 1.0)
        v = np.clip(np.floor((m - m.min()) * f + 0.5), 0, svtav1.SVT_MAX_OFFSET).astype(np.int16)
        out.append(quantise_levels(v, max_levels=svtav1.SVT_MAX_LEVELS))
    return np.stack(out)


def old_grids(s: Snippet, qp_scale: float) -> np.ndarray:
    """roienc <= 0.1's mapping: the area mean of the map QP per 64x64 block x qp_scale (negative)."""
    out = []
    for g in s.dq:
        v = svtav1.block_means(g, s.block, s.w, s.h) * qp_scale
        v = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -svtav1.SVT_MAX_OFFSET, svtav1.SVT_MAX_OFFSET)
        out.append(quantise_levels(v.astype(np.int16), max_levels=svtav1.SVT_MAX_LEVELS))
    return np.stack(out)


class Runner:
    def __init__(self, svt: str, ffmpeg: str, decoder: list[str], s: Snippet, preset: str, work: Path):
        self.svt, self.ffmpeg, self.decoder, self.s, self.preset, self.work = svt, ffmpeg, decoder, s, preset, work
        self.count = 0

    def encode(self, crf: int, grids: np.ndarray | None = None, extra: tuple[str, ...] = ()) -> dict:
        self.count += 1
        ivf = self.work / f"e{self.count}.ivf"
        cmd = [self.svt, "-i", str(self.s.y4m), "--progress", "0", "--preset", self.preset,
               "--crf", str(crf), "--keyint", "250", *extra, "-b", str(ivf)]
        if grids is not None:
            mf = self.work / f"e{self.count}.roimap.txt"
            mf.write_text(svtav1.roi_map_text(grids))
            cmd += ["--roi-map-file", str(mf)]
        subprocess.run(cmd, check=True, capture_output=True)
        yuv = self.work / f"e{self.count}.yuv"
        subprocess.run([self.ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *self.decoder, "-i", str(ivf),
                        "-f", "rawvideo", "-pix_fmt", "yuv420p", str(yuv)], check=True)
        err = (read_y(yuv, self.s.w, self.s.h, self.s.n).astype(np.float64) - self.s.src) ** 2
        yuv.unlink()
        psnr = lambda m: float(10 * np.log10(255.0 ** 2 / (err[m].mean() if m is not None else err.mean())))
        return {"bytes": ivf.stat().st_size, "psnr_roi": psnr(self.s.roi), "psnr_nonroi": psnr(~self.s.roi),
                "psnr_y": psnr(None), "ivf": ivf}

    def headers(self, ivf: Path) -> list[dict]:
        """Per coded picture: order_hint, base_q_idx, segmentation_enabled, ALT_Q offset per segment."""
        return frame_headers(self.ffmpeg, ivf) or []


def line(name: str, r: dict, ref: dict | None = None) -> str:
    s = f"  {name:44s} {r['bytes']:9d} {r['psnr_roi']:8.3f} {r['psnr_nonroi']:8.3f} {r['psnr_y']:8.3f}"
    if ref:
        s += (f"   {100 * (r['bytes'] / ref['bytes'] - 1):+6.1f}%  {r['psnr_roi'] - ref['psnr_roi']:+6.2f}"
              f" {r['psnr_nonroi'] - ref['psnr_nonroi']:+6.2f}")
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, help="Cityscapes-layout root with labels_pred (default: made "
                    "from ../shared/cityscapes_sequences)")
    ap.add_argument("--snippet", default="aachen_000000")
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--preset", default="10")
    ap.add_argument("--crf", default="30,36,42,48")
    ap.add_argument("--scale", default="6.5", help="qindex per map QP of the min mappings (a list: "
                    "the shifted min mapping at each)")
    ap.add_argument("--variants", default="old,min,shifted,roienc", help="part 3's mappings: old, min, "
                    "shifted, mean-shifted, layers:F0/F1/F2/F3/F4 (shifted, x a factor per temporal layer), roienc, "
                    "plus-min:T (roienc's plus the block min x T: the ROI finer too)")
    ap.add_argument("--parts", default="1,2,3", help="which of the three parts to run")
    a = ap.parse_args()
    scales = [float(x) for x in a.scale.split(",")]
    parts = {int(x) for x in a.parts.split(",")}
    crfs = [int(c) for c in a.crf.split(",")]
    try:
        tool = svtav1.find_svtav1()
        ffmpeg = find_ffmpeg().path
    except ToolError as exc:
        print(f"skipped: {str(exc).splitlines()[0]}")
        return 0
    decs = subprocess.run([ffmpeg, "-hide_banner", "-decoders"], check=False, capture_output=True, text=True).stdout
    decoder = ["-c:v", "libdav1d"] if "libdav1d" in decs else (["-c:v", "libaom-av1"] if "libaom-av1" in decs else [])
    qp_scale = load_config("av1").qp_scale
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="bench_av1_roi-") as tmp:
        tmp = Path(tmp)
        root = a.root
        if root is None:
            if not (SHARED / "make_root.py").is_file():
                print(f"skipped: {SHARED} not found (the real snippets are not on this machine)")
                return 0
            root = tmp / "root"
            subprocess.run([sys.executable, str(SHARED / "make_root.py"), str(root), a.snippet], check=True,
                           capture_output=True)
        env = dict(os.environ, PYTHONPATH=str(_checkout.REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        subprocess.run([sys.executable, "-m", "roienc", "build-maps", "--cityscapes-root", str(root), "--split",
                        "train", "--cities", a.snippet.split("_")[0], "--speed", "10", "--sequences",
                        "--labels-root", str(root / "labels_pred"), "--out", str(tmp / "maps")],
                       check=True, capture_output=True, env=env)
        s = Snippet(root, tmp / "maps", a.snippet, a.frames, tmp, ffmpeg)
        r = Runner(tool.path, ffmpeg, decoder, s, a.preset, tmp)
        gh, gw = -(-s.h // 64), -(-s.w // 64)
        print(f"SVT-AV1 {tool.version} ({tool.path}), preset {a.preset}; {a.snippet}, {s.n} frames "
              f"{s.w}x{s.h}; ROI (importance >= 0.5, labels_pred) {100 * s.roi.mean():.1f}% of pixels, "
              f"{100 * (block_min(s.dq[0], s.block, s.w, s.h) < 0).mean():.1f}% of frame 0's 64x64 blocks")
        head = f"  {'encode':44s} {'bytes':>9s} {'roi':>8s} {'nonroi':>8s} {'y':>8s}   {'bytes':>7s}  {'dROI':>6s} {'dNON':>6s}"
        mid = crfs[len(crfs) // 2 - 1] if len(crfs) > 1 else crfs[0]
        plain = {c: r.encode(c) for c in crfs}
        p = plain[mid]

        mins = [int(block_min(g, s.block, s.w, s.h).min()) for g in s.dq]
        print(f"  map QP per picture (its most important 64x64 block; 0: no ROI offset): {mins}")

        if 1 in parts:
            print(f"\n1. Applied per picture (CRF {mid}): uniform +40 map, the bitstream's frame headers")
            u = r.encode(mid, np.full((s.n, gh, gw), 40, np.int16))
            hp, hu = r.headers(p["ivf"]), r.headers(u["ivf"])
            print(head)
            print(line("plain", p))
            print(line("uniform +40 on every line", u, p))
            print("  coded pictures (order_hint: base_q_idx plain/map, map's segment offsets):")
            print("   ", ", ".join(f"{a_['order_hint']}: {a_['base_q_idx']}/{b_['base_q_idx']} "
                                 f"{list(b_['seg_q'].values()) if b_['segmentation_enabled'] else 'off'}"
                                 for a_, b_ in zip(hp, hu)))

        if 2 in parts:
            print(f"\n2. Negative offsets: uniform -40 (CRF {mid}) against plain CRF {mid - 10} (its qindex); "
                  f"positive: uniform +40 against plain CRF {mid + 10}")
            print(head)
            print(line("plain", p))
            print(line(f"plain CRF {mid - 10}", r.encode(mid - 10), p))
            neg = np.full((s.n, gh, gw), -40, np.int16)
            print(line("uniform -40", r.encode(mid, neg), p))
            print(line("uniform -40, --lambda-scale-factors 32 (x1/4)", r.encode(
                mid, neg, ("--lambda-scale-factors", ",".join(["32"] * 7))), p))
            print(line(f"plain CRF {mid + 10}", r.encode(mid + 10), p))
            print(line("uniform +40", r.encode(mid, -neg), p))

        if 3 in parts:
            print(f"\n3. Mappings, BD-rate against plain SVT-AV1 at CRF {a.crf}; bytes and PSNR at CRF {mid}")
            maps = {}
            for v in a.variants.split(","):
                if v == "old":
                    maps["area mean x4 (roienc <= 0.1)"] = old_grids(s, 4.0)
                elif v == "min":
                    maps[f"block min x{scales[0]:g}"] = min_grids(s, scales[0], False)
                elif v == "shifted":
                    for sc in scales:
                        maps[f"block min x{sc:g}, shifted to >= 0"] = shifted_grids(s, "min", sc)
                elif v == "mean-shifted":
                    for sc in scales:
                        maps[f"area mean x{sc:g}, shifted to >= 0"] = shifted_grids(s, "mean", sc)
                elif v.startswith("layers"):        # layers:f0/f1/f2/f3/f4
                    ls = tuple(float(x) for x in v.split(":")[1].split("/"))
                    for sc in scales:
                        maps[f"block min x{sc:g} shifted, layers {v.split(':')[1]}"] = shifted_grids(s, "min", sc, ls)
                elif v.startswith("plus-min"):      # plus-min:T: roienc's + round(block min x T) (<= 0)
                    t = float(v.split(":")[1])
                    base = svtav1.roi_map_grids(s.dq, s.block, s.w, s.h, qp_scale)
                    neg = np.stack([np.floor(block_min(g, s.block, s.w, s.h) * t + 0.5) for g in s.dq])
                    g = np.clip(base + neg, -svtav1.SVT_MAX_OFFSET, svtav1.SVT_MAX_OFFSET).astype(np.int16)
                    maps[f"roienc's + block min x{t:g} (ROI finer)"] = np.stack(
                        [quantise_levels(x, max_levels=svtav1.SVT_MAX_LEVELS) for x in g])
                elif v == "roienc":
                    maps[f"roienc's mapping (x{qp_scale:g})"] = svtav1.roi_map_grids(s.dq, s.block, s.w, s.h, qp_scale)
            print(f"  {'mapping':44s} {'offsets':>9s} {'BD roi':>8s} {'nonroi':>8s} {'y':>8s}   {'bytes':>7s}  {'dROI':>6s} {'dNON':>6s}")
            for name, g in maps.items():
                res = {c: r.encode(c, g) for c in crfs}
                bd = [bd_pair([plain[c]["bytes"] for c in crfs], [plain[c][m] for c in crfs],
                              [res[c]["bytes"] for c in crfs], [res[c][m] for c in crfs])[0] for m in REGIONS]
                q = res[mid]
                print(f"  {name:44s} {int(g.min()):4d}..{int(g.max()):<4d} {bd[0]:+7.1f}% {bd[1]:+7.1f}% {bd[2]:+7.1f}%"
                      f"   {100 * (q['bytes'] / p['bytes'] - 1):+6.1f}%  {q['psnr_roi'] - p['psnr_roi']:+6.2f}"
                      f" {q['psnr_nonroi'] - p['psnr_nonroi']:+6.2f}", flush=True)
    print(f"\n{r.count} encodes in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
