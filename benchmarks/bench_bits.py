"""Where the rate budget's bits go: the gap between the bound and what the default mapping reaches,
per clip, split into parts each measured by an encode that removes it.

    python3 benchmarks/bench_bits.py [--root ROOT] [--crop] [--run RUN] [--crf 24,28,32,36]
                                     [--preset fast] [--speed 10] [--codec hevc|h264]
                                     [--parts all|bound]

On the three real aachen snippets of ``../shared/cityscapes_sequences`` (a root is built with its
``make_root.py`` when ``--root`` is absent; ``--crop`` runs on their 1024x512 crops of
``benchmarks/_crop.py`` instead, the stand-in for busy scenes; skips with a message when the folder
is missing). Each frame's predicted labels drive the encoder and judge it, as in
``bench_tradeoff.py``; BD-rates (akima) against the plain encoder of the same build and settings.

Per clip:

- **default**: the default mapping's psnr_roi / psnr_nonroi / psnr_y BD-rates and its file growth
  ``X`` at the same CRF (mean over the CRFs).
- **bound**: ``(1+X)/(1+X/f) - 1`` (docs/results.md), the psnr_roi BD-rate of an ideal encoder
  that spends all of ``X`` on the ROI's pixels, ``f`` the ROI's share of the plain encode's bits.
  ``f_px``: the judged ROI pixels' share, estimated with the rate model's weights (luma activity of
  8x8 cells; the model predicts file growth within a few percent on these snippets). ``f_blk``:
  the share of the 32-px blocks that hold ROI pixels, **measured**: the file growth of -2 QP on
  those blocks only divided by the growth of the plain encode at CRF - 2 (every block -2).
  ``bound_blk`` is what an ideal encoder limited to x265's 32-px quantisation groups reaches: the
  difference to ``bound_px`` is the part that goes to **blocks the ROI only partly covers**.
- **rate model**: the measured file growth per frame against the growth the model predicted
  (mean absolute error, points) and the encode with the budget corrected by the clip's measured
  over- or under-spend (``budget * 9 / measured``): what a perfect model would give.
- **encoder**: x265's own redistribution: the same mapping with cu-tree off in both the plain
  and the ROI encode (``no-cutree``); the default maps on reference pictures only (``refs only``)
  and on non-reference pictures only (``non-refs only``), the picture types read from the plain
  encode's NAL unit types.
- **cap**: the delta cap raised from 6 to 10 (``cap 10``).
- other mappings, for the record: floor 0.5, block statistic mean, budget 14, and budget 18 on
  reference pictures only (about the default's file size).

Encodes and evaluations go through roienc's sweep (one run folder per variant under ``--run``, so
a rerun reuses what is unchanged) and, for the per-picture maps, ``roienc encode`` / ``roienc
evaluate`` on a copy of the default maps.
"""
from __future__ import annotations

import _checkout  # noqa: F401  (this checkout's roienc, not an installed copy)

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench_tradeoff import parse_mapping, real_root

METRICS = ["psnr_roi", "psnr_nonroi", "psnr_y", "psnr_weighted"]
DEFAULT = "block_stat=submax,delta=6,background=0,rate_budget=9,floor=0.1"
# -2 QP on every 32-px block that holds a pixel of importance >= 0.5 (the judged ROI of the same
# labels): gamma ~0 makes the strength of any block above the floor 1
ROI_BLOCKS_2 = "rate_budget=off,block_stat=max,delta=2,background=0,floor=0.49,gamma=0.001"
NONREF_NAL = {0, 2, 4, 6, 8, 10, 12, 14}        # HEVC sub-layer non-reference VCL NAL unit types


def sweep(root: Path, out: Path, spec: str, crfs: list[float], preset: str, speed: float,
          codec: str = "hevc", params: dict | None = None, modes=("baseline", "roi")):
    """One roienc sweep of ``spec`` into ``out`` (encoder ``params`` added to the packaged config)."""
    from roienc.encode import RatePoint
    from roienc.executor import ExecutorSpec
    from roienc.importance import ImportanceParams
    from roienc.sweep import run_sweep

    out.mkdir(parents=True, exist_ok=True)
    config = None
    if params:
        base = (_checkout.REPO / "encoder_configs" / f"{codec}.toml").read_text()
        config = out / f"{codec}.toml"
        config.write_text(base.rstrip() + "\n" + "".join(f'{k} = "{v}"\n' for k, v in params.items()))
    labels = root / "labels_pred"
    return run_sweep(root, out, split="train", codec=codec, modes=modes,
                     rates=[RatePoint("crf", c) for c in crfs], preset=preset,
                     judge_labels_root=labels, config=str(config) if config else None,
                     map_options=dict(importance=ImportanceParams(), qp=parse_mapping(spec),
                                      speed=speed, labels_root=str(labels)),
                     settings_reference=False, progress=False, argv=[],
                     executor=ExecutorSpec("local", 2))


