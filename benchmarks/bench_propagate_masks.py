"""Label propagation on real Cityscapes sequences: accuracy of the dynamic-object mask and cost.

    python3 benchmarks/bench_propagate_masks.py [ROOT] [--explore] [--snippets N]

ROOT is a root built by /work/shared/cityscapes_sequences/make_root.py (default: build one in a
temporary directory). For each real snippet (aachen_000000..2) and each frame offset from the
annotated frame 19 (-19..+10) the dynamic-object mask (roienc.labels DYNAMIC group) of
  hold      frame 19's labels everywhere (today's behaviour),
  prop      propagated, no margin,
  prop+m    propagated with the default margin,
is compared with that frame's predicted labels (labels_pred: a segmentation network's per-frame
output, the reference; it flickers on small objects): pixel IoU, 16x16 and 32x32 block recall
(blocks containing a reference dynamic pixel that also contain a predicted one), 16x16 block
precision, and area (ROI blocks of 16x16 / the reference's). Propagation starts from two sources of
frame 19: the real gtFine (only aachen_000000 has one; the others stand in predicted labels) and
labels_pred of frame 19 (so offset 0 is exact and the comparison is fair). Time per frame of
propagation (flow + warps) is measured with the frames in memory; PNG reading is timed separately.
--explore runs the parameter sweep that chose the defaults.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from roienc.labels import DYNAMIC, load_class_groups
from roienc.propagate import PropagationParams, propagate_snippet, read_label_png, read_rgb

SHARED = Path("/work/shared/cityscapes_sequences")
SNIPPETS = ("aachen_000000", "aachen_000001", "aachen_000002")
ANN, N = 19, 30
BUCKETS = ((-19, -15), (-14, -10), (-9, -5), (-4, -2), (-1, -1), (0, 0), (1, 1), (2, 4), (5, 10))


def block_any(m: np.ndarray, b: int) -> np.ndarray:
    h, w = m.shape
    hb, wb = -(-h // b), -(-w // b)
    pad = np.zeros((hb * b, wb * b), bool)
    pad[:h, :w] = m
    return pad.reshape(hb, b, wb, b).any(axis=(1, 3))


def scores(pred: np.ndarray, ref: np.ndarray) -> dict:
    inter, union = np.logical_and(pred, ref).sum(), np.logical_or(pred, ref).sum()
    out = {"iou": inter / union if union else 1.0}
    for b in (16, 32):
        pb, rb = block_any(pred, b), block_any(ref, b)
        n = rb.sum()
        out[f"rec{b}"] = (pb & rb).sum() / n if n else 1.0
        if b == 16:
            out["prec16"] = (pb & rb).sum() / pb.sum() if pb.sum() else 1.0
            out["area16"] = pb.sum() / n if n else float("nan")
    return out


def load(root: Path, snip: str):
    seq = root / "leftImg8bit_sequence/train/aachen"
    lp = root / "labels_pred/train/aachen"
    gt = root / "gtFine/train/aachen"
    t0 = time.perf_counter()
    imgs = [read_rgb(seq / f"{snip}_{i:06d}_leftImg8bit.png") for i in range(N)]
    t_read = (time.perf_counter() - t0) / N
    refs = [read_label_png(lp / f"{snip}_{i:06d}_labelIds.png") for i in range(N)]
    src = {"gt": (read_label_png(gt / f"{snip}_000019_gtFine_labelIds.png"),
                  read_label_png(gt / f"{snip}_000019_gtFine_instanceIds.png")),
           "pred": (refs[ANN], read_label_png(lp / f"{snip}_{ANN:06d}_instanceIds.png"))}
    return imgs, refs, src, t_read


def run(data, params: PropagationParams, lut: np.ndarray, sources=("pred",)):
    """rows: dicts(snip, source, offset, method, metrics...); ms per frame."""
    is_dyn = lut == DYNAMIC
    rows, t_total, frames = [], 0.0, 0
    nomargin = replace(params, margin_px=0, margin_growth_px=0.0)
    for snip, (imgs, refs, src, _) in data.items():
        for s in sources:
            lab, inst = src[s]
            t0 = time.perf_counter()
            out = propagate_snippet(imgs, ANN, lab, inst, params, lut)
            t_total += time.perf_counter() - t0
            frames += N - 1
            # the no-margin variant: the margin is applied last, so re-run only the cheap part
            out0 = propagate_snippet(imgs, ANN, lab, inst, nomargin, lut) \
                if params.margin_at(1) or params.margin_at(N) else out
            hold = is_dyn[lab]
            for i in range(N):
                ref = is_dyn[refs[i]]
                for name, m in (("hold", hold), ("prop", is_dyn[out0[i].labels]),
                                ("prop+m", is_dyn[out[i].labels])):
                    rows.append({"snip": snip, "src": s, "off": i - ANN, "method": name,
                                 "unrel": out[i].unreliable_fraction, **scores(m, ref)})
    return rows, 1000.0 * t_total / max(frames, 1)


def summarize(rows, src="pred", keys=("rec16", "rec32", "iou", "prec16", "area16")):
    sel = [r for r in rows if r["src"] == src]
    lines = [f"{'offsets':>9} " + " ".join(f"{m:>6}{k:>7}" for m in ("hold", "prop", "prop+m")
                                           for k in ("rec16", "iou", "area")[:3])]
    for lo, hi in BUCKETS:
        cells = []
        for m in ("hold", "prop", "prop+m"):
            rs = [r for r in sel if r["method"] == m and lo <= r["off"] <= hi]
            cells += [np.mean([r["rec16"] for r in rs]), np.mean([r["iou"] for r in rs]),
                      np.mean([r["area16"] for r in rs])]
        lines.append(f"{lo:>4}..{hi:<3} " + " ".join(f"{c:13.3f}" if j % 3 == 0 else f"{c:6.3f}"
                                                     for j, c in enumerate(cells)))
    return "\n".join(lines)


def overall(rows, src="pred", method="prop+m"):
    rs = [r for r in rows if r["src"] == src and r["method"] == method and r["off"] != 0]
    per_off = {}
    for r in rs:
        per_off.setdefault(r["off"], []).append(r["rec16"])
    worst = min(np.mean(v) for v in per_off.values())
    return {k: float(np.mean([r[k] for r in rs])) for k in ("rec16", "rec32", "iou", "prec16", "area16")} | \
        {"worst_offset_rec16": float(worst), "min_frame_rec16": float(min(r["rec16"] for r in rs))}


def fmt(d):
    return " ".join(f"{k}={v:.3f}" for k, v in d.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", help="root made by make_root.py (default: build one)")
    ap.add_argument("--explore", action="store_true", help="run the parameter sweep")
    ap.add_argument("--snippets", type=int, default=3)
    args = ap.parse_args()
    if args.root is None:
        if not (SHARED / "make_root.py").exists():
            print(f"skip: {SHARED} is absent (real Cityscapes sequences)")
            return 0
        tmp = tempfile.mkdtemp(prefix="roienc_realroot_")
        subprocess.run([sys.executable, str(SHARED / "make_root.py"), tmp], check=True)
        root = Path(tmp)
    else:
        root = Path(args.root)
    if not (root / "labels_pred").is_dir():
        print(f"skip: {root} is not a root made by make_root.py (no labels_pred/)")
        return 0
    lut = load_class_groups().group_lut()
    data = {s: load(root, s) for s in SNIPPETS[: args.snippets]}
    read_ms = 1000 * np.mean([d[3] for d in data.values()])
    base = PropagationParams()
    if args.explore:
        explore(data, lut, base)
        return 0
    rows, ms = run(data, base, lut, sources=("pred", "gt"))
    print(f"params: {base.as_dict()}")
    for src in ("pred", "gt"):
        print(f"\n== propagated from frame 19's {'labels_pred' if src == 'pred' else 'gtFine'}; "
              f"mean over {len(data)} snippets; rec16 = 16x16 block recall, area = ROI blocks / "
              f"reference blocks")
        print(summarize(rows, src))
        for m in ("hold", "prop", "prop+m"):
            print(f"  {m:7s} (all offsets != 0): {fmt(overall(rows, src, m))}")
    unrel = np.mean([r["unrel"] for r in rows if r["method"] == "prop" and r["off"] != 0])
    print(f"\nunreliable (forward-backward) fraction per step: {unrel:.3f}")
    t = {}
    imgs = data[SNIPPETS[0]][0]
    lab, inst = data[SNIPPETS[0]][2]["pred"]
    t0 = time.perf_counter()
    propagate_snippet(imgs, ANN, lab, inst, base, lut, timings=t)
    tot = (time.perf_counter() - t0) * 1000 / (N - 1)
    print(f"time per propagated frame (2048x1024, frames in memory): {tot:.1f} ms "
          f"(flow incl. gray/resize and FB check {1000 * t['flow_s'] / (N - 1):.1f} ms, "
          f"warps + policy + margin {1000 * t['warp_s'] / (N - 1):.1f} ms); "
          f"PNG reading {read_ms:.1f} ms per frame on top")
    return 0


def explore(data, lut, base):
    variants = {
        "default": base,
        "dis-medium": replace(base, preset="medium"),
        "dis-fast": replace(base, preset="fast"),
        "scale0.25-medium": replace(base, scale=0.25, preset="medium"),
        "scale0.25-fast": replace(base, scale=0.25),
        "farneback-0.25": replace(base, method="farneback", scale=0.25),
        "compose": replace(base, mode="compose"),
        "no-fb": replace(base, fb_check=False),
        "fb-unwarped": replace(base, unreliable="unwarped"),
        "fb-thr1": replace(base, fb_threshold=1.0, fb_relative=0.05),
        "fb-thr4": replace(base, fb_threshold=4.0, fb_relative=0.2),
        "margin-fixed12": replace(base, margin_px=12, margin_growth_px=0.0, margin_max_px=12),
        "margin-fixed24": replace(base, margin_px=24, margin_growth_px=0.0, margin_max_px=24),
        "margin-4+1/step": replace(base, margin_px=4, margin_growth_px=1.0),
        "margin-8+3/step": replace(base, margin_px=8, margin_growth_px=3.0, margin_max_px=64),
    }
    print(f"{'variant':18s} {'ms/f':>6} | no margin: rec16 worst  iou  area | margin: rec16 worst  rec32 iou prec16 area")
    for name, p in variants.items():
        rows, ms = run(data, p, lut)
        a, b = overall(rows, "pred", "prop"), overall(rows, "pred", "prop+m")
        print(f"{name:18s} {ms:6.1f} | {a['rec16']:.3f} {a['worst_offset_rec16']:.3f} {a['iou']:.3f} "
              f"{a['area16']:.2f} | {b['rec16']:.3f} {b['worst_offset_rec16']:.3f} {b['rec32']:.3f} "
              f"{b['iou']:.3f} {b['prec16']:.3f} {b['area16']:.2f}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
