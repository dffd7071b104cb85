"""Disk and time of README's sweep under the content-addressed store (issue 29).

    python3 benchmarks/bench_store.py ROOT [--out DIR] [--compare OLD_RUN] [--speed 10]
        [--judge-labels-root ROOT/labels_pred] [--crf 24,28,32,36] [--skip-build-maps]

ROOT: a Cityscapes root with snippets (e.g. the one ../shared/cityscapes_sequences/make_root.py
writes: three real 30-frame 2048x1024 aachen snippets, split train). Runs, in this process:

1. README's sweep (``--split train --cities aachen --speed 10 --crf 24,28,32,36 --preset fast
   --judge-labels-root LABELS``) into OUT/run, with its time split into maps (build + derive),
   encodes, evaluations and the rest; the encodes it made and whether any two bitstreams are
   byte-identical; the disk of OUT/run besides the videos, per frame;
2. the same command again (unchanged inputs): its wall time, and again with an empty digest
   cache (every input read and hashed anew);
3. README's step 1 (``build-maps ... --sequences``) into OUT/maps: wall time and disk per frame;
   the digests of every input file of those frames, cold (the share of a fresh build-maps they
   cost);
4. with ``--compare OLD_RUN`` (a run folder of the same command made by another version): how
   many encodes are byte-identical (mp4 sha256) and the largest difference of results.csv's
   figures.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _checkout  # noqa: F401  (this checkout's roienc, not an installed copy)

import pandas as pd

from roienc import store, sweep as sweep_mod
from roienc.cli import main as cli

VIDEO = (".mp4", ".ivf", ".mkv", ".hevc")


def du(folder: Path, skip_video: bool = True) -> int:
    """Bytes of the files under ``folder`` (hard links counted once), videos left out."""
    seen, total = set(), 0
    for p in folder.rglob("*"):
        if not p.is_file() or (skip_video and p.suffix in VIDEO):
            continue
        st = p.stat()
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        total += st.st_blocks * 512
    return total


def frames_of(run: Path) -> int:
    man = next((run / "maps").glob("*/maps_manifest.csv"))
    return len(pd.read_csv(man))


class Timers:
    """Wall seconds spent in the sweep's stages (its module-level callees wrapped)."""

    STAGES = {"build_maps": "maps", "derive_maps": "maps", "encode_many": "encodes",
              "evaluate": "evaluations"}

    def __init__(self) -> None:
        self.t = {v: 0.0 for v in self.STAGES.values()}
        self.encodes: list[dict] = []
        self._orig = {}

    def __enter__(self) -> "Timers":
        for name, stage in self.STAGES.items():
            fn = getattr(sweep_mod, name)
            self._orig[name] = fn

            def timed(*a, _fn=fn, _stage=stage, _name=name, **kw):
                t0 = time.perf_counter()
                try:
                    out = _fn(*a, **kw)
                finally:
                    self.t[_stage] += time.perf_counter() - t0
                if _name == "encode_many":
                    self.encodes += out
                return out
            setattr(sweep_mod, name, timed)
        return self

    def __exit__(self, *exc) -> None:
        for name, fn in self._orig.items():
            setattr(sweep_mod, name, fn)