def bd_rows(plain: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Per clip: BD-rates of ``test`` against ``plain`` (results rows) and the size at equal CRF."""
    from roienc.bdrate import bd_pair

    rows = []
    for clip, g in test.groupby("clip"):
        p = plain[plain["clip"] == clip].sort_values("rate_value")
        g = g.sort_values("rate_value")
        row = {"clip": clip}
        for m in METRICS:
            row[m] = bd_pair(p["kbps"].values, p[m].values, g["kbps"].values, g[m].values)[0]
        same = p.set_index("rate_value")["bytes"].reindex(g["rate_value"]).values
        row["size"] = float(100 * (g["bytes"].values / same - 1).mean())
        rows.append(row)
    return pd.DataFrame(rows).set_index("clip")


def roi_rows(res) -> pd.DataFrame:
    r = res.results
    return r[r["mode"] == "roi"]


def plain_rows(res) -> pd.DataFrame:
    r = res.results
    return r[r["maps"] == "plain"]


def nal_types(mp4: Path) -> list[int]:
    """The first VCL NAL unit type of every picture of ``mp4``, in display order."""
    import av

    with av.open(str(mp4)) as c:
        s = c.streams.video[0]
        found = []
        for p in c.demux(s):
            if p.size == 0:
                continue
            b, i, t = bytes(p), 0, None
            while i + 4 <= len(b):
                n = int.from_bytes(b[i:i + 4], "big")
                if t is None and (b[i + 4] >> 1) & 0x3F < 32:
                    t = (b[i + 4] >> 1) & 0x3F
                i += 4 + n
            found.append((p.pts, t))
    return [t for _, t in sorted(found)]


def frame_bytes(mp4: Path) -> np.ndarray:
    """Bytes of every picture of ``mp4``, in display order (roienc's reader: PyAV's demuxer)."""
    from roienc.probe import frame_sizes_demuxed

    return np.array(frame_sizes_demuxed(mp4), np.float64)


def maps_dir(res, kind: str = "roi") -> Path:
    return next(p for p in (res.run_dir / "maps").iterdir() if p.is_dir())


def sidecar_mp4(row) -> Path:
    return Path(row["sidecar"]).with_suffix(".mp4")


def rate_model_error(res) -> pd.DataFrame:
    """Per clip: mean |measured - predicted| per-frame growth (points) over the CRFs, and the
    measured growth of the whole file against the asked budget."""
    r = res.results
    maps = maps_dir(res)
    out = {}
    for clip, g in r[r["mode"] == "roi"].groupby("clip"):
        errs = []
        for _, row in g.iterrows():
            plain = r[(r["maps"] == "plain") & (r["clip"] == clip) & (r["rate_value"] == row["rate_value"])]
            a = frame_bytes(sidecar_mp4(row))
            b = frame_bytes(sidecar_mp4(plain.iloc[0]))
            pred = np.array([json.loads(p.read_text())["predicted_pct"] for p in
                             sorted(maps.glob(f"train/*/{clip}_*_rate.json"))])
            errs.append(np.abs(100 * (a / b - 1) - pred).mean())
        out[clip] = {"frame_err_pts": float(np.mean(errs))}
    return pd.DataFrame(out).T


def per_picture_maps(res, root: Path, run: Path, name: str, keep_refs: bool, crfs, preset,
                     speed=None) -> pd.DataFrame:
    """The default maps with the offsets of one kind of picture set to 0 (picture types of the
    plain encode at the middle CRF), encoded and judged like the sweep's: its results rows."""
    r = res.results
    src = maps_dir(res)
    out = run / name
    if (out / "results.csv").is_file():
        return pd.read_csv(out / "results.csv")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out / "maps", ignore=shutil.ignore_patterns(".*lock"))
    mid = sorted(r["rate_value"].unique())[len(r["rate_value"].unique()) // 2]
    plain = r[(r["maps"] == "plain") & (r["rate_value"] == mid)]
    manifest = json.loads((res.run_dir / "sweep.json").read_text())
    base_qp = int(manifest["map_options"].get("qp", {}).get("base_qp", 32))
    for _, row in plain.iterrows():
        for i, t in enumerate(nal_types(sidecar_mp4(row))):
            q = next((out / "maps").glob(f"train/*/{row['clip']}_{i:06d}_qp_map.npy"))
            if (t in NONREF_NAL) == keep_refs:
                g = np.load(q)
                g[:] = base_qp
                np.save(q, g)
    env = {**os.environ, "PYTHONPATH": str(_checkout.REPO)}
    cli = [sys.executable, "-m", "roienc.cli"]
    judge = next((res.run_dir / "judge_maps").iterdir())
    subprocess.run(cli + ["encode", "--codec", "hevc", "--cityscapes-root", str(root), "--split",
                          "train", "--maps", str(out / "maps"), "--mode", "roi", "--crf",
                          ",".join(f"{c:g}" for c in crfs), "--preset", preset, "--out",
                          str(out / "enc"), "--jobs", "2", "--no-progress"], check=True, env=env)
    subprocess.run(cli + ["evaluate", "--encoded", str(out / "enc"), "--maps", str(judge),
                          "--report", str(out / "results.csv"), "--workers", "2", "--no-progress"],
                   check=True, env=env)
    return pd.read_csv(out / "results.csv")


def f_pixels(res, root: Path) -> dict[str, float]:
    """Per clip: the judged ROI pixels' share of the plain encode's bits, by the rate model's
    weights ((luma std of 8x8 cells + 1), summed over the cells' ROI pixels)."""
    from roienc.fileio import read_png
    from roienc.ratemodel import ACTIVITY_CELL, ACTIVITY_FLOOR, luma_activity

    judge = next((res.run_dir / "judge_maps").iterdir())
    out = {}
    for clip in sorted(res.results["clip"].unique()):
        num = den = 0.0
        for f in sorted(judge.glob(f"train/*/{clip}_*_importance.np[yz]")):
            fid = f.name.split("_importance")[0]
            imp = np.load(f)
            imp = imp[imp.files[0]] if hasattr(imp, "files") else imp
            src = next(root.glob(f"leftImg8bit_sequence/train/*/{fid}_leftImg8bit.png"))
            w = luma_activity(read_png(src, "frame", rgb=True)).astype(np.float64) + ACTIVITY_FLOOR
            c = ACTIVITY_CELL
            m = (imp >= 0.5).astype(np.float64)
            h, wd = m.shape
            gh, gw = w.shape
            pad = np.zeros((gh * c, gw * c))
            pad[:h, :wd] = m
            cover = pad.reshape(gh, c, gw, c).mean(axis=(1, 3))
            num += float((w * cover).sum())
            den += float(w.sum())
        out[clip] = num / den
    return out


def bound(x: float, f: float) -> float:
    """psnr_roi BD-rate (%) of the ideal encoder: file ``x`` (fraction) larger, ROI share ``f``."""
    return 100 * ((1 + x) / (1 + x / f) - 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root")
    ap.add_argument("--crop", action="store_true", help="the snippets' 1024x512 crops (benchmarks/_crop.py)")
    ap.add_argument("--run")
    ap.add_argument("--crf", default="24,28,32,36")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--codec", choices=["hevc", "h264"], default="hevc",
                    help="libx265 (every part) or libx264 (no per-picture-type part: HEVC NAL types)")
    ap.add_argument("--parts", choices=["all", "bound"], default="all",
                    help="bound: only the default, f_px, f_blk and the bounds (3 sweeps of 8)")
    args = ap.parse_args(argv)

    root = real_root(args.root)
    if root is None:
        return 0
    if args.crop:
        crop = root.parent / (root.name + "_crop")
        if not crop.is_dir():
            subprocess.run([sys.executable, str(_checkout.REPO / "benchmarks" / "_crop.py"), str(root),
                            str(crop)], check=True)
        root = crop
    run = Path(args.run or tempfile.mkdtemp(prefix="roienc_bench_bits_"))
    crfs = [float(c) for c in args.crf.split(",")]
    t0 = time.perf_counter()

    def step(name: str) -> None:
        print(f"  [{time.perf_counter() - t0:6.0f} s] {name}", flush=True)

    kw = dict(crfs=crfs, preset=args.preset, speed=args.speed, codec=args.codec)
    default = sweep(root, run / "default", DEFAULT, **kw)
    plain = plain_rows(default)
    table = bd_rows(plain, roi_rows(default)).add_prefix("default ")
    step("default")
    # f_blk: -2 QP on the ROI's blocks vs CRF - 2 everywhere
    blocks = sweep(root, run / "roi_blocks_2", ROI_BLOCKS_2, **kw)
    lower = sweep(root, run / "crf_minus_2", DEFAULT, modes=("baseline",),
                  **{**kw, "crfs": [c - 2 for c in crfs]})
    step("f_blk encodes")
    g_roi = bd_rows(plain, roi_rows(blocks))["size"]
    lo = plain_rows(lower).assign(rate_value=lambda d: d["rate_value"] + 2)
    g_all = bd_rows(plain, lo)["size"]
    table["f_blk"] = g_roi / g_all
    table["f_px"] = pd.Series(f_pixels(default, root))
    x = table["default size"] / 100
    table["bound_px"] = [bound(a, f) for a, f in zip(x, table["f_px"])]
    table["bound_blk"] = [bound(a, f) for a, f in zip(x, table["f_blk"])]
    table["share of bound_px"] = table["default psnr_roi"] / table["bound_px"]
    table["share of bound_blk"] = table["default psnr_roi"] / table["bound_blk"]
    table = table.join(rate_model_error(default))
    variants: dict[str, pd.DataFrame] = {}
    if args.parts == "bound":
        return report(args, root, run, table, variants)
    # a budget corrected by the measured spend
    over = table["default size"] / 9.0
    corrected = f"{DEFAULT.replace('rate_budget=9', 'rate_budget=' + format(9 / over.mean(), '.2f'))}"
    res = sweep(root, run / "budget_corrected", corrected, **kw)
    variants[f"budget x{1 / over.mean():.2f}"] = bd_rows(plain, roi_rows(res))
    step("corrected budget")
    tree = {"hevc": "cutree", "h264": "mbtree"}[args.codec]
    res = sweep(root, run / f"no_{tree}", DEFAULT, params={tree: "0"}, **kw)
    variants[f"no-{tree} (vs plain no-{tree})"] = bd_rows(plain_rows(res), roi_rows(res))
    step(f"no-{tree}")
    for name, keep_refs in (("refs only", True), ("non-refs only", False)) if args.codec == "hevc" else ():
        rows = per_picture_maps(default, root, run, name.replace(" ", "_"), keep_refs, crfs, args.preset)
        variants[name] = bd_rows(plain, rows[rows["mode"] == "roi"])
        step(name)
    res = sweep(root, run / "cap10", DEFAULT.replace("delta=6", "delta=10"), **kw)
    variants["cap 10"] = bd_rows(plain, roi_rows(res))
    step("cap 10")
    # other mappings of the same maps, for the record: each within reach of one flag of roienc sweep
    for name, spec in (("floor 0.5", DEFAULT.replace("floor=0.1", "floor=0.5")),
                       ("block-stat mean", DEFAULT.replace("submax", "mean")),
                       ("budget 14", DEFAULT.replace("rate_budget=9", "rate_budget=14"))):
        res = sweep(root, run / name.replace(" ", "_"), spec, **kw)
        variants[name] = bd_rows(plain, roi_rows(res))
        step(name)
    if args.codec == "hevc":
        # references only, at about the default's file size: twice the budget on half the bits
        res = sweep(root, run / "budget_18", DEFAULT.replace("rate_budget=9", "rate_budget=18"), **kw)
        rows = per_picture_maps(res, root, run, "refs_only_budget_18", True, crfs, args.preset)
        variants["refs only, budget 18"] = bd_rows(plain, rows[rows["mode"] == "roi"])
        step("refs only, budget 18")
    return report(args, root, run, table, variants)


def report(args, root: Path, run: Path, table: pd.DataFrame, variants: dict) -> int:
    """Print the per-clip table and the variants; write them as CSV into ``run``."""
    fmt = lambda v: f"{v:+.1f}"       # noqa: E731
    crop = args.crop or (root / "crops.json").is_file()
    what = "crops (1024x512, real pixels)" if crop else "full frames"
    enc = {"hevc": "libx265", "h264": "libx264"}[args.codec]
    print(f"\nrun: {run}; {root} ({what}); {enc} preset {args.preset}, CRF {args.crf}, --speed "
          f"{args.speed:g}; per-frame predicted labels drive and judge; BD-rate % vs plain {enc}")
    cols = ["default psnr_roi", "default psnr_nonroi", "default psnr_y", "default psnr_weighted",
            "default size",
            "f_px", "f_blk", "bound_px", "bound_blk", "share of bound_px", "share of bound_blk",
            "frame_err_pts"]
    print(table[cols].to_string(float_format=lambda v: f"{v:+.1f}" if abs(v) >= 1 else f"{v:.3f}"))
    print("\nvariants (BD-rates %, size at equal CRF %):")
    rows = []
    for name, t in variants.items():
        for clip, r in t.iterrows():
            rows.append({"variant": name, "clip": clip, **r.to_dict()})
    v = pd.DataFrame(rows)
    print(v.to_string(index=False, float_format=fmt))
    table.to_csv(run / "bits.csv")
    v.to_csv(run / "bits_variants.csv", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
