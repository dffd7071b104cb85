"""Label propagation on real Cityscapes sequences: accuracy of the dynamic-object mask and cost.

    python3 benchmarks/bench_propagate_masks.py [[--root] ROOT] [--explore] [--snippets N]

ROOT is a root built by /work/shared/cityscapes_sequences/make_root.py (default: build one in a
temporary directory). For each real snippet (aachen_000000..2) and each frame offset from the
annotated frame 19 (-19..+10) the dynamic-object mask (roienc.labels DYNAMIC group) of
  hold      frame 19's labels everywhere (today's behaviour),
  prop      propagated, no margin,
  prop+m    propagated with the default margin,
  prop+m+u  that plus the pixels outside frame 19's view (the ROI with an unseen-importance floor),
is compared with that frame's predicted labels (labels_pred: a segmentation network's per-frame
output, the reference; it flickers on small objects): pixel IoU, 16x16 and 32x32 block recall
(blocks containing a reference dynamic pixel that also contain a predicted one), 16x16 block
precision, and area (ROI blocks of 16x16 / the reference's). Propagation starts from two sources of
frame 19: the real gtFine (only aachen_000000 has one; the others stand in predicted labels) and
labels_pred of frame 19 (so offset 0 is exact and the comparison is fair). Time per frame of
propagation (flow + warps) is measured with the frames in memory; PNG reading is timed separately.
--explore runs the parameter sweep that chose the defaults.

--label-every 1,5,10,15,30 measures propagation from every K-th frame's labels_pred (frames i with
(i - 19) % K == 0, as build-maps --label-every K; :func:`roienc.propagate.propagate_keyframes`)
against every frame's labels_pred: per snippet the mean and the worst frame's 16x16 block recall
of the dynamic mask (default margin), IoU, area, for the merge rule of the frames between two
labelled frames (``union``: :func:`roienc.propagate.merge_outputs`; ``nearer``: only the nearer
labelled frame's chain, for comparison; before the first / after the last labelled frame the two
nearest labelled frames' chains, or with ``edge1`` the nearest one's alone), and the propagation
CPU time per frame next to the CPU time per frame of a preset-fast libx265 encode of the same
frames (ffmpeg on PATH, user + sys of the child process). ``--propagation KEY=VALUE`` (repeatable,
as build-maps) measures other settings than the defaults, e.g. ``--propagation preset=medium``
(the ceilings' known-object masks keep their own fixed settings).
"""
from __future__ import annotations

import _checkout  # noqa: F401  (this checkout's roienc, not an installed copy)

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from roienc.labels import DYNAMIC, load_class_groups
from roienc.maps import object_instances
from roienc.propagate import (PropagationParams, propagate_keyframes, propagate_snippet,
                              read_label_png, read_rgb)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "cityscapes_sequences"
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
    # as build-maps propagates them: every dynamic component an instance (signs, crowds)
    lut = load_class_groups().group_lut()
    src = {k: (lab, object_instances(lab, inst, lut)) for k, (lab, inst) in src.items()}
    return imgs, refs, src, t_read


KNOWN_PX = 24     # a reference object within this many px of a propagated one counts as known
UNSEEN_SHARE = 0.5  # ... unless this share of its pixels is out of every labelled frame's view


def known_mask(ref: np.ndarray, prop0: np.ndarray, hold: np.ndarray,
               unseen: np.ndarray | None = None) -> np.ndarray:
    """The reference's dynamic pixels that belong to objects with a counterpart in frame 19.

    A reference connected component (8-connected) is *unknown* (absent from frame 19: it entered
    the view, came out from behind something, or the segmentation network found it only in this
    frame) when none of its pixels lies within KNOWN_PX of the propagated mask (no margin) AND it
    does not overlap frame 19's own dynamic mask where it was in frame 19. Everything else is
    known: an object propagation tracked badly but still near counts as known, so its misses
    count against propagation. (The first condition uses the propagated mask, so an object that
    propagation lost completely *and* that moved off its frame-19 position counts as unknown:
    the known-object recall is an upper bound for such cases, which the all-object recall is not.)

    ``unseen`` (the propagation's pixels whose flow leaves every labelled frame's view on the
    way to it): a component at least UNSEEN_SHARE of whose pixels are unseen is unknown whatever
    lies near it, unless the propagation (``prop0``) covers at least UNSEEN_SHARE of it (an object
    cut by a labelled frame's edge, which the propagation extends past the edge). Otherwise no
    labelled frame shows it: it left the view (a sign board the car passed, a parked car at the
    frame's side) or has not entered it yet. Without this, the propagated mask's smear along the
    frame edge sat "near" such objects and counted them as known.
    """
    n, cc = cv2.connectedComponents(ref.view(np.uint8), connectivity=8)
    if n <= 1:
        return ref
    dist = cv2.distanceTransform((~prop0).view(np.uint8), cv2.DIST_L2, 5)
    hit = (dist <= KNOWN_PX) | hold
    known = np.zeros(n, bool)
    known[np.unique(cc[hit & ref])] = True
    known[0] = False
    if unseen is not None:
        size = np.bincount(cc.ravel(), minlength=n)
        gone = np.bincount(cc[unseen & ref], minlength=n)
        covered = np.bincount(cc[prop0 & ref], minlength=n)
        known &= (gone < UNSEEN_SHARE * size) | (covered >= UNSEEN_SHARE * size)
    return known[cc]


