"""Real sequences: which labels drive the ROI (hold, propagate, per-frame), judged by per-frame labels.

    python3 benchmarks/bench_sequences.py [--root ROOT] [--run RUN] [--crf 24,28,32,36]
                                          [--preset fast] [--speed 10] [--block-size 16] ...

On the three real aachen snippets of ``../shared/cityscapes_sequences`` (a Cityscapes root is
built with its ``make_root.py`` when ``--root`` is absent; skips with a message when the folder is
missing), for each label source of the sequence frames:

- ``hold``: the annotated frame's labels on every frame (the old default);
- ``propagate``: the annotated frame's labels propagated along optical flow (the default);
- ``per-frame``: each frame's own predicted labels (``labels_pred``, ``--labels-root``): the
  best the encoder can be told, the reference of the gap;
- ``tracked`` (with ``--sources ...,tracked``): the per-frame labels without the dynamic objects
  that have no counterpart in the annotated frame (entering the view, leaving it by frame 19,
  disoccluded, or found by the network only there; the rule of ``bench_propagate_masks.py``'s
  ``known_mask``), their pixels given the static label 'building': the ceiling of any label
  propagation from the one annotated frame, perfect on every object frame 19 shows;

- ``reachable-K`` (with ``--sources ...,reachable-10``): the per-frame labels without the
  dynamic objects that no labelled frame of ``every-K`` shows (same rule, from those frames'
  labels): the ceiling of propagation from every K-th frame's labels; ``every-K`` is also given
  as a share of it;

- ``frames-A.B.C`` (e.g. ``frames-0.9.19.29``): the per-frame labels of the frames at those
  positions of each snippet only (0 = its first frame), the others propagated: where the
  labelled frames sit, at a given number of them;

- ``every-K`` (with ``--label-every 1,5,10,15,30``): the per-frame labels of every K-th frame
  only (frames i with (i - 19) % K == 0, ``build-maps --label-every K``), the others propagated
  from the labelled frames around them (docs/sparse-labels.md); K=1 is ``per-frame``. Also
  prints the labelled frames each used and the propagation time per frame next to the encode's;

it runs one sweep (plain libx265 baseline, the ROI, all at the same CRFs) into one run folder
(the plain baseline is encoded once and reused), every encode judged by maps built from the
per-frame labels (``--judge-labels-root``), and prints psnr_roi / psnr_nonroi BD-rate against the
plain baseline, the share of the per-frame gain each source reaches, and build-maps seconds per
frame next to encode seconds per frame.
"""
from __future__ import annotations

import _checkout  # noqa: F401  (this checkout's roienc, not an installed copy)

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench_tradeoff import real_root


