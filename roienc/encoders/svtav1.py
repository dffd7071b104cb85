"""AV1 through the SVT-AV1 command-line encoder (``SvtAv1EncApp``) and its ROI map file: finding
the CLI, the map file, the command and the :class:`SvtAv1` encoder class.

No FFmpeg AV1 wrapper reads FFmpeg's ROI side data, and libsvtav1's parameter parser does not
take ``roi-map-file`` (measured with PyAV 18.1's FFmpeg 8.1 / SVT-AV1 lib 4.1.0: "Error parsing
option roi-map-file"): the ROI map is an option of the SVT-AV1 *application*, ``--roi-map-file``,
added in SVT-AV1 1.6 (Debian 12 ships 1.4.1, without it). roienc therefore drives the CLI as it
drives the x265 CLI in qpfile mode: FFmpeg decodes the frames to y4m on a pipe, SvtAv1EncApp
writes IVF, FFmpeg remuxes it into MP4.

The ROI map file has one line per picture, ``<picture> <offset> <offset> ...``: one qindex
offset (-255..255) per 64x64 block in raster order, at most 8 distinct values a line. SVT-AV1
(``segmentation.c``, measured with ``benchmarks/bench_av1_roi.py``) turns each line into AV1
segmentation: the distinct offsets become the segments' ``SEG_LVL_ALT_Q`` (with loop-filter
deltas to match), each 64x64 superblock takes its block's segment, and every coded picture whose
line is in force carries it. The offset moves the block's quantiser only: mode decision and RDOQ
keep the picture's lambda, so a finer step (a negative offset) buys little quality for its bits
(uniform -40 at CRF 36: +36% bytes for +0.7 dB Y PSNR; CRF 26, the same qindex: +112% for
+2.3 dB), while a coarser step (a positive offset) saves bits about as a higher CRF does
(uniform +40: -39% for -1.7 dB; CRF 46: -53% for -2.5 dB).

:func:`roi_map_text` derives the file from roienc's QP grids by :func:`roi_map_grids`: per
picture, each 64x64 block's most important pixel (the minimum map QP delta in the block: a
superblock holding any ROI is coded as ROI); the background (the picture's highest value) gets
the picture's contrast (highest - lowest) times the config's ``[roi] qp_scale`` (qindex per map
QP) times the factor of the picture's temporal layer (:data:`SVT_LAYER_SCALE`: the low layers
carry the bits), the most important blocks the contrast times :data:`SVT_FINER` below the
picture's qindex, blocks between in proportion; rounded, clipped, then at most 7 non-zero levels
a line (the optimal quantiser used for libvpx). The map's contrast (ROI vs background, chosen per
frame by the rate budget) is kept; SVT-AV1 spends it mostly by coding the background coarser.
A picture whose map is flat gets an all-zero line.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..adapters import quantise_levels
from ..errors import InputError, ToolError
from ..fileio import atomic_path, write_text
from ..maps import ClipMaps
from ..tools import Tool, _launch_problem, run
from .base import Encoder, EncodeJob, RatePoint, run_pipeline, y4m_decoder

MIN_ROI_VERSION = (1, 6)
SVT_BLOCK = 64               # ROI map granularity (superblock)
SVT_MAX_OFFSET = 255         # qindex offsets
SVT_MAX_LEVELS = 7           # non-zero values a line (8 distinct with 0)
# offsets' factor per temporal layer (0: key frame and base layer ... 4: the odd pictures): the
# background is made coarser where the bits are (the low layers, coded at low qindex and
# referenced by the rest), less where a coarser step saves few bits and costs PSNR (measured:
# docs/results.md, "AV1 ROI with SVT-AV1")
SVT_LAYER_SCALE = (1.0, 1.0, 0.7, 0.35, 0.15)
# qindex per map QP by which the most important superblocks go below the picture's qindex (a
# finer step gains little with the picture's lambda, but a small one pays: it makes up for the
# coarser references; measured, as SVT_LAYER_SCALE)
SVT_FINER = 2.0
SVT_LEVELS = 4               # SvtAv1EncApp's hierarchical levels at roienc's presets (mini-GOP 16)
SVT_RULE_NAME = "block min: background coarser by temporal layer, ROI a little finer"
SVT_RULE = ("qindex offset per 64x64 block, m = the minimum map QP delta in the block: "
            "round((m - the picture's lowest m) * qp_scale * the factor of the picture's temporal "
            "layer (svt_layer_scale)) + round((m - the picture's highest m) * svt_finer): the "
            "background coarser, the most important blocks a little finer; clipped to -255..255, "
            "at most 7 non-zero levels a picture (block-weighted optimal quantiser); every "
            "picture listed")


def _version_tuple(text: str) -> tuple[int, ...] | None:
    m = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g or 0) for g in m.groups()) if m else None


@functools.cache
def locate_svtav1(explicit: str | None = None) -> Tool:
    """``SvtAv1EncApp`` from ``--svtav1``, ``$ROIENC_SVTAV1`` or PATH, with its version
    (whatever version: see :func:`roi_problem`)."""
    env = os.environ.get("ROIENC_SVTAV1")
    path = explicit or env or shutil.which("SvtAv1EncApp")
    source = "--svtav1" if explicit else ("ROIENC_SVTAV1" if env else "PATH")
    if not path:
        raise ToolError("SvtAv1EncApp (the SVT-AV1 command-line encoder) is not installed; "
                        f"--codec av1 needs SVT-AV1 >= {'.'.join(map(str, MIN_ROI_VERSION))} for "
                        "--roi-map-file. Build it from https://gitlab.com/AOMediaCodec/SVT-AV1 and "
                        "point --svtav1 or ROIENC_SVTAV1 at SvtAv1EncApp.")
    try:
        out = run([path, "--version"])
    except ToolError as exc:
        raise ToolError(f"SvtAv1EncApp {path} ({source}) cannot run: {str(exc).splitlines()[0]}; "
                        "fix --svtav1 / ROIENC_SVTAV1", exc.cmd, exc.returncode,
                        exc.stderr_tail) from None
    except OSError as exc:        # pragma: no cover - run() turns launch problems into ToolError
        raise ToolError(_launch_problem(path, exc), [path, "--version"]) from None
    text = (out.stdout + out.stderr).decode("utf-8", "replace")
    m = re.search(r"SVT-AV1(?: Encoder)?\s+v?(\S+)", text)
    if not m:
        raise ToolError(f"{path} ({source}) does not look like SvtAv1EncApp", [path, "--version"],
                        stderr_tail=text[-500:])
    return Tool("SvtAv1EncApp", path, m.group(1), source)


@functools.cache
def roi_problem(tool: Tool) -> str | None:
    """Why ``tool`` cannot encode with an ROI map (None: it can): its ``--help`` must list
    ``--roi-map-file`` (SVT-AV1 >= 1.6)."""
    try:
        out = run([tool.path, "--help"])
        text = (out.stdout + out.stderr).decode("utf-8", "replace")
    except ToolError as exc:
        text = exc.stderr_tail or ""
    if "--roi-map-file" in text:
        return None
    return (f"SvtAv1EncApp {tool.path} ({tool.source}) is SVT-AV1 {tool.version}, whose CLI has no "
            f"--roi-map-file (added in SVT-AV1 {'.'.join(map(str, MIN_ROI_VERSION))}); install a "
            "newer SVT-AV1 and point --svtav1 / ROIENC_SVTAV1 at its SvtAv1EncApp")


def find_svtav1(explicit: str | None = None, *, need_roi: bool = True) -> Tool:
    """:func:`locate_svtav1`, refused (ToolError) when ROI is needed and it lacks
    ``--roi-map-file``. A plain (baseline) AV1 encode runs with any SvtAv1EncApp."""
    tool = locate_svtav1(explicit)
    why = roi_problem(tool) if need_roi else None
    if why:
        raise ToolError(why, [tool.path, "--help"])
    return tool


def block_means(dq: np.ndarray, block: int, width: int, height: int,
                target: int = SVT_BLOCK) -> np.ndarray:
    """Area-weighted mean of a block grid ``dq`` (``block``-px blocks, clipped to ``width x
    height``) over ``target``-px blocks."""
    g = np.asarray(dq, np.float64)
    full = np.repeat(np.repeat(g, block, 0), block, 1)[:height, :width]
    gh, gw = -(-height // target), -(-width // target)
    pad = np.full((gh * target, gw * target), np.nan)
    pad[:height, :width] = full
    return np.nanmean(pad.reshape(gh, target, gw, target), axis=(1, 3))


def block_minima(dq: np.ndarray, block: int, width: int, height: int,
                 target: int = SVT_BLOCK) -> np.ndarray:
    """Minimum of a block grid ``dq`` (``block``-px blocks, clipped to ``width x height``) over
    ``target``-px blocks: the most important pixel's map QP delta."""
    g = np.asarray(dq, np.float64)
    full = np.repeat(np.repeat(g, block, 0), block, 1)[:height, :width]
    gh, gw = -(-height // target), -(-width // target)
    pad = np.full((gh * target, gw * target), np.inf)
    pad[:height, :width] = full
    return pad.reshape(gh, target, gw, target).min(axis=(1, 3))


def temporal_layer(picture: int, levels: int = SVT_LEVELS) -> int:
    """Temporal layer of display picture ``picture`` in SVT-AV1's random-access hierarchy of
    ``levels`` levels (mini-GOPs of ``2**levels`` pictures from picture 0): 0 for the key frame
    and each mini-GOP's last picture (the base layer), ``levels`` for the odd pictures (never
    referenced)."""
    k = picture % (1 << levels)
    return 0 if k == 0 else levels - (k & -k).bit_length() + 1


def roi_map_grids(dq_grids: np.ndarray, block: int, width: int, height: int, qp_scale: float,
                  layer_scale: Sequence[float] | None = SVT_LAYER_SCALE,
                  levels: int = SVT_LEVELS, finer: float = SVT_FINER) -> np.ndarray:
    """Per frame, the 64x64-block qindex offsets written to the ROI map file (see module
    docstring). Per picture, with ``m`` each superblock's minimum map QP delta: ``round((m -
    min m) * qp_scale * layer factor) + round((m - max m) * finer)``: the background (``m = max
    m``) coarser by the picture's contrast times ``qp_scale`` and its temporal layer's factor in
    ``layer_scale`` (the last factor for deeper layers; None: 1), the most important
    superblocks finer by the contrast times ``finer``; a flat picture all 0."""
    out = []
    for i, g in enumerate(np.asarray(dq_grids)):
        m = block_minima(g, block, width, height)
        f = float(qp_scale)
        if layer_scale:
            f *= float(layer_scale[min(temporal_layer(i, levels), len(layer_scale) - 1)])
        v = np.floor((m - m.min()) * f + 0.5) + np.floor((m - m.max()) * float(finer) + 0.5)
        v = np.clip(v, -SVT_MAX_OFFSET, SVT_MAX_OFFSET).astype(np.int16)
        out.append(quantise_levels(v, max_levels=SVT_MAX_LEVELS))
    return np.stack(out) if out else np.zeros((0, 0, 0), np.int16)


def hierarchy_levels(params: dict) -> int:
    """The hierarchical levels SvtAv1EncApp runs with: the config's ``hierarchical-levels``, else
    :data:`SVT_LEVELS` (its choice at roienc's presets, mini-GOPs of 16, seen in the bitstream)."""
    try:
        return max(0, int(params.get("hierarchical-levels", SVT_LEVELS)))
    except (TypeError, ValueError):
        return SVT_LEVELS


def picture_offsets(grids: np.ndarray) -> list[dict]:
    """Per picture, what the map file gives it: each qindex offset and its 64x64 block count
    (offset 0: coded at the picture's own qindex)."""
    out = []
    for g in np.asarray(grids):
        levels, counts = np.unique(g, return_counts=True)
        out.append({str(int(v)): int(n) for v, n in zip(levels, counts)})
    return out


def frame_headers(ffmpeg: str, path: str | Path) -> list[dict] | None:
    """Per coded picture of an AV1 stream, in coding order (FFmpeg's ``trace_headers``;
    shown-existing frames left out): ``order_hint``, ``base_q_idx``, ``segmentation_enabled`` and
    ``seg_q`` (each segment's ALT_Q qindex offset); None when FFmpeg cannot trace the stream."""
    try:
        p = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path), "-c", "copy",
                            "-bsf:v", "trace_headers", "-f", "null", "-"],
                           capture_output=True, text=True, errors="replace", timeout=600)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        return None
    frames: list[dict] = []
    for line in p.stderr.splitlines():
        m = _TRACE.search(line)
        if not m:
            continue
        name, val = m.group(1), int(m.group(2))
        if name == "show_existing_frame":
            frames.append({"sef": val, "seg_q": {}})
        elif frames and name in ("order_hint", "base_q_idx", "segmentation_enabled"):
            frames[-1].setdefault(name, val)
        elif frames and (f := _SEG_Q.fullmatch(name)):
            frames[-1]["seg_q"][int(f.group(1))] = val
    coded = [f for f in frames if not f.pop("sef") and "base_q_idx" in f]
    return coded or None


