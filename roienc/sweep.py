"""The whole experiment: maps -> encodes at every mode and rate point -> evaluation -> BD-rate,
RD plots, the trade-off front and ``report.html``.

A sweep may take several QP mappings (lists of block size, block statistic, delta, background
offset, gamma, base QP): one maps folder per combination, ``RUN/maps/<label>``, the first built
from the dataset and the others derived from it (importance does not depend on the mapping).
The plain baseline is encoded once (``RUN/enc/plain``); each combination's ROI modes, and its
``roi-settings`` reference, go to ``RUN/enc/<label>``. Every encode is judged by the same regions:
``--judge-maps DIR``, maps built from ``--judge-labels-root DIR`` with the same importance
settings, or else the first combination's maps (self-judged: flatters an ROI that is in the wrong
place, and said so in every output).

Rerunning the same command resumes: maps are completed with ``skip_existing`` (each reused file
checked), encodes whose signature is unchanged are kept, evaluations whose key is unchanged are
reused. Changed map options land in another ``RUN/maps/<label>`` (the label carries a hash of
every map parameter), so a rerun never mixes settings. A new maps folder whose QP grids are
byte-identical to those of a folder the run has already encoded (a setting that changed nothing
the encoder reads, e.g. a propagation setting with labels on every frame) takes that folder's
encodes instead of encoding the same thing again; ``sweep.json`` says so (``maps_reused``).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .bdrate import METRICS, bd_table
from .dataset import find_clips, has_sequences
from .configs import CODECS
from .encode import (MODES, RatePoint, check_jobs, check_threads, encode_many,
                     settings_reference_is_baseline)
from .errors import InputError
from .evaluate import evaluate
from .executor import ExecutorSpec
from .fileio import ensure_dir, write_csv, write_json
from .maps import QPParams, build_maps, derive_maps, load_params, read_manifest
from .names import check_component, check_names
from .plots import frames_plot, frontier_plot, gain_vs_share_plot, rd_plot
from .propagate import PropagationParams
from .qpmap import block_reduce
from .report import frames_table, write_report
from .store import locked_run
from .tools import find_ffmpeg

MAX_BLOCK_SIZE = 1024     # px: a QP block beyond it is coarser than any encoder's quantisation
QP_LIST_KEYS = ("block_size", "block_stat", "delta", "background", "gamma", "base_qp", "rate_budget", "floor")
FRONTIER_COLUMNS = ["maps", "block_size", "block_stat", "delta", "background", "rate_budget", "floor", "gamma",
                    "base_qp",
                    "bd_psnr_roi_pct", "bd_psnr_nonroi_pct", "bd_psnr_y_pct", "bd_psnr_weighted_pct",
                    "roi_only_bd_psnr_roi_pct", "roi_only_bd_psnr_nonroi_pct",
                    "mean_roi_delta", "mean_background", "mean_predicted_rate_pct", "pareto", "judged_by"]


@dataclass
class SweepResult:
    run_dir: Path
    results: pd.DataFrame
    bdrate: pd.DataFrame
    plots: list[Path]
    report: Path
    encodes: list[dict]
    frontier: pd.DataFrame | None = None
    errors: list[dict] = field(default_factory=list)   # encodes that failed to evaluate


def qp_combinations(qp: QPParams | None, grid: dict[str, list] | None) -> list[QPParams]:
    """Every combination of the list-valued QP options (``grid``) over ``qp``, in order."""
    base = qp or QPParams()
    grid = {k: v for k, v in (grid or {}).items() if v}
    unknown = set(grid) - set(QP_LIST_KEYS)
    if unknown:
        raise InputError(f"sweep: no QP mapping option {', '.join(sorted(unknown))}")
    keys = list(grid)
    combos = []
    for values in itertools.product(*(grid[k] for k in keys)):
        over = dict(zip(keys, values))
        if "delta" in over and "background" not in over and base.background == base.delta:
            over["background"] = None          # symmetric unless the background is given
        combos.append(replace(base, **over))
    out: list[QPParams] = []
    for c in combos:              # product() of no lists is one empty combination: [base]
        if c not in out:
            out.append(c)
    return out


def _digest(params: dict) -> str:
    """Short stable hash of a parameter dict (folder names of maps that depend on it)."""
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]


def maps_label(qp: QPParams, map_params: dict) -> str:
    """``b32-max-d4-bg2-g1-q32-<hash>``: readable QP mapping plus a hash of every map parameter."""
    digest = _digest(map_params)
    rate = (f"-r{qp.rate_budget:g}" if qp.rate_mode else "") + (f"-f{qp.floor:g}" if qp.floor else "")
    return (f"b{qp.block_size}-{qp.block_stat}-d{qp.delta}-bg{qp.background}{rate}-g{qp.gamma:g}-q{qp.base_qp}"
            f"{'-norm' if qp.qp_normalize != 'none' else ''}-{digest}")


def qp_maps_digest(maps_dir: Path) -> str | None:
    """sha1 over every frame's QP grid in a maps folder (relative names and bytes): what the
    encoders read of it (the mapping's own parameters are in the folder's label). None: none."""
    files = sorted(Path(maps_dir).rglob("*_qp_map.npy"))
    if not files:
        return None
    h = hashlib.sha1()
    for f in files:
        h.update(f.relative_to(maps_dir).as_posix().encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def _encoded_twin(run_dir: Path, label: str) -> str | None:
    """Another maps folder of the run, with the same mapping and byte-identical QP grids, whose
    encodes exist: the label to encode (resume) and evaluate under instead of ``label``. None
    when ``label`` has encodes of its own or no twin exists."""
    if (run_dir / "enc" / label).is_dir():
        return None
    mapping = label.rsplit("-", 1)[0]
    mine = None
    for other in sorted((run_dir / "maps").iterdir()):
        if (other.name == label or other.name.rsplit("-", 1)[0] != mapping
                or not (run_dir / "enc" / other.name).is_dir()):
            continue
        mine = mine or qp_maps_digest(run_dir / "maps" / label)
        if mine is not None and qp_maps_digest(other) == mine:
            return other.name
    return None


def _jsonable(v):
    return v.as_dict() if hasattr(v, "as_dict") else (asdict(v) if hasattr(v, "__dataclass_fields__") else v)


def run_sweep(cityscapes_root: str | Path, out: str | Path, *, split: str = "val",
              cities: list[str] | None = None, codec: str = "hevc",
              modes: tuple[str, ...] = ("baseline", "roi"), rates: list[RatePoint] | None = None,
              source: str | None = None, sequence_ids: list[str] | None = None,
              map_options: dict | None = None, qp_grid: dict[str, list] | None = None,
              judge_maps: str | Path | None = None, judge_labels_root: str | Path | None = None,
              judge_labels_pattern: str | None = None,
              settings_reference: bool = True, config: str | None = None,
              preset: str | None = None, jobs: int = 1, roi_threshold: float = 0.5,
              zone_mode: str | None = None, ffmpeg: str | None = None, x265: str | None = None,
              svtav1: str | None = None,
              executor: ExecutorSpec | None = None, progress: bool = True,
              argv: list[str] | None = None, two_pass: bool = False,
              ssim: bool = False, engine: str | None = None,
              threads: int | None = None) -> SweepResult:
    """Run the sweep into ``out`` (RUN); see the module docstring. ``ssim``: evaluate computes
    the SSIM columns too (NaN otherwise). ``engine``: see :func:`roienc.encode.encode_many`
    (resolved once here, so the plain baseline and every ROI encode use the same build).
    ``threads``: each encode's threads (:func:`roienc.encode.encode_many`)."""
    # every argument checked before any work: nothing is built or encoded for a run that
    # would be refused later
    split = check_component(split, "--split")
    cities = check_names(cities, "--cities")
    sequence_ids = check_names(sequence_ids, "--sequence")
    modes = check_modes(modes)
    if codec not in CODECS:
        raise InputError(f"--codec must be one of {', '.join(CODECS)}, got {codec!r}")
    rates = check_rates(rates) or default_rates(codec, config)
    check_jobs(jobs)
    check_threads(threads)
    if not (isinstance(roi_threshold, (int, float)) and 0.0 <= roi_threshold <= 1.0):
        raise InputError(f"--roi-threshold must be in [0, 1], got {roi_threshold!r}")
    check_encode_settings(codec, modes, rates, config, preset, two_pass, ffmpeg, engine)
    map_options = dict(map_options or {})
    combos = qp_combinations(map_options.get("qp"), qp_grid)
    for q in combos:
        check_qp_mapping(q)
    check_judges(judge_maps, judge_labels_root)
    run_dir = ensure_dir(out)
    with locked_run(run_dir, "roienc sweep"):
        return _run_sweep(cityscapes_root, run_dir, split=split, cities=cities, codec=codec,
                          modes=modes, rates=rates, source=source, sequence_ids=sequence_ids,
                          map_options=map_options, qp_grid=qp_grid, judge_maps=judge_maps,
                          judge_labels_root=judge_labels_root,
                          judge_labels_pattern=judge_labels_pattern,
                          settings_reference=settings_reference, config=config, preset=preset,
                          jobs=jobs, roi_threshold=roi_threshold, zone_mode=zone_mode,
                          ffmpeg=ffmpeg, x265=x265, svtav1=svtav1, executor=executor,
                          progress=progress, argv=argv, two_pass=two_pass, ssim=ssim,
                          engine=engine, threads=threads)