def main(argv: list[str] | None = None) -> int:
    from roienc.encode import RatePoint
    from roienc.executor import ExecutorSpec
    from roienc.importance import ImportanceParams
    from roienc.maps import QPParams
    from roienc.sweep import run_sweep

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root")
    ap.add_argument("--run")
    ap.add_argument("--crf", default="24,28,32,36")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--speed", type=float, default=10.0, help="ego speed (m/s): the root has no vehicle JSON")
    ap.add_argument("--block-size", type=int, default=QPParams().block_size)
    ap.add_argument("--block-stat", default=QPParams().block_stat)
    ap.add_argument("--delta", type=int, default=QPParams().delta)
    ap.add_argument("--background", type=int, default=QPParams().background)
    ap.add_argument("--floor", type=float, default=QPParams().floor)
    ap.add_argument("--rate-budget", default=str(QPParams().rate_budget),
                    help="percent, or 'off' for the fixed mapping (as build-maps --rate-budget)")
    ap.add_argument("--sources", default="hold,propagate,per-frame")
    ap.add_argument("--label-every", metavar="K,K,..",
                    help="add the sources every-K (per-frame labels of every K-th frame only); "
                         "K=1 is per-frame")
    ap.add_argument("--flow-scale", type=float, default=None,
                    help="propagation: scale of the frames the flow is computed on (default: the module's)")
    ap.add_argument("--margin", type=int, default=None, help="propagation: base margin px (at 2048 wide)")
    ap.add_argument("--unseen-importance", type=float, default=None,
                    help="propagation: importance floor of pixels outside the annotated frame's view")
    ap.add_argument("--propagation", action="append", default=[], metavar="KEY=VALUE",
                    help="any propagation setting, as build-maps --propagation (sources propagate "
                         "and every-K)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, metavar="N",
                    help="threads of each encode (roienc sweep --threads; default: the encoder's own "
                         "choice): the bytes, and so the figures' last decimals, depend on it")
    args = ap.parse_args(argv)

    root = real_root(args.root)
    if root is None:
        return 0
    run = Path(args.run or tempfile.mkdtemp(prefix="roienc_bench_seq_"))
    labels_pred = root / "labels_pred"
    rates = [RatePoint("crf", float(c)) for c in args.crf.split(",")]
    qp = QPParams(block_size=args.block_size, block_stat=args.block_stat, delta=args.delta,
                  background=args.background, floor=args.floor,
                  rate_budget=None if args.rate_budget == "off" else float(args.rate_budget))
    rows = []
    sources = [x for x in args.sources.split(",") if x]
    every = [int(k) for k in args.label_every.split(",")] if args.label_every else []
    for k in every:
        name = "per-frame" if k == 1 else f"every-{k}"
        if name not in sources:
            sources.append(name)
    used: dict[str, dict[str, int]] = {}
    for source in sources:
        opts = dict(importance=ImportanceParams(), qp=qp, speed=args.speed)
        if source == "per-frame":
            opts["labels_root"] = str(labels_pred)
        elif source.startswith("every-"):
            opts["labels_root"] = str(labels_pred)
            opts["label_every"] = int(source[len("every-"):])
        elif source == "tracked":
            opts["labels_root"] = str(tracked_labels(root, run / "tracked_labels"))
        elif source.startswith("frames-"):
            picks = sorted({int(x) for x in source[len("frames-"):].split(".")})
            opts["labels_root"] = str(frame_subset_labels(root, run / f"{source}_labels", picks))
        elif source.startswith("reachable-"):
            k = int(source[len("reachable-"):])
            opts["labels_root"] = str(tracked_labels(root, run / f"reachable_{k}_labels", k))
        else:
            opts["label_source"] = source
        if (source == "propagate" or source.startswith(("every-", "frames-"))) and (
                args.flow_scale is not None or args.margin is not None
                or args.unseen_importance is not None or args.propagation):
            from dataclasses import replace

            from roienc.propagate import PropagationParams
            p = PropagationParams.from_settings(args.propagation)
            p = replace(p, scale=args.flow_scale if args.flow_scale is not None else p.scale,
                        margin_px=args.margin if args.margin is not None else p.margin_px,
                        unseen_importance=(args.unseen_importance if args.unseen_importance
                                           is not None else p.unseen_importance))
            opts["propagation"] = p
        t0 = time.perf_counter()
        res = run_sweep(root, run, split="train", modes=("baseline", "roi"), rates=rates,
                        map_options=opts, preset=args.preset, judge_labels_root=labels_pred,
                        settings_reference=False, progress=False, argv=[],
                        executor=ExecutorSpec("local", args.workers), threads=args.threads)
        wall = time.perf_counter() - t0
        used[source] = labelled_frames(run, opts)
        bd = res.bdrate[(res.bdrate["clip"] != "mean") & (res.bdrate["mode"] == "roi")
                        & (res.bdrate["reference"] == "baseline")]
        roi = res.results[res.results["mode"] == "roi"]
        enc_s = roi["encode_seconds"].sum() / roi["frames"].sum()
        for clip, g in bd.groupby("clip"):
            m = g.set_index("metric")["bd_rate_pct"]
            rows.append(dict(source=source, clip=clip, psnr_roi=m.get("psnr_roi"),
                             psnr_nonroi=m.get("psnr_nonroi"), psnr_y=m.get("psnr_y"),
                             encode_s_per_frame=enc_s, sweep_s=wall))
    df = pd.DataFrame(rows)
    mean = df.groupby("source", sort=False)[["psnr_roi", "psnr_nonroi", "psnr_y"]].mean()
    print(f"run: {run}; CRF {args.crf}, preset {args.preset}, {qp}; judged by per-frame labels "
          f"({labels_pred}); BD-rate % vs plain libx265 (negative = fewer bits)")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\nmean over snippets:")
    print(mean.to_string(float_format=lambda v: f"{v:.2f}"))
    if "per-frame" in mean.index:
        ref = df[df["source"] == "per-frame"].set_index("clip")["psnr_roi"]
        print("\nshare of the per-frame-labels psnr_roi gain reached (1.0 = as good as per-frame labels):")
        for source in mean.index:
            s = df[df["source"] == source].set_index("clip")["psnr_roi"] / ref
            print(f"  {source:10s} " + "  ".join(f"{c}: {v:.2f}" for c, v in s.items())
                  + f"  mean of snippets: {mean.loc[source, 'psnr_roi'] / mean.loc['per-frame', 'psnr_roi']:.2f}")
    ceil = [x for x in mean.index if x.startswith("reachable-") or x == "tracked"]
    for c in ceil:
        src = "propagate" if c == "tracked" else f"every-{c[len('reachable-'):]}"
        if src in mean.index:
            ref = df[df["source"] == c].set_index("clip")["psnr_roi"]
            s = df[df["source"] == src].set_index("clip")["psnr_roi"] / ref
            print(f"share of the {c} ceiling's gain reached by {src}: "
                  + "  ".join(f"{cl}: {v:.2f}" for cl, v in s.items()))
    if every:
        print("\nlabelled frames used per snippet (files build-maps read; the others propagated):")
        for source in sources:
            if source in used and (source == "per-frame" or source.startswith(("every-", "frames-"))):
                print(f"  {source:10s} " + "  ".join(f"{c}: {v}" for c, v in used[source].items()))
    prop = propagation_seconds_per_frame(root)
    enc = df["encode_s_per_frame"].mean()
    print(f"\npropagation s/frame (flow + warps, PNG reading excluded, 1 process): {prop:.3f}; "
          f"encode s/frame (roi, preset {args.preset}): {enc:.3f}; ratio {prop / enc:.2f}")
    for k in every:
        if k > 1:
            pk = propagation_seconds_per_frame(root, k)
            print(f"  from every {k}th frame's labels: {pk:.3f} s/frame, ratio {pk / enc:.2f}")
    return 0