def coded_pictures(ffmpeg: str, path: str | Path) -> list[list] | None:
    """What each coded picture of an AV1 stream got, from :func:`frame_headers`:
    ``[display index (order_hint), base_q_idx, [segment qindex offsets]]`` in coding order; None
    when FFmpeg cannot trace the stream."""
    frames = frame_headers(ffmpeg, path)
    if frames is None:
        return None
    return [[f.get("order_hint"), f["base_q_idx"],
             [f["seg_q"][k] for k in sorted(f["seg_q"])] if f.get("segmentation_enabled") else []]
            for f in frames]


_TRACE = re.compile(r"\]\s+\d+\s+(\S+)\s+[01]+\s+=\s+(-?\d+)\s*$")
_SEG_Q = re.compile(r"feature_value\[(\d+)\]\[0\]")


def roi_map_text(grids: np.ndarray) -> str:
    """``<picture> <offset per 64x64 block, raster>`` per frame, every frame listed (a map
    applies from its picture on: listing each one leaves nothing to a previous line)."""
    return "".join(f"{i} " + " ".join(str(int(v)) for v in g.ravel()) + "\n"
                   for i, g in enumerate(np.asarray(grids)))


def cli_args(tool: Tool, *, preset: str, rate_control: str, rate_value: float, params: dict,
             out_ivf: str, roi_map: str | None = None, threads: int = 0) -> list[str]:
    """``SvtAv1EncApp`` argv reading y4m from stdin (``-i stdin``)."""
    cmd = [tool.path, "-i", "stdin", "--progress", "0"]
    if preset:
        cmd += ["--preset", str(preset)]
    if rate_control == "crf":
        cmd += ["--rc", "0", "--crf", f"{rate_value:g}"]
    elif rate_control == "bitrate":
        cmd += ["--rc", "1", "--tbr", f"{rate_value:g}"]
    else:
        raise ToolError(f"SvtAv1EncApp: rate control {rate_control!r} is not driven by roienc; "
                        "use --crf or --bitrate")
    for k, v in params.items():
        cmd += [f"--{k}", str(v)]
    if threads:
        cmd += ["--lp", str(threads)]
    if roi_map is not None:
        cmd += ["--roi-map-file", roi_map]
    return cmd + ["-b", out_ivf]