DEFAULT_CRFS = (22, 27, 32, 37)     # without --crf/--bitrate/--qp and a config's [rate] sweep_crf


def default_rates(codec: str, config: str | Path | None = None) -> list[RatePoint]:
    """The rate points of a sweep given none: the encoder config's ``[rate] sweep_crf`` (the
    packaged vp9 and av1 configs: CRF 30, 36, 42, 48 of their 0..63 scale, where roienc's VP9 and
    AV1 figures were measured), else CRF 22, 27, 32, 37 (x264/x265's 0..51)."""
    from .configs import load_config

    crfs = load_config(config, codec=codec).sweep_crfs or DEFAULT_CRFS
    return [RatePoint("crf", v) for v in crfs]


def check_modes(modes) -> tuple[str, ...]:
    """``modes`` as a tuple of encode modes that includes baseline; InputError otherwise (a bare
    string too: it would be read letter by letter)."""
    if isinstance(modes, (str, bytes)) or not isinstance(modes, (list, tuple)):
        raise InputError(f"--modes takes a list of modes, e.g. ['baseline', 'roi'], got {modes!r}")
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise InputError(f"--modes: unknown {', '.join(map(repr, bad))}; choose from {', '.join(MODES)}")
    if "baseline" not in modes:
        raise InputError("--modes must include baseline: BD-rates are measured against it")
    return tuple(modes)


