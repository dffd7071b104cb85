"""The trade-off on real content, per snippet, and defaults chosen leave-one-out.

    python3 benchmarks/bench_tradeoff.py [--root ROOT] [--run RUN] [--codecs hevc,h264,vp9]
                                         [--crf 24,28,32,36] [--crf-vp9 30,36,42,48]
                                         [--preset fast] [--speed 10]
                                         [--mappings NAME=SPEC;NAME=SPEC...]

On the three real aachen snippets of ``../shared/cityscapes_sequences`` (a Cityscapes root is built
with its ``make_root.py`` when ``--root`` is absent; skips with a message when the folder is
missing), with each frame's own predicted labels driving the encoder **and** judging it (so only
the QP mapping is compared), for every candidate QP mapping and codec: psnr_roi / psnr_nonroi /
psnr_y / psnr_weighted BD-rate against the plain encoder of the same codec, preset and CRFs, and
the file size at the same CRF, per snippet, with the mean and the spread (max - min).

Then the choice of a default **without tuning on the content it is reported on**: for each snippet
in turn, the rule below picks a candidate on the other two snippets only, and that candidate's
figures on the held-out snippet are printed (leave-one-out). Rules:

- ``default``: the best mean psnr_roi among candidates with psnr_nonroi <= +8% and psnr_y <= +3%
  on every tuning snippet;
- ``neutral``: the best mean psnr_roi among candidates with |psnr_y| <= 1% on every tuning snippet.

A mapping SPEC is a comma list of QPParams fields, e.g. ``rate_budget=8,delta=9,floor=0.1``;
fields not given keep QPParams' defaults. Everything is one sweep per mapping into one run folder
per codec (the plain baseline and the judge maps are encoded and built once, reruns resume).
"""
from __future__ import annotations

import _checkout  # noqa: F401  (this checkout's roienc, not an installed copy)

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "cityscapes_sequences"
METRICS = ["psnr_roi", "psnr_nonroi", "psnr_y", "psnr_weighted"]

# candidates, every field explicit (QPParams' defaults may change): the fixed mappings the README
# measured, and rate budgets (delta and background are then caps) with the static classes'
# importance (0.1) as the floor of the ROI strength and 'submax' blocks (a block half covered by
# objects gets half the delta); the last ones let the background pay, for the 'neutral' rule
_FIXED = "rate_budget=off,block_stat=max,floor=0,background=0,delta="
_RATE = "block_stat=submax,floor=0.1,"
CANDIDATES = {
    "fixed max d3": _FIXED + "3",
    "fixed max d6 (old default)": _FIXED + "6",
    "rate 8, d<=6": _RATE + "delta=6,background=0,rate_budget=8",
    "rate 9, d<=6": _RATE + "delta=6,background=0,rate_budget=9",
    "rate 10, d<=6": _RATE + "delta=6,background=0,rate_budget=10",
    "rate 10, d<=7": _RATE + "delta=7,background=0,rate_budget=10",
    "rate 4, d<=6": _RATE + "delta=6,background=0,rate_budget=4",
    "rate 5, d<=6": _RATE + "delta=6,background=0,rate_budget=5",
    "rate 2, d<=6, bg<=2": _RATE + "delta=6,background=2,rate_budget=2",
    "rate 0, d<=6, bg<=2": _RATE + "delta=6,background=2,rate_budget=0",
    # lower caps spread a small budget over more blocks (smaller offsets buy more per bit): for
    # the 'neutral' rule
    "rate 5, d<=4": _RATE + "delta=4,background=0,rate_budget=5",
    "rate 6, d<=4": _RATE + "delta=4,background=0,rate_budget=6",
    "rate 4, d<=3": _RATE + "delta=3,background=0,rate_budget=4",
    # the budget concentrated on the nearest objects (strength squared): on content with many
    # objects of middling importance
    "rate 9, d<=6, gamma 2": _RATE + "delta=6,background=0,rate_budget=9,gamma=2",
}


def real_root(root: str | None) -> Path | None:
    """``--root`` as given, else a root built from the shared real snippets with their
    ``make_root.py``; None (said on stdout) when they are not on this machine."""
    if root:
        return Path(root)
    if not (SHARED / "make_root.py").is_file():
        print(f"skipped: {SHARED} not found (the real snippets are not on this machine)")
        return None
    made = Path(tempfile.mkdtemp(prefix="roienc_real_")) / "root"
    subprocess.run([sys.executable, str(SHARED / "make_root.py"), str(made)], check=True)
    return made


def parse_mapping(spec: str):
    """QPParams from ``field=value,...``."""
    from roienc.maps import QPParams

    kinds = {f.name: f.type for f in fields(QPParams)}
    over = {}
    for item in filter(None, (t.strip() for t in spec.split(","))):
        key, _, value = item.partition("=")
        if key not in kinds:
            raise SystemExit(f"unknown QP mapping field {key!r} in {spec!r}; one of {', '.join(kinds)}")
        kind = str(kinds[key])
        over[key] = (None if "None" in kind and value.lower() in ("off", "none") else value
                     if "str" in kind else int(value) if kind.startswith("int") else float(value))
    return replace(QPParams(), **over)