def labelled_frames(run: Path, opts: dict) -> dict[str, int]:
    """Per snippet, the frames whose maps came from their own labels file (the sweep's maps
    manifest of these options, found by their params.json)."""
    import json

    want = opts.get("label_every", 1)
    for params in sorted((run / "maps").glob("*/params.json")):
        p = json.loads(params.read_text())
        lab = p.get("labels", {})
        if (lab.get("label_source") == "labels-root" and lab.get("label_every", 1) == want
                and p.get("labels_root") == opts.get("labels_root")):
            man = pd.read_csv(params.parent / "maps_manifest.csv")
            man = man[man["source"] == "sequence"]
            own = man["label_source"].isin(["labels-root", "gtFine"])
            return {c: int(g.sum()) for c, g in own.groupby(man["frame_id"].str.rsplit("_", n=1).str[0])}
    return {}


def tracked_labels(root: Path, out: Path, every: int | None = None) -> Path:
    """Per-frame predicted labels with the objects frame 19 does not show made static (see the
    module docstring); written once under ``out`` in the labels_pred layout. With ``every`` K:
    the objects no labelled frame of ``--label-every K`` shows (none of its pixels near the
    propagation, without margin, of those frames' labels_pred, nor on a labelled frame's own
    dynamic pixels): the ceiling of propagation from those frames."""
    import cv2
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_propagate_masks import known_masks

    from roienc.dataset import find_sequence_frames, read_instance_ids, read_label_ids, read_rgb
    from roienc.labels import DYNAMIC, load_class_groups

    lut = load_class_groups().group_lut()
    is_dyn = lut == DYNAMIC
    building = 11
    refs = find_sequence_frames(root, "train")
    for snip in sorted({r.snippet for r in refs}):
        group = [r for r in refs if r.snippet == snip]
        dst = out / "train" / group[0].city
        if all((dst / f"{r.frame_id}_labelIds.png").is_file() for r in group):
            continue
        dst.mkdir(parents=True, exist_ok=True)
        ann = next(i for i, r in enumerate(group) if r.frame_id == r.annotated)
        if every:
            keys = keyframe_labels(root, group, ann, every, lut)
        else:
            inst = read_instance_ids(group[ann].instances) if group[ann].instances else None
            keys = {ann: (read_label_ids(group[ann].labels), inst)}
        src = root / "labels_pred" / "train" / group[0].city
        pred = [(read_label_ids(src / f"{r.frame_id}_labelIds.png").copy(),
                 read_instance_ids(src / f"{r.frame_id}_instanceIds.png").copy()) for r in group]
        known = known_masks(lambda k: read_rgb(group[k].image), keys,
                            lambda k: is_dyn[pred[k][0]], lut, len(group))
        for k, r in enumerate(group):
            pl, pi = pred[k]
            unknown = is_dyn[pl] & ~known[k]
            pl[unknown], pi[unknown] = building, building
            cv2.imwrite(str(dst / f"{r.frame_id}_labelIds.png"), pl)
            cv2.imwrite(str(dst / f"{r.frame_id}_instanceIds.png"), pi.astype(np.uint16))
    return out