def check_rates(rates) -> list[RatePoint] | None:
    """``rates`` as a list of RatePoint (None: the default CRFs); InputError for anything else."""
    if rates is None:
        return None
    if isinstance(rates, (str, bytes, RatePoint)) or not isinstance(rates, (list, tuple)):
        raise InputError("rates takes a list of RatePoint, e.g. [RatePoint('crf', 30), "
                         f"RatePoint('crf', 35)], got {rates!r}")
    bad = [r for r in rates if not isinstance(r, RatePoint)]
    if bad:
        raise InputError(f"rates takes RatePoint values (roienc.encode.RatePoint), got {bad[0]!r}")
    if not rates:
        raise InputError("no rate point given (empty --crf/--bitrate/--qp list)")
    return list(rates)


def check_encode_settings(codec: str, modes: tuple[str, ...], rates: list[RatePoint],
                          config: str | Path | None, preset: str | None, two_pass: bool,
                          ffmpeg: str | None = None, engine: str | None = None) -> None:
    """What :func:`roienc.encode.encode_many` refuses about a mode, its encoder config, preset
    and rate points (``--preset ultrafast`` for ROI, a CRF beyond the codec's scale, a preset or
    option the encoder does not know, tried in its 1-frame encode), checked for every mode the
    sweep will encode before the maps and the baseline are made."""
    from .encode import check_encoder_options, encode_plans, run_engine
    ff = find_ffmpeg(ffmpeg)
    eng = run_engine(engine, codec, ffmpeg, two_pass)
    check = list(modes)
    if codec == "hevc" and any(m in ("roi", "roi+zones") for m in modes):
        check.append("roi-settings")
    for _, cfg, _, _ in encode_plans(codec, check, rates, config, preset, two_pass):
        check_encoder_options(ff, cfg, eng)     # cached: encode_many does not try it again