class SvtAv1(Encoder):
    """SvtAv1EncApp: modes baseline, ``roi`` (``--roi-map-file``, SVT-AV1 >= 1.6) and
    ``roi-settings`` (nothing added: the baseline's command); CRF (``--rc 0``) or a target bitrate
    (``--rc 1``), one pass. The QP map -> qindex map rule is :func:`roi_map_grids`."""

    name = "SvtAv1EncApp"
    codec = "av1"
    engine = "svtav1-cli"

    def check_request(self, mode: str, rate: RatePoint, two_pass: bool) -> None:
        self.refuse_constant_qp(rate)
        if two_pass:
            raise InputError("--two-pass is not driven for --codec av1 (SvtAv1EncApp); encode one pass")

    @classmethod
    def find_cli(cls, paths: dict[str, str | None], modes: Sequence[str]) -> dict[str, Tool]:
        # raises naming why: missing, or (ROI modes) too old for --roi-map-file
        return {"svtav1": find_svtav1(paths.get("svtav1"),
                                      need_roi=any(m != "baseline" for m in modes))}

    def sidecar_fields(self, job: EncodeJob) -> dict:
        return {"encoder_version": f"SVT-AV1 {job.svtav1.version}" if job.svtav1 else job.ffmpeg.version,
                "engine": self.engine}

    def roi_map_payload(self, job: EncodeJob, maps: ClipMaps, adapter: dict) -> Path | None:
        """``<clip>.roimap.txt`` (:func:`roi_map_grids`, :func:`roi_map_text`); None when the map
        has no offset (the baseline's command)."""
        qp_scale = self.config.qp_scale
        levels = hierarchy_levels(self.config.params)
        grids = roi_map_grids(maps.dq, maps.block_size, maps.width, maps.height, qp_scale,
                              SVT_LAYER_SCALE, levels)
        if not np.any(grids):
            adapter["note"] = ("all-zero delta QP map (or flat on every picture: all-zero offsets): "
                               "no ROI map file, command identical to baseline")
            return None
        roi_map = job.folder / f"{job.clip.clip_id}.roimap.txt"
        write_text(roi_map, roi_map_text(grids))
        adapter.update(roi_map_file=str(roi_map), svt_pictures=picture_offsets(grids),
                       svt_rule=SVT_RULE, qp_scale=qp_scale, svt_layer_scale=list(SVT_LAYER_SCALE),
                       svt_finer=SVT_FINER,
                       svt_layers=[temporal_layer(i, levels) for i in range(len(grids))])
        return roi_map

    def encode(self, job: EncodeJob, maps: ClipMaps | None, side: dict) -> None:
        """FFmpeg decodes to y4m | SvtAv1EncApp (with ``--roi-map-file`` in ROI mode) -> IVF,
        remuxed into MP4."""
        cfg, clip = self.config, job.clip
        roi_map = None
        if job.mode == "roi" and maps is not None:
            roi_map = self.roi_map_payload(job, maps, side["adapter"])
        with atomic_path(job.mp4) as tmp_mp4, atomic_path(job.folder / f"{clip.clip_id}.ivf") as tmp_ivf:
            dec = y4m_decoder(job)
            enc = cli_args(job.svtav1, preset=cfg.preset, rate_control=job.rate.control,
                           rate_value=job.rate.value, params=cfg.params, out_ivf=str(tmp_ivf),
                           roi_map=str(roi_map) if roi_map else None, threads=job.threads)
            side["commands"] += [dec, enc]
            run_pipeline(dec, enc, job.log_path)
            if roi_map is not None:     # what each picture got: its qindex and segment offsets
                side["adapter"]["svt_coded"] = coded_pictures(job.ffmpeg.path, tmp_ivf)
            mux = [job.ffmpeg.path, "-hide_banner", "-nostdin", "-y", "-i", str(tmp_ivf), "-c", "copy",
                   *(["-tag:v", cfg.tag] if cfg.tag else []), str(tmp_mp4)]
            side["commands"].append(mux)
            run(mux)
        (job.folder / f"{clip.clip_id}.ivf").unlink(missing_ok=True)