def frame_subset_labels(root: Path, out: Path, picks: list[int]) -> Path:
    """labels_pred's labelIds/instanceIds of the frames at positions ``picks`` of each snippet
    (0 = its first frame), copied under ``out`` in the labels_pred layout (written once)."""
    import shutil

    from roienc.dataset import find_sequence_frames

    refs = find_sequence_frames(root, "train")
    for snip in sorted({r.snippet for r in refs}):
        group = [r for r in refs if r.snippet == snip]
        bad = [i for i in picks if not 0 <= i < len(group)]
        if bad:
            raise SystemExit(f"frames-...: position {bad[0]} outside 0..{len(group) - 1} ({snip})")
        src = root / "labels_pred" / "train" / group[0].city
        dst = out / "train" / group[0].city
        dst.mkdir(parents=True, exist_ok=True)
        for i in picks:
            for kind in ("labelIds", "instanceIds"):
                name = f"{group[i].frame_id}_{kind}.png"
                if not (dst / name).is_file():
                    shutil.copyfile(src / name, dst / name)
    return out


def keyframe_labels(root: Path, group, ann: int, every: int, lut) -> dict:
    """labels_pred of the snippet's frames i with (i - ann) % every == 0, with instances as
    build-maps --label-every gives them (every dynamic component an object)."""
    from roienc.dataset import read_instance_ids, read_label_ids
    from roienc.maps import object_instances

    lp = root / "labels_pred" / "train" / group[0].city
    keys = {}
    for i, r in enumerate(group):
        if (i - ann) % every == 0:
            lab = read_label_ids(lp / f"{r.frame_id}_labelIds.png")
            ins = read_instance_ids(lp / f"{r.frame_id}_instanceIds.png")
            keys[i] = (lab, object_instances(lab, ins, lut))
    return keys


def propagation_seconds_per_frame(root: Path, every: int | None = None) -> float:
    """Seconds per frame of :func:`roienc.propagate.propagate_snippet` over every snippet; with
    ``every`` K of :func:`roienc.propagate.propagate_keyframes` from every K-th frame's
    labels_pred (as build-maps --label-every K gives it: instances from object_instances)."""

    from roienc.dataset import find_sequence_frames, read_instance_ids, read_label_ids, read_rgb
    from roienc.labels import load_class_groups
    from roienc.propagate import propagate_keyframes, propagate_snippet

    refs = find_sequence_frames(root, "train")
    lut = load_class_groups().group_lut()
    total, frames = 0.0, 0
    for snip in sorted({r.snippet for r in refs}):
        group = [r for r in refs if r.snippet == snip]
        ann = next(i for i, r in enumerate(group) if r.frame_id == r.annotated)
        imgs = [read_rgb(r.image) for r in group]
        if every:
            keys = keyframe_labels(root, group, ann, every, lut)
            t0 = time.perf_counter()
            propagate_keyframes(imgs, keys, None, lut)
            total += time.perf_counter() - t0
            frames += len(group)
            del imgs
            continue
        labels = read_label_ids(group[ann].labels)
        inst = read_instance_ids(group[ann].instances) if group[ann].instances else None
        t0 = time.perf_counter()
        propagate_snippet(imgs, ann, labels, inst, None, lut)
        total += time.perf_counter() - t0
        frames += len(group)
        del imgs
    return total / max(frames, 1)


if __name__ == "__main__":
    sys.exit(main())