def check_qp_mapping(q: QPParams) -> None:
    """The rules the QP maps of ``q`` would meet on every frame (a 'submax' block statistic
    needs an even block size, ...), checked once on a dummy picture: a bad mapping is refused
    before any work instead of skipping every frame."""
    if q.block_size > MAX_BLOCK_SIZE:
        raise InputError(f"--block-size must be between 1 and {MAX_BLOCK_SIZE} px, got "
                         f"{q.block_size} (x265 quantisation groups are at most 64 px)")
    try:
        block_reduce(np.zeros((1, 1), np.float32), q.block_size, q.block_stat)
    except InputError as exc:
        raise InputError(f"--block-size {q.block_size} with --block-stat {q.block_stat}: {exc}; "
                         "choose an even --block-size (e.g. 16 or 32) or --block-stat mean/max") from None


def check_judges(judge_maps: str | Path | None, judge_labels_root: str | Path | None) -> None:
    """The judging regions asked for exist: ``judge_maps`` a build-maps output,
    ``judge_labels_root`` a folder (named as the options, not as --labels-root)."""
    if judge_maps is not None and judge_labels_root is not None:
        raise InputError("give --judge-maps or --judge-labels-root, not both")
    if judge_labels_root is not None and not Path(judge_labels_root).is_dir():
        raise InputError(f"--judge-labels-root {judge_labels_root}: no such directory; give the "
                         "folder of the per-frame labels that judge the encodes")
    if judge_maps is not None:
        try:
            load_params(judge_maps)
        except InputError as exc:
            raise InputError(f"--judge-maps {judge_maps}: {exc}") from None


def _sidecar_paths(encodes: list[dict], out: Path) -> list[Path]:
    """Where the sidecars of ``encodes`` (encode_many's records) are under ``out``."""
    return [out / e["codec"] / e["mode"] / e["rate_label"] / f"{e['clip']}.json" for e in encodes]