# what a ceiling propagates with: no margin, and holds unlimited (it judges what any
# propagation from the labelled frames could reach, not this one's settings)
CEILING_PARAMS = PropagationParams(margin_px=0, margin_growth_px=0.0, margin_max_px=0,
                                   hold_growth=0.0)


def known_masks(images, keys: dict, refs_dyn, lut: np.ndarray, n: int) -> list[np.ndarray]:
    """Per frame ``k`` of a snippet, :func:`known_mask` of ``refs_dyn(k)`` (the reference's
    dynamic mask) from the labelled frames ``keys`` (index -> (labelIds, instanceIds)):
    propagated with CEILING_PARAMS, their own dynamic pixels held, the unseen rule applied."""
    is_dyn = lut == DYNAMIC
    prop = propagate_keyframes(images, keys, CEILING_PARAMS, lut, n_frames=n)
    held = np.logical_or.reduce([is_dyn[kl] for kl, _ in keys.values()])
    out = []
    for k in range(n):
        ref = refs_dyn(k)
        out.append(known_mask(ref, is_dyn[prop[k].labels], held, prop[k].unseen))
    return out


def run(data, params: PropagationParams, lut: np.ndarray, sources=("pred",)):
    """rows: dicts(snip, source, offset, method, metrics...)."""
    is_dyn = lut == DYNAMIC
    rows = []
    nomargin = replace(params, margin_px=0, margin_growth_px=0.0, margin_max_px=0)
    for snip, (imgs, refs, src, _) in data.items():
        for s in sources:
            lab, inst = src[s]
            out = propagate_snippet(imgs, ANN, lab, inst, params, lut)
            out0 = propagate_snippet(imgs, ANN, lab, inst, nomargin, lut)
            hold = is_dyn[lab]
            for i in range(N):
                ref = is_dyn[refs[i]]
                p0 = is_dyn[out0[i].labels]
                known = known_mask(ref, p0, is_dyn[refs[ANN]])
                pm = is_dyn[out[i].labels]
                # prop+m+u: the ROI when unseen pixels get an importance floor >= the ROI threshold
                pmu = pm if out[i].unseen is None else pm | out[i].unseen
                for name, m in (("hold", hold), ("prop", p0), ("prop+m", pm), ("prop+m+u", pmu)):
                    sc = scores(m, ref)
                    kb, rb = block_any(known, 16), block_any(ref, 16)
                    sc["rec16k"] = (block_any(m, 16) & kb).sum() / kb.sum() if kb.sum() else 1.0
                    sc["unknown16"] = 1.0 - kb.sum() / rb.sum() if rb.sum() else 0.0
                    rows.append({"snip": snip, "src": s, "off": i - ANN, "method": name,
                                 "unrel": out[i].unreliable_fraction, **sc})
    return rows


def per_offset(rows, src="pred"):
    sel = [r for r in rows if r["src"] == src]
    hdr = (f"{'off':>4} | {'hold':>5} | {'prop: rec16':>11} {'iou':>5} {'area':>5} | "
           f"{'prop+m: rec16':>13} {'known':>5} {'iou':>5} {'area':>5} | unknown blocks")
    lines = [hdr]
    for off in range(-ANN, N - ANN):
        def m(method, k):
            return float(np.mean([r[k] for r in sel if r["method"] == method and r["off"] == off]))
        lines.append(f"{off:>4} | {m('hold', 'rec16'):5.3f} | {m('prop', 'rec16'):11.3f} "
                     f"{m('prop', 'iou'):5.3f} {m('prop', 'area16'):5.2f} | "
                     f"{m('prop+m', 'rec16'):13.3f} {m('prop+m', 'rec16k'):5.3f} "
                     f"{m('prop+m', 'iou'):5.3f} {m('prop+m', 'area16'):5.2f} | "
                     f"{m('prop+m', 'unknown16'):5.3f}")
    return "\n".join(lines)


