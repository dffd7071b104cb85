"""build-maps throughput on synthesized 2048x1024 frames vs the seed's original algorithm.

The seed (the prototype roienc replaced) computed one mean disparity per *class*, turned it into
a class importance, block-averaged with Python loops and drew every output as a matplotlib
figure (``imshow`` + ``savefig``). It is reimplemented faithfully below, producing the same set
of outputs (importance npy/png/vis, QP map csv/npy/vis, object table, annotation), and both are
run in this process on the same frames.

    python3 benchmarks/bench_build_maps.py [--frames 12] [--workers 1,2] [--repeat 3] [--stages]
                                           [--real /work/real]

Timed on one worker (in this process), after one untimed warm-up frame each:
  seed        the seed's algorithm, every output incl. the annotation on every frame
  all         roienc, every output incl. the distance annotation on every frame (--visualize-every 1)
  thread      the same with annotation_thread=True (camera decode, drawing and JPEG on a second
              thread beside the importance and map outputs)
  default     roienc defaults (annotation every 30th frame)
  maps        roienc --outputs maps (npy, objects csv, near mask, QP npy/csv; no optional image)
and the default output set on each further --workers count. Each line gives wall s/frame and
CPU s/frame (process time of all threads: the one-core cost, which other load on the machine
inflates less than wall time) and the speed-up vs the seed of the same round in both (with the
annotation thread, wall time can be below CPU time where a core is idle).
--repeat N runs seed and roienc N times and prints the medians; --stages the CPU ms of each step
of an all-outputs frame run one after another. With --real ROOT (a Cityscapes root with
leftImg8bit_sequence) also s/frame of `--sequences` with label propagation (default
--label-source propagate) on --real-split at --speed, all outputs and default outputs.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import _checkout  # noqa: F401  (this checkout's roienc, not an installed copy)

def seed_build_maps(root: Path, out: Path, split: str, v_default: float = 10.0,
                    visualize_every: int = 30) -> int:
    """The seed algorithm: class-level mean disparity, loop block means, matplotlib outputs."""
    import json

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    from cityscapesscripts.helpers.labels import id2label

    static = {"road", "sidewalk", "parking", "rail track", "building", "wall", "fence",
              "guard rail", "bridge", "tunnel", "pole", "polegroup", "vegetation", "terrain", "sky"}
    void = {"unlabeled", "ego vehicle", "rectification border", "out of roi", "license plate"}
    n = 0
    for lab_path in sorted((root / "gtFine" / split).glob("*/*_gtFine_labelIds.png")):
        fid = lab_path.name[: -len("_gtFine_labelIds.png")]
        city = lab_path.parent.name
        labels = np.array(Image.open(lab_path))
        disp = np.array(Image.open(root / "disparity" / split / city / f"{fid}_disparity.png")).astype(np.float64)
        cam = json.load(open(root / "camera" / split / city / f"{fid}_camera.json"))
        veh = json.load(open(root / "vehicle" / split / city / f"{fid}_vehicle.json"))
        fx, b, v = cam["intrinsic"]["fx"], cam["extrinsic"]["baseline"], veh.get("speed", v_default)
        d_safe = max(5.0, v * 2.5 + v * v / (2 * 3.4))
        imp = np.zeros(labels.shape, np.float64)
        rows = []
        for lid in np.unique(labels):
            name = id2label[int(lid)].name
            mask = labels == lid
            if name in void:
                continue
            if name in static:
                imp[mask] = 0.1
                continue
            dvals = disp[mask]
            dvals = dvals[dvals > 0]
            if dvals.size == 0:
                imp[mask] = 1.0
                continue
            dist = fx * b / ((dvals.mean() - 1) / 256.0)
            val = 1.0 if dist <= d_safe else math.exp(-math.log(2) / d_safe * (dist - d_safe))
            imp[mask] = val
            rows.append((name, int(mask.sum()), dist, val))
        o = out / split / city
        o.mkdir(parents=True, exist_ok=True)
        np.save(o / f"{fid}_importance.npy", imp.astype(np.float32))
        Image.fromarray((imp * 255).round().astype(np.uint8)).save(o / f"{fid}_importance.png")
        fig = plt.figure(figsize=(20.48, 10.24), dpi=100)
        plt.imshow(imp, cmap="hot", vmin=0, vmax=1)
        plt.axis("off")
        fig.savefig(o / f"{fid}_importance_vis.png")
        plt.close(fig)
        bs = 16
        gh, gw = math.ceil(imp.shape[0] / bs), math.ceil(imp.shape[1] / bs)
        qp = np.zeros((gh, gw), int)
        for i in range(gh):
            for j in range(gw):
                m = imp[i * bs:(i + 1) * bs, j * bs:(j + 1) * bs].mean()
                qp[i, j] = round(32 + 3 - 6 * m)
        np.savetxt(o / f"{fid}_qp_map.csv", qp, fmt="%d", delimiter=",")
        np.save(o / f"{fid}_qp_map.npy", qp.astype(np.int8))
        fig = plt.figure(figsize=(12, 6))
        plt.imshow(qp, cmap="viridis")
        plt.colorbar(label="QP")
        fig.savefig(o / f"{fid}_qp_map_vis.png")
        plt.close(fig)
        with open(o / f"{fid}_objects.csv", "w") as f:
            f.write("label,pixels,distance_m,importance\n")
            for r in rows:
                f.write(",".join(map(str, r)) + "\n")
        n += 1
        if (n - 1) % visualize_every:
            continue
        img = np.array(Image.open(root / "leftImg8bit" / split / city / f"{fid}_leftImg8bit.png"))
        fig = plt.figure(figsize=(20.48, 10.24), dpi=100)
        plt.imshow(img)
        plt.title(f"d_safe = {d_safe:.1f} m")
        plt.axis("off")
        fig.savefig(o / f"{fid}_distance_annotation.png")
        plt.close(fig)
    return n


def _timed(fn) -> tuple[float, float, object]:
    t, c = time.perf_counter(), time.process_time()
    res = fn()
    return time.perf_counter() - t, time.process_time() - c, res


def stages(root: Path, out: Path, speed: float = 10.0) -> dict[str, float]:
    """CPU ms a frame of each step of an all-outputs frame, run one after the other on this thread
    (best of two passes over the frames): what the threads of build-maps overlap."""
    import cv2

    from roienc import fileio
    from roienc.dataset import (find_annotated_frames, read_camera, read_disparity_raw,
                                read_instance_ids, read_label_ids, read_rgb)
    from roienc.importance import compute_importance
    from roienc.labels import load_class_groups
    from roienc.maps import BuildConfig, _write_map_outputs
    from roienc.vis import distance_annotation

    groups, cfg = load_class_groups(None), BuildConfig(out=out)
    refs = find_annotated_frames(root, "val", None)
    best: dict[str, float] = {}
    for rnd in range(2):
        acc: dict[str, float] = {}

        def tm(key, fn):
            c = time.process_time()
            res = fn()
            acc[key] = acc.get(key, 0.0) + time.process_time() - c
            return res
        for ref in refs:
            labels = tm("read labels, instances, disparity", lambda: read_label_ids(ref.labels))
            inst = tm("read labels, instances, disparity", lambda: read_instance_ids(ref.instances))
            disp = tm("read labels, instances, disparity", lambda: read_disparity_raw(ref.disparity))
            fx, b = read_camera(ref.camera)
            fi = tm("importance and objects", lambda: compute_importance(
                labels, inst, disp, fx, b, speed, groups))
            prefix = out / str(rnd) / ref.frame_id
            fileio.ensure_dir(prefix.parent)
            tm("map outputs (npy, PNGs, csv, QP)", lambda: _write_map_outputs(prefix, fi, cfg))
            img = tm("annotation: decode camera PNG", lambda: read_rgb(ref.image))
            can = tm("annotation: draw", lambda: distance_annotation(
                img, fi.object_map, fi.objects, fi.d_safe, speed, title=ref.frame_id,
                bgr_out=True))
            tm("annotation: JPEG encode + write", lambda: fileio.write_jpeg(
                prefix.with_name(prefix.name + "_ann.jpg"), can, bgr=True))
            rgb = cv2.cvtColor(can, cv2.COLOR_BGR2RGB)
            tm("(annotation as PNG instead: encode + write)", lambda: fileio.write_png(
                prefix.with_name(prefix.name + "_ann.png"), rgb))
        for k, v in acc.items():
            best[k] = min(best.get(k, math.inf), v * 1000 / len(refs))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12, help="annotated frames to synthesize")
    ap.add_argument("--workers", default="1,2", help="roienc worker counts to time (default outputs)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of seed + roienc 1-worker timings (medians printed after >1)")
    ap.add_argument("--stages", action="store_true",
                    help="also print the CPU ms a frame of each step of an all-outputs frame")
    ap.add_argument("--real", metavar="ROOT", help="real Cityscapes root for the --sequences figure")
    ap.add_argument("--real-split", default="train")
    ap.add_argument("--speed", type=float, default=10.0, help="ego speed for frames without vehicle JSON")
    args = ap.parse_args()

    import roienc
    from roienc.maps import build_maps
    from roienc.synth import synthesize

    print(f"roienc from {Path(roienc.__file__).parent}")

    tmp = Path(tempfile.mkdtemp(prefix="roienc-bench-"))
    try:
        t = time.perf_counter()
        synthesize(tmp / "cs", split="val", cities=("benchcity",), sequences_per_city=args.frames,
                   width=2048, height=1024, with_sequences=False)
        print(f"synthesized {args.frames} frames of 2048x1024 in {time.perf_counter() - t:.1f} s; "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")

        # warm-up (imports, colormaps, colour bar) on one frame, untimed
        synthesize(tmp / "warm", split="val", cities=("warm",), width=2048, height=1024,
                   with_sequences=False)
        seed_build_maps(tmp / "warm", tmp / "warm_seed", "val", visualize_every=1)
        build_maps(tmp / "warm", tmp / "warm_roienc", split="val", workers=1, progress=False,
                   visualize_every=1)

        variants = [("all outputs, annotation every frame", dict(visualize_every=1)),
                    ("  the same, annotation on a thread", dict(visualize_every=1,
                                                             annotation_thread=True)),
                    ("default outputs", {}), ("--outputs maps", dict(outputs="maps"))]
        timings: dict[str, list[tuple[float, float]]] = {}

        def run(label: str, workers: int, rnd: int, **kw) -> tuple[float, float]:
            out = tmp / f"roienc-{label}-{workers}-{rnd}"
            wall, cpu, rep = _timed(lambda: build_maps(tmp / "cs", out, split="val",
                                                       workers=workers, progress=False, **kw))
            assert (rep.manifest["status"] == "ok").all(), rep.manifest
            n = len(rep.manifest)
            size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / n / 1e6
            shutil.rmtree(out, ignore_errors=True)
            return wall / n, cpu / n, size

        def line(label: str, wall: float, cpu: float | None, seed: tuple[float, float] | None,
                 extra: str = "") -> None:
            w = f"{wall:6.3f} s/frame wall" + (f" ({seed[0] / wall:5.1f}x)" if seed else "")
            c = ("(CPU of worker processes not counted)" if cpu is None else
                 f"{cpu:6.3f} s/frame CPU" + (f" ({seed[1] / cpu:5.1f}x)" if seed else ""))
            print(f"{label:44s}: {w}  {c}  {extra}".rstrip())

        for rnd in range(args.repeat):
            if args.repeat > 1:
                print(f"round {rnd + 1}/{args.repeat}, load average {os.getloadavg()[0]:.1f}")
            wall, cpu, n = _timed(lambda: seed_build_maps(tmp / "cs", tmp / f"seed{rnd}", "val",
                                                          visualize_every=1))
            shutil.rmtree(tmp / f"seed{rnd}", ignore_errors=True)
            seed = (wall / n, cpu / n)
            timings.setdefault("seed", []).append(seed)
            line("seed, every output every frame", *seed, None)
            for label, kw in variants:
                w, c, size = run(label, 1, rnd, **kw)
                timings.setdefault(label, []).append((w, c))
                line(f"roienc {label}, 1 worker", w, c, seed, f"{size:5.2f} MB/frame")
        if args.repeat > 1:
            med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
                   for k, v in timings.items()}
            print(f"medians of {args.repeat} rounds (speed-ups of the medians):")
            line("seed, every output every frame", *med["seed"], None)
            for label, _ in variants:
                line(f"roienc {label}, 1 worker", *med[label], med["seed"])

        one = statistics.median(x[0] for x in timings["default outputs"])
        for w in [int(x) for x in args.workers.split(",")]:
            if w != 1:
                wall, _, size = run("default outputs", w, 0)
                line(f"roienc default outputs, {w} workers", wall, None, None, f"{size:5.2f} MB/frame")
                print(f"scaling 1 -> {w} workers: {one / wall:.2f}x (ideal {w}x, "
                      f"{os.cpu_count()} cores)")

        if args.stages:
            print("CPU ms a frame of each step (all outputs, one thread, best of 2):")
            got = stages(tmp / "cs", tmp / "stages", args.speed)
            for k, v in got.items():
                print(f"  {k:44s} {v:6.1f}")
            print(f"  {'total (with the JPEG annotation)':44s} "
                  f"{sum(v for k, v in got.items() if not k.startswith('(')):6.1f}")

        if args.real:
            for label, kw in (("all outputs every frame", dict(visualize_every=1)),
                              ("default outputs", {})):
                out = tmp / f"real-{len(kw)}"
                wall, cpu, rep = _timed(lambda: build_maps(
                    args.real, out, split=args.real_split, sequences=True, speed=args.speed,
                    workers=1, progress=False, **kw))
                ok = rep.manifest[rep.manifest["status"] == "ok"]
                n = max(1, len(rep.manifest))
                print(f"{'real --sequences (propagate), ' + label:44s}: {wall / n:6.3f} s/frame "
                      f"wall {cpu / n:6.3f} s/frame CPU  ({len(ok)}/{len(rep.manifest)} frames ok)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