def run_sweep(root: Path, out: Path, args) -> tuple[float, Timers]:
    argv = ["sweep", "--cityscapes-root", str(root), "--split", args.split, "--cities", args.city,
            "--speed", str(args.speed), "--crf", args.crf, "--preset", "fast",
            "--judge-labels-root", str(args.judge_labels_root), "--out", str(out), "--no-progress"]
    with Timers() as tm, contextlib.redirect_stdout(io.StringIO()):     # the sweep's tables
        t0 = time.perf_counter()
        rc = cli(argv)
        wall = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"sweep failed (exit {rc})")
    return wall, tm


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--compare", type=Path, default=None, help="a run folder of another version")
    ap.add_argument("--split", default="train")
    ap.add_argument("--city", default="aachen")
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--crf", default="24,28,32,36")
    ap.add_argument("--judge-labels-root", type=Path, default=None)
    ap.add_argument("--skip-build-maps", action="store_true", help="leave out part 3")
    args = ap.parse_args()
    args.judge_labels_root = args.judge_labels_root or args.root / "labels_pred"
    work = args.out or Path(tempfile.mkdtemp(prefix="bench_store-"))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    os.environ["ROIENC_DIGEST_CACHE"] = str(work / "digests.sqlite3")
    run = work / "run"

    wall, tm = run_sweep(args.root, run, args)
    n = frames_of(run)
    made = [e for e in tm.encodes if not e.get("skipped_existing")]
    mp4s = sorted(run.rglob("*.mp4"))
    digests = [sha(p) for p in mp4s]
    rest = wall - sum(tm.t.values())
    print(f"README's sweep on {args.root} ({n} frames): {wall:.1f} s wall")
    for stage, s in tm.t.items():
        print(f"  {stage:12s} {s:7.1f} s  ({100 * s / wall:4.1f}%)")
    print(f"  {'rest':12s} {rest:7.1f} s  ({100 * rest / wall:4.1f}%): params, BD-rates, plots, report")
    print(f"  wall / (maps + encodes + evaluations) = {wall / sum(tm.t.values()):.3f}")
    print(f"  encodes made: {len(made)}; mp4 files: {len(mp4s)}, distinct bitstreams: {len(set(digests))}")
    disk = du(run)
    video = sum(p.stat().st_size for p in mp4s)
    print(f"  disk of run/ besides videos: {disk / 1e6:.1f} MB = {disk / n / 1e6:.3f} MB a frame "
          f"(videos {video / 1e6:.1f} MB)")
    for sub in ("maps", "judge_maps", "enc", "eval"):
        if (run / sub).is_dir():
            print(f"    {sub:11s} {du(run / sub) / n / 1e6:.3f} MB a frame")

    wall2, tm2 = run_sweep(args.root, run, args)
    again = [e for e in tm2.encodes if not e.get("skipped_existing")]
    print(f"unchanged rerun: {wall2:.1f} s ({len(again)} encodes made)")
    os.environ["ROIENC_DIGEST_CACHE"] = str(work / "digests-cold.sqlite3")
    wall3, _ = run_sweep(args.root, run, args)
    print(f"unchanged rerun, empty digest cache: {wall3:.1f} s")

    if not args.skip_build_maps:
        maps = work / "maps"
        os.environ["ROIENC_DIGEST_CACHE"] = str(work / "digests-maps.sqlite3")
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli(["build-maps", "--cityscapes-root", str(args.root), "--split", args.split,
                      "--cities", args.city, "--speed", str(args.speed), "--sequences", "--out",
                      str(maps), "--no-progress"])
        bm = time.perf_counter() - t0
        man = pd.read_csv(maps / "maps_manifest.csv")
        print(f"build-maps (README step 1): {bm:.1f} s for {len(man)} frames (exit {rc}); "
              f"{du(maps) / len(man) / 1e6:.3f} MB a frame")
        files = [p for p in (args.root).rglob("*") if p.is_file()
                 and f"/{args.split}/{args.city}/" in str(p)
                 and not str(p).startswith(str(args.judge_labels_root))]
        cold = store.DigestCache(None)
        t0 = time.perf_counter()
        for p in files:
            cold.digest(p)
        dt = time.perf_counter() - t0
        print(f"  digests of its {len(files)} input files ({cold.hashed_bytes / 1e6:.0f} MB), cold: "
              f"{dt:.2f} s = {100 * dt / bm:.1f}% of the fresh build-maps")

    if args.compare is not None:
        same = total = 0
        for p in mp4s:
            rel = p.relative_to(run)
            q = args.compare / rel
            if q.is_file():
                total += 1
                same += sha(q) == sha(p)
        print(f"compared with {args.compare}: {same} of {total} encodes of the same name byte-identical")
        new = pd.read_csv(run / "results.csv")
        old = pd.read_csv(args.compare / "results.csv")
        key = ["maps", "clip", "mode", "rate_value"]
        old["maps"] = old["maps"].where(old["maps"] == "plain", "roi")
        new["maps"] = new["maps"].where(new["maps"] == "plain", "roi")
        m = new.merge(old, on=key, suffixes=("", "_old"))
        cols = ["bytes", "kbps", "psnr_y", "psnr_roi", "psnr_nonroi", "psnr_weighted", "roi_fraction"]
        worst = {c: float((m[c] - m[f"{c}_old"]).abs().max()) for c in cols}
        print(f"  results.csv rows matched: {len(m)} of {len(new)}; largest difference per column: "
              + ", ".join(f"{c} {v:.3g}" for c, v in worst.items()))
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
