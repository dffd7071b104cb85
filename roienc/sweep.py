"""The whole experiment: maps (if absent) -> encodes at every mode and rate point -> evaluation
-> BD-rate, RD plots and ``report.html``. Rerunning reuses finished maps and encodes."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import __version__
from .bdrate import METRICS, bd_table
from .dataset import find_clips, has_sequences
from .encode import RatePoint, encode_many
from .errors import InputError
from .evaluate import evaluate
from .executor import ExecutorSpec
from .fileio import ensure_dir, write_csv, write_json
from .maps import build_maps
from .plots import rd_plot
from .report import write_report
from .tools import find_ffmpeg


@dataclass
class SweepResult:
    run_dir: Path
    results: pd.DataFrame
    bdrate: pd.DataFrame
    plots: list[Path]
    report: Path
    encodes: list[dict]


def run_sweep(cityscapes_root: str | Path, out: str | Path, *, split: str = "val",
              cities: list[str] | None = None, codec: str = "hevc",
              modes: tuple[str, ...] = ("baseline", "roi"), rates: list[RatePoint] | None = None,
              source: str | None = None, sequence_ids: list[str] | None = None,
              map_options: dict | None = None, config: str | None = None,
              preset: str | None = None, jobs: int = 1, roi_threshold: float = 0.5,
              zone_mode: str | None = None, ffmpeg: str | None = None, x265: str | None = None,
              executor: ExecutorSpec | None = None, progress: bool = True,
              argv: list[str] | None = None, two_pass: bool = False) -> SweepResult:
    """Run the sweep into ``out`` (RUN); see the module docstring."""
    rates = rates or [RatePoint("crf", v) for v in (22, 27, 32, 37)]
    if "baseline" not in modes:
        raise InputError("--modes must include baseline: BD-rates are measured against it")
    run_dir = ensure_dir(out)
    maps_dir = run_dir / "maps"
    src = source or ("sequence" if has_sequences(cityscapes_root, split) else "frames")
    opts = dict(map_options or {})
    opts.setdefault("sequences", src == "sequence")
    if src == "sequence":
        opts["sequences"] = True
    params = {"roienc_version": __version__, "argv": argv if argv is not None else sys.argv,
              "cityscapes_root": str(Path(cityscapes_root).resolve()), "split": split,
              "cities": cities, "codec": codec, "modes": list(modes),
              "rates": [r.label for r in rates], "source": src, "sequence_ids": sequence_ids,
              "config": config, "preset": preset, "roi_threshold": roi_threshold,
              "zone_mode": zone_mode, "two_pass": two_pass,
              "map_options": {k: (v.as_dict() if hasattr(v, "as_dict") else
                                  (v.__dict__ if hasattr(v, "__dict__") else v))
                              for k, v in opts.items()}}
    write_json(run_dir / "sweep.json", params)
    if not (maps_dir / "params.json").exists() or not (maps_dir / "maps_manifest.csv").exists():
        build_maps(cityscapes_root, maps_dir, split=split, cities=cities, executor=executor,
                   progress=progress, visualize_every=30, **opts)
    clips = find_clips(cityscapes_root, split, cities, src, sequence_ids)
    encodes = encode_many(clips, maps_dir, codec=codec, modes=modes, rates=rates, config=config,
                          out=run_dir / "enc", jobs=jobs, ffmpeg=ffmpeg, x265=x265,
                          skip_existing=True, zone_mode=zone_mode, cityscapes_root=cityscapes_root,
                          preset=preset, progress=progress, two_pass=two_pass,
                          executor=ExecutorSpec("dask", jobs, executor.scheduler)
                          if executor is not None and executor.kind == "dask" else None)
    results = evaluate(run_dir / "enc", maps_dir, run_dir / "results.csv",
                       cityscapes_root=cityscapes_root, roi_threshold=roi_threshold, ffmpeg=ffmpeg,
                       executor=executor, progress=progress, skip_existing=True)
    bd = bd_table(results)
    write_csv(run_dir / "bdrate.csv", bd.itertuples(index=False), header=list(bd.columns))
    plots = [rd_plot(results, m, run_dir / f"rd_{m}.png") for m in METRICS]
    report = write_report(run_dir, results, bd, plots, maps_dir, find_ffmpeg(ffmpeg).path, params,
                          roi_threshold)
    return SweepResult(run_dir, results, bd, plots, report, encodes)