def _run_sweep(cityscapes_root, run_dir: Path, *, split, cities, codec, modes, rates, source,
               sequence_ids, map_options, qp_grid, judge_maps, judge_labels_root,
               judge_labels_pattern, settings_reference, config, preset, jobs, roi_threshold,
               zone_mode, ffmpeg, x265, svtav1, executor, progress, argv, two_pass, ssim, engine,
               threads) -> SweepResult:
    src = source or ("sequence" if has_sequences(cityscapes_root, split) else "frames")
    opts = dict(map_options or {})
    opts["sequences"] = src == "sequence" or bool(opts.get("sequences"))
    combos = qp_combinations(opts.pop("qp", None), qp_grid)
    roi_modes = [m for m in modes if m != "baseline"]
    if settings_reference and codec == "hevc" and any(m in ("roi", "roi+zones") for m in roi_modes):
        roi_modes.append("roi-settings")
    # label_every / labels_kind at their defaults change nothing: left out, so the maps of
    # earlier sweeps keep their folder names
    map_params = {k: _jsonable(v) for k, v in opts.items()
                  if (k, v) not in (("label_every", 1), ("labels_kind", "labelIds"))}
    if opts["sequences"] and opts.get("label_source", "propagate") == "propagate":
        # propagation settings change the maps too (with --labels-root: of the frames without a
        # file, and the disparity warped to frames without their own): a new default lands in a
        # folder of its own
        map_params["propagation"] = _jsonable(opts.get("propagation") or PropagationParams())
    labels = [maps_label(q, {**map_params, "qp": asdict(q), "root": str(Path(cityscapes_root).resolve()),
                             "split": split}) for q in combos]
    params = {"roienc_version": __version__, "argv": argv if argv is not None else sys.argv,
              "cityscapes_root": str(Path(cityscapes_root).resolve()), "split": split,
              "cities": cities, "codec": codec, "modes": list(modes), "roi_modes": roi_modes,
              "rates": [r.label for r in rates], "source": src, "sequence_ids": sequence_ids,
              "config": config, "preset": preset, "roi_threshold": roi_threshold,
              "zone_mode": zone_mode, "two_pass": two_pass, "ssim": ssim, "threads": threads,
              "map_options": map_params,
              "qp_combinations": {lab: asdict(q) for lab, q in zip(labels, combos)}}
    write_json(run_dir / "sweep.json", params)

    # maps: the first combination from the dataset (resumed), the others derived from it
    maps_dirs = [run_dir / "maps" / lab for lab in labels]
    # only what is encoded: a sequence sweep builds the frames of its snippets (the annotated
    # frame among them), a frames sweep the annotated frames
    only = dict(annotated=src == "frames",
                snippets=list(sequence_ids) if sequence_ids and src == "sequence" else None)
    build_maps(cityscapes_root, maps_dirs[0], split=split, cities=cities, executor=executor,
               progress=progress, visualize_every=30, skip_existing=True, qp=combos[0],
               activity=any(q.rate_mode for q in combos), **only, **opts)
    for q, d in zip(combos[1:], maps_dirs[1:]):
        derive_maps(maps_dirs[0], d, q)

    # judge regions
    if judge_maps is not None:
        judge_dir, judged_by = Path(judge_maps), f"--judge-maps {judge_maps}"
        load_params(judge_dir)
    elif judge_labels_root is not None:
        jopts = {k: v for k, v in opts.items()                # the judge's own labels instead
                 if k not in ("labels_root", "label_source", "labels_pattern", "instances_pattern",
                              "label_every", "labels_kind")}
        # evaluation reads the judges' importance and near-object masks only: no pictures, and
        # a fixed QP mapping (no activity grids for a rate budget)
        jqp = replace(combos[0], rate_budget=None)
        jparams = {**{k: _jsonable(v) for k, v in jopts.items()}, "labels": str(judge_labels_root),
                   "pattern": judge_labels_pattern, "qp": asdict(jqp), "outputs": "maps"}
        # the folder's params.json records the propagation settings (the disparity of frames
        # without their own is warped along the flow): a new default gets a folder of its own
        # instead of a refusal to mix two kinds of maps
        if jparams.get("propagation") is None:
            jparams["propagation"] = _jsonable(PropagationParams())
        judge_dir = run_dir / "judge_maps" / _digest(jparams)
        build_maps(cityscapes_root, judge_dir, split=split, cities=cities, executor=executor,
                   progress=progress, visualize_every=0, skip_existing=True, qp=jqp,
                   labels_root=judge_labels_root, outputs="maps", **only,
                   labels_pattern=judge_labels_pattern or "{frame_id}_labelIds.png", **jopts)
        judged_by = f"per-frame labels --judge-labels-root {judge_labels_root} ({judge_dir})"
    else:
        judge_dir = maps_dirs[0]
        judged_by = f"self: the maps that drove the encoder ({maps_dirs[0].name})"
    params["judged_by"] = judged_by
    write_json(run_dir / "sweep.json", params)

    clips = find_clips(cityscapes_root, split, cities, src, sequence_ids)
    enc_kw = dict(codec=codec, rates=rates, config=config, jobs=jobs, ffmpeg=ffmpeg, x265=x265,
                  svtav1=svtav1,
                  skip_existing=True, zone_mode=zone_mode, cityscapes_root=cityscapes_root,
                  preset=preset, progress=progress, two_pass=two_pass, engine=engine,
                  threads=threads,
                  executor=ExecutorSpec("dask", jobs, executor.scheduler)
                  if executor is not None and executor.kind == "dask" else None)
    eval_kw = dict(cityscapes_root=cityscapes_root, roi_threshold=roi_threshold, ffmpeg=ffmpeg,
                   executor=executor, progress=progress, skip_existing=True, ssim=ssim)
    errors: list[dict] = []
    encodes = encode_many(clips, None, modes=("baseline",), out=run_dir / "enc" / "plain", **enc_kw)
    plain_rows = evaluate(run_dir / "enc" / "plain", judge_dir, run_dir / "eval" / "plain.csv",
                          sidecars=_sidecar_paths(encodes, run_dir / "enc" / "plain"),
                          per_frame_dir=run_dir / "eval" / "frames" / "plain", **eval_kw)
    parts = [_tag(plain_rows, "plain", judged_by, errors)]
    roi_labels = labels if roi_modes else []      # the mappings with ROI encodes to make
    reused = {lab: twin for lab in roi_labels if (twin := _encoded_twin(run_dir, lab)) is not None}
    if reused:
        params["maps_reused"] = {lab: f"encodes of {twin}: byte-identical QP maps"
                                 for lab, twin in reused.items()}
        write_json(run_dir / "sweep.json", params)
    same_as_plain = {}
    for lab, q in zip(labels, combos):
        if lab not in roi_labels:
            continue
        src = reused.get(lab, lab)       # the twin's maps (its encodes' signature) and encodes
        lab_modes = list(roi_modes)
        if "roi-settings" in lab_modes and settings_reference_is_baseline(codec, q.block_size, config):
            # the reference's command is the plain baseline's: its encodes and rows are those
            lab_modes.remove("roi-settings")
            same_as_plain[lab] = ("roi-settings = the plain baseline (the same command: "
                                  f"{q.block_size}-px blocks are x265's default qg-size)")
        if not lab_modes:
            continue
        made = encode_many(clips, run_dir / "maps" / src, modes=tuple(lab_modes),
                           out=run_dir / "enc" / src, **enc_kw)
        encodes += made
        rows = evaluate(run_dir / "enc" / src, judge_dir, run_dir / "eval" / f"{src}.csv",
                        sidecars=_sidecar_paths(made, run_dir / "enc" / src),
                        per_frame_dir=run_dir / "eval" / "frames" / src, **eval_kw)
        if lab in same_as_plain:
            ref = plain_rows.copy()
            ref["mode"] = "roi-settings"
            ref["same_encode_as"] = "baseline"
            rows = pd.concat([rows, ref], ignore_index=True)
        parts.append(_tag(rows, lab, judged_by, errors))
    if same_as_plain:
        params["settings_reference"] = same_as_plain
        write_json(run_dir / "sweep.json", params)
    results = pd.concat(parts, ignore_index=True)
    write_csv(run_dir / "results.csv", results.itertuples(index=False), header=list(results.columns))

    plain = results[results["maps"] == "plain"]
    bds = []
    for lab in labels:
        sub = pd.concat([plain, results[results["maps"] == lab]], ignore_index=True)
        bd = bd_table(sub)
        bd.insert(0, "maps", lab)
        bds.append(bd)
    bd = pd.concat(bds, ignore_index=True) if bds else bd_table(plain)
    bd["judged_by"] = judged_by
    write_csv(run_dir / "bdrate.csv", bd.itertuples(index=False), header=list(bd.columns))
    frontier = frontier_table(bd, dict(zip(labels, combos)), judged_by,
                              {lab: d for lab, d in zip(labels, maps_dirs)})
    write_csv(run_dir / "frontier.csv", frontier.itertuples(index=False), header=list(frontier.columns))
    plot_res = results.copy()
    if len(labels) > 1:
        plot_res["mode"] = [m if lab == "plain" else f"{m} [{lab.rsplit('-', 1)[0]}]"
                            for m, lab in zip(plot_res["mode"], plot_res["maps"])]
    plots = [rd_plot(plot_res, m, run_dir / f"rd_{m}.png") for m in METRICS]
    if len(frontier):
        plots.append(frontier_plot(frontier, run_dir / "frontier.png"))
    (run_dir / "gain_vs_roi_share.png").unlink(missing_ok=True)    # a rerun with one clip
    share_png = gain_vs_share_plot(bd, results, run_dir / "gain_vs_roi_share.png")
    if share_png is not None:
        plots.append(share_png)
    ff_path = find_ffmpeg(ffmpeg).path
    frames = frames_table(results, ff_path)
    write_csv(run_dir / "frames.csv", frames.itertuples(index=False), header=list(frames.columns))
    (run_dir / "frames.png").unlink(missing_ok=True)        # a rerun without per-frame data
    frames_png = frames_plot(frames, run_dir / "frames.png")
    report = write_report(run_dir, results, bd, plots, maps_dirs[0], ff_path,
                          params, roi_threshold, judged_by=judged_by, frontier=frontier,
                          frames=frames, frames_png=frames_png)
    return SweepResult(run_dir, results, bd, plots, report, encodes, frontier, errors)