def per_snippet(res, codec: str, name: str) -> pd.DataFrame:
    """One row per snippet: BD-rates of the mapping's roi encode vs the plain baseline, and its
    file size at the same CRF relative to the baseline's (mean over the CRFs)."""
    bd = res.bdrate[(res.bdrate["clip"] != "mean") & (res.bdrate["mode"] == "roi")
                    & (res.bdrate["reference"] == "baseline")]
    table = bd.pivot_table(index="clip", columns="metric", values="bd_rate_pct")
    r = res.results
    key = ["clip", "rate_value"]
    plain = r[r["maps"] == "plain"].set_index(key)["bytes"]
    roi = r[(r["maps"] != "plain") & (r["mode"] == "roi")].set_index(key)["bytes"]
    size = (100 * (roi / plain.reindex(roi.index) - 1)).groupby("clip").mean()
    out = table.reindex(columns=METRICS).assign(bits_same_crf=size)
    out.insert(0, "mapping", name)
    out.insert(0, "codec", codec)
    return out.reset_index()


def choose(df: pd.DataFrame, clips: list[str], rule: str) -> str | None:
    """The candidate the rule picks on ``clips`` (see the module docstring)."""
    sub = df[df["clip"].isin(clips)]
    best, best_roi = None, float("inf")
    for name, g in sub.groupby("mapping", sort=False):
        if rule == "default":
            ok = (g["psnr_nonroi"] <= 8).all() and (g["psnr_y"] <= 3).all()
        else:
            ok = (g["psnr_y"].abs() <= 1).all()
        if ok and g["psnr_roi"].mean() < best_roi:
            best, best_roi = name, g["psnr_roi"].mean()
    return best


def main(argv: list[str] | None = None) -> int:
    from roienc.encode import RatePoint
    from roienc.executor import ExecutorSpec
    from roienc.importance import ImportanceParams
    from roienc.sweep import run_sweep

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root")
    ap.add_argument("--run")
    ap.add_argument("--codecs", default="hevc,h264")
    ap.add_argument("--crf", default="24,28,32,36")
    ap.add_argument("--crf-vp9", default="30,36,42,48",
                    help="CRFs of vp9 (libvpx's 0..63 scale); vp9 has no preset (the packaged "
                         "config's realtime settings)")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--speed", type=float, default=10.0, help="ego speed (m/s): the root has no vehicle JSON")
    ap.add_argument("--mappings", help="NAME=SPEC;NAME=SPEC... (default: the candidates in this file)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, metavar="N",
                    help="threads of each encode (roienc sweep --threads; default: the encoder's own "
                         "choice): the bytes, and so the figures' last decimals, depend on it")
    args = ap.parse_args(argv)

    root = real_root(args.root)
    if root is None:
        return 0
    run = Path(args.run or tempfile.mkdtemp(prefix="roienc_bench_tradeoff_"))
    labels_pred = root / "labels_pred"
    rates_of = {c: [RatePoint("crf", float(v)) for v in
                    (args.crf_vp9 if c == "vp9" else args.crf).split(",")]
                for c in args.codecs.split(",")}
    cands = CANDIDATES if not args.mappings else dict(
        item.split("=", 1) for item in args.mappings.split(";") if item.strip())
    cands = {name: parse_mapping(spec) for name, spec in cands.items()}

    rows = []
    t0 = time.perf_counter()
    for codec in args.codecs.split(","):
        for name, qp in cands.items():
            res = run_sweep(root, run / codec, split="train", codec=codec, modes=("baseline", "roi"),
                            rates=rates_of[codec], preset=None if codec == "vp9" else args.preset,
                            judge_labels_root=labels_pred,
                            map_options=dict(importance=ImportanceParams(), qp=qp, speed=args.speed,
                                             labels_root=str(labels_pred)),
                            settings_reference=False, progress=False, argv=[],
                            executor=ExecutorSpec("local", args.workers), threads=args.threads)
            rows.append(per_snippet(res, codec, name))
            print(f"  [{time.perf_counter() - t0:6.0f} s] {codec} {name}: done", flush=True)
    df = pd.concat(rows, ignore_index=True)
    df.to_csv(run / "tradeoff.csv", index=False)
    fmt = lambda v: f"{v:+.1f}"       # noqa: E731
    print(f"\nrun: {run}; CRF {args.crf} (vp9: {args.crf_vp9}), preset {args.preset} (vp9: the "
          f"config's realtime cpu-used), --speed {args.speed:g}; per-frame "
          f"predicted labels drive and judge ({labels_pred}); BD-rate % vs the plain encoder of "
          "the same codec (negative = fewer bits); bits_same_crf: file size vs the plain encode "
          "at the same CRF, %")
    for codec, g in df.groupby("codec", sort=False):
        print(f"\n== {codec}: per snippet")
        print(g.drop(columns="codec").to_string(index=False, float_format=fmt))
        agg = g.groupby("mapping", sort=False)[METRICS + ["bits_same_crf"]]
        summary = agg.mean().join(agg.agg(lambda s: s.max() - s.min()).add_suffix(" spread"))
        print(f"\n== {codec}: mean over snippets and spread (max - min)")
        print(summary[["psnr_roi", "psnr_nonroi", "psnr_y", "psnr_weighted", "bits_same_crf",
                       "psnr_roi spread", "psnr_nonroi spread", "psnr_y spread"]]
              .to_string(float_format=fmt))
        clips = sorted(g["clip"].unique())
        for rule in ("default", "neutral"):
            print(f"\n== {codec}: leave-one-out, rule '{rule}' (chosen on the other two snippets, "
                  "reported on the held-out one)")
            for held in clips:
                pick = choose(g, [c for c in clips if c != held], rule)
                if pick is None:
                    print(f"  {held}: no candidate meets the rule on the other two")
                    continue
                r = g[(g["mapping"] == pick) & (g["clip"] == held)].iloc[0]
                print(f"  {held}: chose '{pick}' -> " + "  ".join(
                    f"{m} {r[m]:+.1f}%" for m in METRICS))
            pick = choose(g, clips, rule)
            print(f"  in-sample (all three): '{pick}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