def overall(rows, src="pred", method="prop+m"):
    rs = [r for r in rows if r["src"] == src and r["method"] == method and r["off"] != 0]
    per_off, per_off_k = {}, {}
    for r in rs:
        per_off.setdefault(r["off"], []).append(r["rec16"])
        per_off_k.setdefault(r["off"], []).append(r["rec16k"])
    return {k: float(np.mean([r[k] for r in rs]))
            for k in ("rec16", "rec16k", "rec32", "iou", "prec16", "area16")} | \
        {"worst_off_rec16": float(min(np.mean(v) for v in per_off.values())),
         "worst_off_rec16k": float(min(np.mean(v) for v in per_off_k.values())),
         "min_frame_rec16": float(min(r["rec16"] for r in rs))}


def fmt(d):
    return " ".join(f"{k}={v:.3f}" for k, v in d.items())


def timing(imgs, lab, inst, params, lut, repeats=3):
    """ms per propagated frame, best of ``repeats``: wall and CPU time (process time) with one
    OpenCV thread, and the flow / warp split of the wall time. CPU time is the robust number on a
    shared machine (wall time grows with the load); single-threaded CPU time is what the
    propagation takes from an encoder running alongside."""
    nthreads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    best = None
    try:
        for _ in range(repeats):
            t = {}
            w0, c0 = time.perf_counter(), time.process_time()
            propagate_snippet(imgs, ANN, lab, inst, params, lut, timings=t)
            r = ((time.perf_counter() - w0) * 1000 / (N - 1), (time.process_time() - c0) * 1000 / (N - 1),
                 1000 * t["flow_s"] / (N - 1), 1000 * t["warp_s"] / (N - 1))
            best = r if best is None or r[1] < best[1] else best
    finally:
        cv2.setNumThreads(nthreads)
    return dict(zip(("wall", "cpu", "flow", "warp"), best))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", help="root made by make_root.py (default: build one)")
    ap.add_argument("--root", dest="root_option", metavar="ROOT",
                    help="the same, as the other benchmarks take it")
    ap.add_argument("--explore", action="store_true", help="run the parameter sweep")
    ap.add_argument("--snippets", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=(), help="--explore: only these variants")
    ap.add_argument("--label-every", metavar="K,K,..",
                    help="measure propagation from every K-th frame's labels (e.g. 1,5,10,15,30)")
    ap.add_argument("--propagation", action="append", default=[], metavar="KEY=VALUE",
                    help="a propagation setting other than the default (as build-maps "
                         "--propagation); repeatable")
    args = ap.parse_args()
    if args.root and args.root_option and args.root != args.root_option:
        ap.error(f"two roots given: {args.root} and --root {args.root_option}")
    args.root = args.root or args.root_option
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
    base = PropagationParams.from_settings(args.propagation)
    if args.explore:
        explore(data, lut, base, args.only)
        return 0
    if args.label_every:
        label_every(root, data, lut, [int(k) for k in args.label_every.split(",")], base)
        return 0
    rows = run(data, base, lut, sources=("pred", "gt"))
    print(f"params: {base.as_dict()}")
    for src in ("pred", "gt"):
        print(f"\n== propagated from frame 19's {'labels_pred' if src == 'pred' else 'gtFine'}; "
              f"mean over {len(data)} snippets per offset; rec16 = 16x16 block recall; known = "
              f"rec16 on reference objects with a counterpart in frame 19 (see known_mask); "
              f"area = ROI blocks / reference blocks; unknown blocks = share of reference blocks "
              f"only in objects absent from frame 19")
        print(per_offset(rows, src))
        for m in ("hold", "prop", "prop+m", "prop+m+u"):
            print(f"  {m:8s} (all offsets != 0): {fmt(overall(rows, src, m))}")
        print("  (prop+m+u: propagated objects with margin plus the unseen pixels, the ROI with "
              "--propagation unseen_importance >= the ROI threshold)")
    unrel = np.mean([r["unrel"] for r in rows if r["method"] == "prop" and r["off"] != 0])
    print(f"\nunreliable (forward-backward) fraction per step: {unrel:.3f}")
    print("Objects absent from frame 19 (entering the view, disoccluded, or found by the network "
          "only in that frame) cannot be propagated from it: flow only moves what frame 19 "
          "shows. They are what keeps the all-object recall below the known-object recall at "
          "far offsets; only labels of those frames (or a detector) can recover them.")
    imgs = data[SNIPPETS[0]][0]
    lab, inst = data[SNIPPETS[0]][2]["pred"]
    t = timing(imgs, lab, inst, base, lut)
    print(f"time per propagated frame (2048x1024, frames in memory, 1 OpenCV thread, best of 3): "
          f"CPU {t['cpu']:.1f} ms, wall {t['wall']:.1f} ms (flow incl. gray/resize and FB check "
          f"{t['flow']:.1f} ms, warps + policy + margin + upsampling {t['warp']:.1f} ms); PNG "
          f"reading {read_ms:.1f} ms per frame on top")
    return 0