def _mean_offsets(maps_dir: Path | None) -> list[float]:
    """Mean over the frames built of qp_roi_delta, qp_background and rate_predicted_pct."""
    cols = ["qp_roi_delta", "qp_background", "rate_predicted_pct"]
    try:
        man = read_manifest(maps_dir)
        ok = man[man["status"] == "ok"]
        return [round(float(pd.to_numeric(ok[c], errors="coerce").mean()), 3) if c in ok
                else float("nan") for c in cols]
    except (InputError, TypeError, OSError):
        return [float("nan")] * len(cols)


def _tag(df: pd.DataFrame, label: str, judged_by: str, errors: list[dict]) -> pd.DataFrame:
    errors.extend(df.attrs.get("errors", []))
    df = df.copy()
    df.insert(0, "maps", label)
    df["judged_by"] = judged_by
    return df


def pareto_mask(x: list[float], y: list[float]) -> list[bool]:
    """True where no other point is at least as good in both (lower x and lower y) and better in one."""
    pts = list(zip(x, y))
    out = []
    for i, (a, b) in enumerate(pts):
        if not (pd.notna(a) and pd.notna(b)):
            out.append(False)
            continue
        dominated = any(j != i and pd.notna(c) and pd.notna(d) and c <= a and d <= b and (c < a or d < b)
                        for j, (c, d) in enumerate(pts))
        out.append(not dominated)
    return out