def keyframes(root: Path, snip: str, refs, lut, k: int) -> dict:
    """labels_pred of the frames i with (i - ANN) % k == 0, with instances as build-maps makes
    them (every dynamic component an object)."""
    lp = root / "labels_pred/train/aachen"
    out = {}
    for i in range(N):
        if (i - ANN) % k == 0:
            inst = read_label_png(lp / f"{snip}_{i:06d}_instanceIds.png")
            out[i] = (refs[i], object_instances(refs[i], inst, lut))
    return out


def nearer_only(near, far, is_dyn):
    """The merge rule to compare against: the nearer labelled frame's chain alone."""
    return near


def label_every(root: Path, data, lut, ks, params: PropagationParams) -> None:
    is_dyn = lut == DYNAMIC
    print("propagation from every K-th frame's labels_pred (frames i with (i-19) % K == 0), "
          "judged by every frame's labels_pred; PropagationParams: the defaults (margin "
          "included) unless --propagation; rec16 = 16x16 block recall of the dynamic mask, "
          "min = worst frame; iou, area = ROI blocks / reference blocks (means over the frames "
          "without labels); known, kmin = rec16 on the reference objects some labelled frame "
          "shows (known_mask from those frames, with the unseen rule; rule 'union' only)")
    if params != PropagationParams():
        print(f"propagation settings (not the defaults): {params.as_dict()}")
    print(f"{'K':>3} {'rule':6} {'snippet':14} {'labelled':>8} | {'rec16':>5} {'min':>5} "
          f"{'iou':>5} {'area':>5} {'known':>5} {'kmin':>5} | frames with rec16 < 0.95")
    for k in ks:
        for name, kw in (("union", {}), ("edge1", {"edges": "one"}),
                         ("nearer", {"merge": nearer_only, "edges": "one"})):
            if (k == 1 and name != "union") or (k == 30 and name == "nearer"):
                continue
            for snip, (imgs, refs, _, _) in data.items():
                keys = keyframes(root, snip, refs, lut, k)
                out = propagate_keyframes(imgs, keys, params, lut, **kw)
                rs = [scores(is_dyn[out[i].labels], is_dyn[refs[i]]) for i in range(N)
                      if i not in keys] or [scores(is_dyn[refs[0]], is_dyn[refs[0]])]
                per = [r["rec16"] for r in rs]
                low = [i for i in range(N) if i not in keys
                       and scores(is_dyn[out[i].labels], is_dyn[refs[i]])["rec16"] < 0.95]
                kn = ["", ""]
                if name == "union" and len(keys) < N:
                    known = known_masks(imgs, keys, lambda i: is_dyn[refs[i]], lut, N)
                    kr = [scores(is_dyn[out[i].labels], known[i])["rec16"] for i in range(N)
                          if i not in keys]
                    kn = [f"{np.nanmean(kr):5.3f}", f"{np.nanmin(kr):5.3f}"]
                print(f"{k:>3} {name:6} {snip:14} {len(keys):>8} | {np.mean(per):5.3f} "
                      f"{min(per):5.3f} {np.mean([r['iou'] for r in rs]):5.3f} "
                      f"{np.nanmean([r['area16'] for r in rs]):5.2f} {kn[0]:>5} {kn[1]:>5} | "
                      f"{','.join(map(str, low)) or '-'}", flush=True)
    imgs, refs, _, _ = data[SNIPPETS[0]]
    nthreads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for k in ks:
            keys = keyframes(root, SNIPPETS[0], refs, lut, k)
            best = None
            for _ in range(2):
                c0 = time.process_time()
                propagate_keyframes(imgs, keys, params, lut)
                c = time.process_time() - c0
                best = c if best is None else min(best, c)
            print(f"K={k:>2}: propagation CPU {1000 * best / N:.1f} ms per frame of the snippet "
                  f"(2048x1024, frames in memory, 1 OpenCV thread, best of 2)")
    finally:
        cv2.setNumThreads(nthreads)
    enc = encode_cpu_per_frame(root, SNIPPETS[0])
    if enc:
        print(f"encode CPU {1000 * enc:.0f} ms per frame (ffmpeg libx265 preset fast CRF 28, "
              f"yuv420p, the same 30 frames; user + sys of the child): the propagation above is "
              f"that share of it")