def frontier_table(bd: pd.DataFrame, combos: dict[str, QPParams], judged_by: str,
                   maps_dirs: dict[str, Path] | None = None) -> pd.DataFrame:
    """One row per QP mapping: BD-rates of its ``roi`` encode against the plain baseline (and
    against its own roi-settings reference), the mean over its frames of the offsets chosen (a
    rate budget chooses them per frame; the manifest has each frame's), and whether it is on the
    Pareto front of (psnr_roi BD-rate, psnr_nonroi BD-rate)."""
    rows = []
    mean = bd[(bd["clip"] == "mean") & (bd["mode"] == "roi")] if len(bd) else bd
    for lab, q in combos.items():
        m = mean[mean["maps"] == lab] if "maps" in mean else mean.iloc[0:0]
        if m.empty:
            continue
        def get(metric: str, ref: str = "baseline") -> float:
            r = m[(m["metric"] == metric) & (m["reference"] == ref)]["bd_rate_pct"]
            return float(r.iloc[0]) if len(r) else float("nan")
        chosen = _mean_offsets(maps_dirs.get(lab) if maps_dirs else None)
        rows.append([lab, q.block_size, q.block_stat, q.delta, q.background, q.rate_budget, q.floor, q.gamma, q.base_qp,
                     get("psnr_roi"), get("psnr_nonroi"), get("psnr_y"), get("psnr_weighted"),
                     get("psnr_roi", "roi-settings"), get("psnr_nonroi", "roi-settings"),
                     *chosen, False, judged_by])
    df = pd.DataFrame(rows, columns=FRONTIER_COLUMNS)
    if len(df):
        df["pareto"] = pareto_mask(list(df["bd_psnr_nonroi_pct"]), list(df["bd_psnr_roi_pct"]))
    return df