def encode_cpu_per_frame(root: Path, snip: str) -> float | None:
    """CPU seconds (user + sys, all threads) per frame of a preset-fast libx265 encode of the
    snippet's frames with the ffmpeg on PATH: the cost the propagation is compared with (CPU,
    not wall: both robust to the load of a shared machine)."""
    import resource
    import shutil

    ff = shutil.which("ffmpeg")
    if ff is None:
        print("encode CPU: skipped (no ffmpeg on PATH)")
        return None
    seq = root / "leftImg8bit_sequence/train/aachen"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([ff, "-v", "error", "-y", "-framerate", "17", "-start_number", "0", "-i",
                    str(seq / f"{snip}_%06d_leftImg8bit.png"), "-frames:v", str(N), "-pix_fmt",
                    "yuv420p", "-c:v", "libx265", "-preset", "fast", "-crf", "28",
                    "-x265-params", "log-level=error", "-f", "null", "-"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / N


def explore(data, lut, base, only=()):
    variants = {
        "default": base,
        "fb-thr2-rel0.1": replace(base, fb_threshold=2.0, fb_relative=0.1),
        "fb-thr4": replace(base, fb_threshold=4.0),
        "fb-thr8": replace(base, fb_threshold=8.0),
        "fb-thr16": replace(base, fb_threshold=16.0),
        "no-fb": replace(base, fb_check=False),
        "fb-unwarped": replace(base, unreliable="unwarped"),
        "compose": replace(base, mode="compose"),
        "scale0.25": replace(base, scale=0.25),
        "scale0.25-fast": replace(base, scale=0.25, preset="fast"),
        "scale0.5-fast": replace(base, preset="fast"),
        "margin-fixed24": replace(base, margin_px=24, margin_growth_px=0.0, margin_max_px=24),
        "margin-4+1/step": replace(base, margin_px=4, margin_growth_px=1.0),
        "margin-8+3/step": replace(base, margin_px=8, margin_growth_px=3.0, margin_max_px=64),
        "margin-16+4/step": replace(base, margin_px=16, margin_growth_px=4.0, margin_max_px=96),
        "similarity": replace(base, object_motion="similarity"),
        "similarity-m4+1": replace(base, object_motion="similarity", margin_px=4,
                                   margin_growth_px=1.0),
        "similarity-warp": replace(base, object_motion="similarity", unreliable="warp"),
        "pixel": replace(base, object_motion="pixel"),
        "margin-12+2/step": replace(base, margin_px=12),
        "margin-8+2.5/step": replace(base, margin_growth_px=2.5, margin_max_px=56),
    }
    if only:
        variants = {k: v for k, v in variants.items() if k in only}
    print(f"{'variant':18s} {'cpu ms':>6} | no margin: rec16 worst known worstk iou area | "
          f"margin: rec16 worst known worstk iou area | unrel")
    imgs = data[SNIPPETS[0]][0]
    lab, inst = data[SNIPPETS[0]][2]["pred"]
    for name, p in variants.items():
        rows = run(data, p, lut)
        ms = timing(imgs, lab, inst, p, lut, repeats=1)["cpu"]
        a, b = overall(rows, "pred", "prop"), overall(rows, "pred", "prop+m")
        unrel = np.mean([r["unrel"] for r in rows if r["method"] == "prop" and r["off"] != 0])
        print(f"{name:18s} {ms:6.1f} | {a['rec16']:.3f} {a['worst_off_rec16']:.3f} {a['rec16k']:.3f} "
              f"{a['worst_off_rec16k']:.3f} {a['iou']:.3f} {a['area16']:.2f} | {b['rec16']:.3f} "
              f"{b['worst_off_rec16']:.3f} {b['rec16k']:.3f} {b['worst_off_rec16k']:.3f} "
              f"{b['iou']:.3f} {b['area16']:.2f} | {unrel:.3f}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
