"""Encode runner: Cityscapes clips + QP maps -> real x265/x264/libvpx-vp9/SVT-AV1 encodes with
sidecars.

Codecs (what each honours of a map: docs/codecs.md): ``hevc`` (libx265, or the x265 CLI for
qpfile), ``h264`` (libx264), ``vp9`` (libvpx-vp9: addroi regions in libvpx units, at most 7
non-zero levels a frame, a whole-frame zero region last on every frame since libvpx keeps a
previous map) and ``av1`` (the SvtAv1EncApp CLI with ``--roi-map-file``, frames piped as y4m).

Layout: ``ENC/<codec>/<mode>/<rate>/<clip>.{mp4,json,log}`` (plus the adapter files the
commands read: ``<clip>.filter.txt``, ``<clip>.qpfile.txt``). The JSON sidecar records the exact
argv of every command, versions, the resolved config, the maps used and adapter statistics, so
an encode can be rerun by hand.

Modes:
- ``baseline``: the plain encoder: the config, preset and rate point as a user would run them,
  nothing the ROI machinery adds (no ``qg-size``, no maps read): the argv is the same with or
  without ``--maps``;
- ``roi-settings``: the same-settings reference: every encoder setting the ``roi`` encode uses
  (``qg-size`` = block size) with all offsets zero, so that a BD table can split a gain into
  "encoder settings" (roi-settings vs baseline) and "ROI" (roi vs roi-settings);
- ``roi``: per-frame addroi rectangles through a filter script (relative offsets, so they follow
  any rate point);
- ``zones``: x265 zones with one QP per frame. Absolute QPs must follow the rate point: under CRF
  a frame's QP is ``round(crf) + (frame_qp - base_qp)`` (CRF ~ QP is an approximation, said in the
  sidecar); under a target bitrate zones are ``b=`` multipliers around the clip mean;
- ``roi+zones``: both;
- ``qpfile``: the x265 CLI with ``--qpfile`` (QP per frame, same rule as zones), frames piped from
  FFmpeg as y4m, then remuxed into MP4.

Engines (:data:`ENGINES`, one per run so that a baseline and its ROI encodes share one encoder
build): libx265/libx264 encodes run either through the FFmpeg CLI (``ffmpeg``: the per-frame ROI
as one filter script, whose cost grows with frames x filters) or through the in-process runner
``roienc/inproc.py`` (``pyav``: the same argv, run with the FFmpeg libraries of the ``av`` wheel,
the ROI attached per run of frames by a graph of that run's addroi chain only: linear in clip
length). ``auto`` (default) is ``pyav`` unless an FFmpeg was named (``--ffmpeg``,
``$ROIENC_FFMPEG``), two-pass is asked or the wheel lacks the encoder; ``$ROIENC_ENGINE``
overrides. A pyav sidecar records the runner's argv (replayable), the ``-roi`` file, the av/FFmpeg
versions and x265/x264 build that encoded (``pyav``), and ``ffmpeg_equivalent``: the same encode
as an FFmpeg CLI command with the filter script (written too).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import __version__
from .adapters import (VPX_MAX_DELTA, check_roi_compatible, check_vp9_roi, ffmpeg_filter_script_args,
                       frame_qps, graph_router, perframe_filter_script, qp_range_for, qpfile_text,
                       vpx_delta_grids, zones_string)
from .configs import CRF_MAX, EncoderConfig, check_rate, load_config, parse_kbps
from .dataset import Clip, check_clip_frames, parse_id
from .errors import InputError, RoiencError, ToolError
from .executor import ExecutorSpec, run_tasks
from . import inproc
from .fileio import (atomic_path, clean_stale_temps, ensure_dir, read_json, temp_tag,
                     write_json, write_text)
from .maps import ClipMaps, frame_prefix, load_clip_maps, load_params
from .store import file_digest, files_digest, key_of, locked_run
from .probe import bitrate_kbps, packet_sizes
from .tools import Tool, _launch_problem, find_ffmpeg, find_x265, run, tail, write_log

log = logging.getLogger(__name__)

MODES = ("baseline", "roi-settings", "roi", "zones", "roi+zones", "qpfile")
# modes whose ROI offsets act per quantisation group: they carry qg-size = the maps' block size
QG_MODES = ("roi", "roi+zones", "roi-settings")
X265_ONLY = ("zones", "roi+zones", "qpfile")
# FFmpeg encoders per codec (the CLIs x265 and SvtAv1EncApp are not among them)
FFMPEG_ENCODERS = {"hevc": "libx265", "h264": "libx264", "vp9": "libvpx-vp9"}
INPROC_ENCODERS = ("libx265", "libx264", "libvpx-vp9")
# how libx265/libx264 encodes run: "pyav" (in-process runner, roienc/inproc.py, through the FFmpeg
# libraries of the av wheel: ROI side data per frame, linear in clip length) or "ffmpeg" (the
# FFmpeg CLI with a per-frame filter script); "auto": pyav when it has the encoder, unless an
# FFmpeg was named (--ffmpeg, $ROIENC_FFMPEG) or two-pass is asked (CLI only)
ENGINES = ("auto", "pyav", "ffmpeg")


@functools.cache
def inproc_versions() -> dict | None:
    """:func:`roienc.inproc.versions` (once per process)."""
    return inproc.versions()


def uses_pyav(job: "EncodeJob") -> bool:
    """Whether ``job`` encodes through the in-process runner (libx265/libx264/libvpx-vp9, one
    pass)."""
    return (job.engine == "pyav" and job.config.encoder in INPROC_ENCODERS
            and not job.two_pass)


def resolve_engine(engine: str | None, encoder: str, *, ffmpeg_named: bool = False,
                   two_pass: bool = False) -> str:
    """``'pyav'`` or ``'ffmpeg'`` for every libx265/libx264 encode of a run (one engine per run:
    a baseline and its ROI encodes go through the same encoder build). ``engine`` None reads
    ``$ROIENC_ENGINE``, default ``auto``."""
    engine = engine or os.environ.get("ROIENC_ENGINE") or "auto"
    if engine not in ENGINES:
        raise InputError(f"engine {engine!r}: choose from {', '.join(ENGINES)}")
    if engine == "ffmpeg":
        return "ffmpeg"
    info = inproc_versions()
    usable = info is not None and encoder in info["encoders"]
    if engine == "pyav":
        if two_pass:
            raise InputError("--two-pass runs through the FFmpeg CLI: use engine ffmpeg "
                             "(ROIENC_ENGINE=ffmpeg)")
        if not usable:
            why = ("PyAV (the av package) is not installed" if info is None else
                   f"PyAV {info['av']}'s FFmpeg has no {encoder}")
            raise ToolError(f"engine pyav: {why}; pip install 'av>={inproc.MIN_AV[0]}' or use "
                            "engine ffmpeg")
        return "pyav"
    if ffmpeg_named or two_pass or not usable:
        return "ffmpeg"
    return "pyav"


@dataclass(frozen=True)
class RatePoint:
    """A rate-control setting: ``crf`` (value = CRF), ``bitrate`` (kbps) or ``qp`` (constant QP)."""

    control: str
    value: float

    @property
    def label(self) -> str:
        v = f"{self.value:g}"
        return {"crf": f"crf{v}", "bitrate": f"bitrate{v}k", "qp": f"qp{v}"}[self.control]


def parse_bitrate(text: str) -> float:
    """``'4M'`` -> 4000.0 kbps, ``'800k'`` -> 800.0, ``'1500'`` -> 1500.0 (kbps)."""
    return parse_kbps(text)


def validate_mode(codec: str, mode: str, rate: RatePoint, config: EncoderConfig,
                  two_pass: bool = False) -> list[str]:
    """Refuse impossible combinations with the reason; return warnings."""
    if mode not in MODES:
        raise InputError(f"--mode {mode!r}: choose from {', '.join(MODES)}")
    check_rate(rate.control, rate.value, qp_max=CRF_MAX.get(codec, 51))
    if codec != "hevc" and mode in X265_ONLY:
        raise InputError(f"--mode {mode} is x265-only (zones and qpfile are x265 features); with "
                         f"--codec {codec} use baseline or roi")
    if codec in ("vp9", "av1") and rate.control == "qp":
        raise InputError(f"--qp with --codec {codec}: roienc drives {config.encoder} by CRF or "
                         "bitrate only; use --crf (0-63) or --bitrate")
    if config.encoder == "libvpx-vp9" and config.preset:
        raise InputError(f"preset {config.preset!r}: libvpx-vp9 has no presets (its speed is "
                         "cpu-used in the config's [params]); drop --preset / the config's preset")
    if codec == "vp9" and mode in ("roi", "roi-settings"):
        check_vp9_roi(config.params)
    if codec == "av1" and two_pass:
        raise InputError("--two-pass is not driven for --codec av1 (SvtAv1EncApp); encode one pass")
    if mode == "qpfile" and config.encoder != "x265":
        raise InputError("--mode qpfile needs the x265 CLI config (FFmpeg's libx265 wrapper rejects "
                         "qpfile): use --config hevc_x265cli")
    if mode != "qpfile" and mode != "baseline" and config.encoder == "x265":
        raise InputError(f"--mode {mode} goes through FFmpeg; config {config.name} drives the x265 CLI")
    if rate.control == "qp" and mode in ("zones", "roi+zones", "qpfile"):
        raise InputError(f"--mode {mode} with constant QP makes no sense: per-frame QPs replace it; "
                         "use --crf or --bitrate")
    warnings: list[str] = []
    if two_pass and rate.control != "bitrate":
        raise InputError("--two-pass needs --bitrate: under CRF or constant QP a first pass "
                         "changes nothing")
    if two_pass and config.encoder == "x265":
        raise InputError("--two-pass runs through FFmpeg (libx265/libx264); config "
                         f"{config.name} drives the x265 CLI")
    if mode in ("zones", "roi+zones") and str(config.params.get("bframes", "")) != "0":
        warnings.append(f"config {config.name} lets x265 use B-frames: zones then act in encode "
                        "order and shift by up to a mini-GOP at zone changes; for frame-exact "
                        "zones use bframes = 0 in the config of every mode compared")
    if "roi" in mode and codec in ("hevc", "h264"):
        warnings += check_roi_compatible(codec, rate.control, config.params_string(),
                                         config.preset, config.tune or None)
    return warnings


@dataclass
class EncodeJob:
    clip: Clip
    maps_root: Path | None
    mode: str
    rate: RatePoint
    config: EncoderConfig
    out: Path
    ffmpeg: Tool
    x265: Tool | None = None
    threads: int = 0
    skip_existing: bool = False
    zone_mode: str | None = None      # q | b (default: q under CRF, b under bitrate)
    cityscapes_root: str = ""
    two_pass: bool = False            # bitrate mode: analysis pass, then the real encode
    frame_progress: bool = False      # a tqdm bar over frames (in-process runs only)
    engine: str = "ffmpeg"            # libx265/libx264 through the FFmpeg CLI or "pyav" (inproc)
    svtav1: Tool | None = None        # SvtAv1EncApp (codec av1)

    @property
    def folder(self) -> Path:
        return self.out / self.config.codec / self.mode / self.rate.label

    @property
    def mp4(self) -> Path:
        return self.folder / f"{self.clip.clip_id}.{self.config.container}"

    @property
    def sidecar(self) -> Path:
        return self.folder / f"{self.clip.clip_id}.json"


def image2_escape(path: str) -> str:
    """``path`` as a literal inside an FFmpeg image2 pattern (``%`` doubled)."""
    return path.replace("%", "%%")


def source_relpath(clip: Clip, frame_id: str) -> str:
    """Where a frame of ``clip`` lives under a Cityscapes root."""
    folder = "leftImg8bit_sequence" if clip.source == "sequence" else "leftImg8bit"
    return f"{folder}/{clip.split}/{clip.city}/{frame_id}_leftImg8bit.png"


def concat_list_text(paths: Sequence[Path]) -> str:
    """An ffconcat list naming exactly ``paths`` (absolute), in order."""
    lines = ["ffconcat version 1.0"]
    for p in paths:
        lines.append("file '" + str(Path(p).absolute()).replace("'", "'\\''") + "'")
    return "\n".join(lines) + "\n"


def sources_digest(paths: Sequence[Path]) -> tuple[str, list[str]]:
    """The digest of the source frames' contents in order, and each frame's sha256 (recorded by
    encode as ``source_digest``/``source_digests``, checked by evaluate and by reuse); the files
    are read once and then known by their stat (:mod:`roienc.store`)."""
    each = files_digest(paths)          # InputError naming a frame that cannot be read
    return key_of("frames", files=each), each


def sources_sha1(paths: Sequence[Path]) -> str:
    """Fingerprint of the source frames' bytes, in order, as sidecars of roienc before the store
    recorded it (``source_sha1``; evaluate still checks such sidecars)."""
    h = hashlib.sha1()
    for p in paths:
        try:
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError as exc:
            raise InputError(f"cannot read source frame {p}: {exc.strerror}") from None
        h.update(b"\0")
    return h.hexdigest()


def input_args(clip: Clip, frame_list: Path | None = None) -> list[str]:
    """FFmpeg input options reading exactly the clip's PNG frames at 17 fps.

    A snippet (consecutive frame numbers) is read with an image2 pattern, ``%`` escaped; any other
    frame list through the ``ffconcat`` list ``frame_list`` (see :func:`concat_list_text`; ``-r``
    gives the same 1/17 time base and bitstream as the image2 demuxer's ``-framerate``).
    """
    first = clip.image_paths[0]
    if clip.source == "sequence":
        city, seq, start = parse_id(clip.frame_ids[0])
        pattern = (image2_escape(str(first.parent.absolute())) + "/"
                   + image2_escape(f"{city}_{seq:06d}_") + "%06d_leftImg8bit.png")
        return ["-framerate", f"{clip.fps:g}", "-start_number", str(start), "-i", pattern,
                "-frames:v", str(len(clip.frame_ids))]
    if frame_list is None:     # legacy form (export): a glob, which also reads stray files
        folder = str(first.parent).replace("[", "[[]").replace("*", "[*]").replace("?", "[?]")
        return ["-framerate", f"{clip.fps:g}", "-pattern_type", "glob", "-i",
                f"{folder}/*_leftImg8bit.png", "-frames:v", str(len(clip.frame_ids))]
    return ["-r", f"{clip.fps:g}", "-f", "concat", "-safe", "0", "-i", str(frame_list),
            "-frames:v", str(len(clip.frame_ids))]


def job_input_args(job: "EncodeJob") -> list[str]:
    """:func:`input_args` of ``job``'s clip; writes the ffconcat list beside the encode when the
    clip needs one (``<clip>.frames.ffconcat``)."""
    if job.clip.source == "sequence":
        return input_args(job.clip)
    lst = job.folder / f"{job.clip.clip_id}.frames.ffconcat"
    text = concat_list_text(job.clip.image_paths)
    if not lst.is_file() or lst.read_bytes() != text.encode("utf-8", "surrogateescape"):
        write_text(lst, text)
    return input_args(job.clip, lst)


def _rate_args(job: EncodeJob) -> list[str]:
    r = job.rate
    if r.control == "crf" and job.config.encoder == "libvpx-vp9":
        return ["-crf", f"{r.value:g}", "-b:v", "0"]     # constant quality: no bitrate cap
    if r.control == "crf":
        return ["-crf", f"{r.value:g}"]
    if r.control == "bitrate":
        return ["-b:v", f"{r.value:g}k"]
    if job.config.encoder == "libx264":
        return ["-qp", f"{r.value:g}"]
    return []  # x265: qp goes into -x265-params


def _frame_qp_offset(job: EncodeJob, base_qp: int) -> int:
    return int(round(job.rate.value)) - base_qp if job.rate.control == "crf" else 0


def roi_settings(job: EncodeJob, maps: ClipMaps | None) -> dict:
    """Encoder parameters the ROI machinery adds on top of the plain baseline (recorded in the
    sidecar as ``adds_to_baseline``; ``roi-settings`` encodes carry exactly these, no offsets).
    An all-zero delta map has no ROI and adds nothing: its encode is the baseline's bitstream."""
    if (job.config.codec == "hevc" and maps is not None and job.mode in QG_MODES
            and bool((maps.qp != maps.base_qp).any())):
        qg = qg_size_for(maps.block_size)
        if qg != config_qg_size(job.config):     # x265 would use it anyway: nothing added
            return {"qg-size": qg}
    return {}


X265_DEFAULT_QG = 32      # x265's qg-size when none is given (every preset)


def qg_size_for(block_size: int) -> int:
    """The x265 quantisation group size that honours ``block_size``-px ROI blocks."""
    return max(8, min(64, block_size))


def config_qg_size(cfg: EncoderConfig) -> int:
    """The qg-size an x265 encode of ``cfg`` uses without roienc adding one."""
    try:
        return int(cfg.params.get("qg-size", X265_DEFAULT_QG))
    except (TypeError, ValueError):
        return X265_DEFAULT_QG


def settings_reference_is_baseline(codec: str, block_size: int,
                                   config: str | Path | None = None) -> bool:
    """Whether the ``roi-settings`` reference of maps of ``block_size``-px blocks is the plain
    baseline's very command (nothing added: the qg-size it needs is the one x265 uses anyway)."""
    if codec != "hevc":
        return False
    cfg = load_config(config, codec)
    return cfg.encoder == "libx265" and qg_size_for(block_size) == config_qg_size(cfg)


def _encoder_params(job: EncodeJob, maps: ClipMaps | None, zones: str | None) -> dict:
    extra: dict = dict(roi_settings(job, maps))
    if job.config.codec == "hevc":
        if job.threads:
            extra["pools"] = job.threads
        if job.rate.control == "qp":
            extra["qp"] = f"{job.rate.value:g}"
        if zones:
            extra["zones"] = zones
    return extra


def build_ffmpeg_cmd(job: EncodeJob, tmp_out: Path, filter_args: list[str] | None,
                     extra_params: dict, *, program: Sequence[str] | None = None,
                     roi_file: Path | None = None) -> list[str]:
    """The FFmpeg command line of an encode. ``program`` replaces the FFmpeg binary (the
    in-process runner, which reads the same argv); ``roi_file`` adds its ``-roi FILE`` (per-run
    addroi chains) instead of a filter graph."""
    cfg = job.config
    cmd = [*(program or [job.ffmpeg.path]), "-hide_banner", "-nostdin", "-y", *job_input_args(job)]
    if filter_args:
        cmd += [*filter_args, "-map", "[vout]"]
    else:
        cmd += ["-vf", f"format={cfg.pix_fmt}", "-map", "0:v:0"]
    if roi_file is not None:
        cmd += ["-roi", str(roi_file)]
    cmd += ["-fps_mode", "passthrough", "-c:v", cfg.encoder]
    if cfg.preset:
        cmd += ["-preset", cfg.preset]
    if cfg.tune:
        cmd += ["-tune", cfg.tune]
    cmd += _rate_args(job)
    cmd += ["-pix_fmt", cfg.pix_fmt]
    if cfg.encoder == "libvpx-vp9":
        cmd += cfg.option_args(extra_params)
    else:
        params = cfg.params_string(extra_params)
        if params:
            cmd += [f"-{'x265' if cfg.codec == 'hevc' else 'x264'}-params", params]
    if cfg.encoder in ("libx264", "libvpx-vp9") and job.threads:
        cmd += ["-threads", str(job.threads)]
    if cfg.tag:
        cmd += ["-tag:v", cfg.tag]
    cmd += ["-an", str(tmp_out)]
    return cmd


def _x265_cli_args(job: EncodeJob, qpfile: Path | None, out_hevc: Path, extra: dict) -> list[str]:
    cfg = job.config
    cmd = [job.x265.path, "--input", "-", "--y4m", "--preset", cfg.preset]
    if cfg.tune:
        cmd += ["--tune", cfg.tune]
    r = job.rate
    cmd += {"crf": ["--crf", f"{r.value:g}"], "bitrate": ["--bitrate", f"{r.value:g}"],
            "qp": ["--qp", f"{r.value:g}"]}[r.control]
    for k, v in {**cfg.params, **extra}.items():
        if k in ("qp", "zones"):
            continue
        cmd += [f"--{k}", str(v)]
    if qpfile is not None:
        cmd += ["--qpfile", str(qpfile)]
    return cmd + ["--output", str(out_hevc)]


def run_pipeline(producer: list[str], consumer: list[str], log_path: Path | None = None) -> None:
    """``producer | consumer``; raise ToolError naming the side that failed, with its stderr."""
    with tempfile.TemporaryFile() as e1, tempfile.TemporaryFile() as e2:
        procs: list[subprocess.Popen] = []

        def launch(cmd: list[str], **streams) -> subprocess.Popen:
            try:
                procs.append(subprocess.Popen(cmd, **streams))
            except OSError as exc:
                raise ToolError(_launch_problem(cmd[0], exc), cmd) from None
            return procs[-1]
        try:       # an interrupt anywhere in here (Ctrl-C to this process only) stops both sides
            p1 = launch(producer, stdout=subprocess.PIPE, stderr=e1, stdin=subprocess.DEVNULL)
            p2 = launch(consumer, stdin=p1.stdout, stderr=e2, stdout=subprocess.DEVNULL)
            p1.stdout.close()  # so the producer gets SIGPIPE if the consumer dies
            rc2 = p2.wait()
            rc1 = p1.wait()
        except BaseException:
            for proc in procs:
                proc.kill()
            for proc in procs:
                proc.wait()
            raise
        e1.seek(0)
        e2.seek(0)
        err1, err2 = e1.read(), e2.read()
        if log_path is not None:
            write_log(log_path, err1 + b"\n" + err2)
        if rc2 != 0:
            raise ToolError(f"{Path(consumer[0]).name} failed", consumer, rc2, tail(err2))
        if rc1 != 0:
            raise ToolError(f"{Path(producer[0]).name} failed", producer, rc1, tail(err1))


def maps_inputs(job: EncodeJob) -> dict | None:
    """What an encode reads of its maps: the digest of every frame's QP grid file (None where one
    is missing: the encode then fails naming it) and the folder's base QP, block size and delta.
    The plain baseline reads none."""
    if job.maps_root is None or job.mode == "baseline":
        return None
    try:
        params = load_params(job.maps_root)
    except InputError:
        params = {}
    grids = []
    for fid in job.clip.frame_ids:
        p = frame_prefix(job.maps_root, job.clip.split, job.clip.city, fid)
        p = p.with_name(f"{fid}_qp_map.npy")
        grids.append(file_digest(p) if p.is_file() else None)
    return {"qp_maps": key_of("qp-maps", grids=grids),
            **{k: params.get(k) for k in ("base_qp", "block_size", "delta")}}


def job_signature(job: EncodeJob) -> dict:
    """What an encode depends on besides the folder it lands in (codec, mode and rate point) and
    its source frames: the resolved encoder config (preset included), the frames, the contents of
    the maps it reads (:func:`maps_inputs`, not their folder: maps rebuilt in place are new
    inputs), zone mode, two-pass, threads and the engine. Reuse needs an equal signature. The
    config's file path is not part of it (its contents are): the same packaged config of another
    install or checkout is the same setting."""
    sig = {"config": _without_path(job.config.as_dict()), "frame_ids": list(job.clip.frame_ids),
           "maps": maps_inputs(job), "zone_mode": job.zone_mode,
           "two_pass": job.two_pass, "threads": job.threads, "roienc": __version__}
    if uses_pyav(job):                    # another encoder build: a CLI encode is not reused
        sig["engine"] = f"pyav {(inproc_versions() or {}).get('ffmpeg')}"
    return json.loads(json.dumps(sig, default=str))       # as it reads back from the sidecar


def _without_path(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "path"}


def _reuse_problem(job: EncodeJob, signature: dict, src_digest: str | None) -> str | None:
    """Why the existing encode of ``job`` cannot be reused (None: it can): its sidecar must say
    ok with the same settings signature and source frames, and the file must hold the bytes the
    sidecar recorded (its sha256: a truncated, replaced or padded file is encoded again)."""
    try:
        old = read_json(job.sidecar)
    except InputError as exc:
        return f"unreadable sidecar ({exc})"
    if not isinstance(old, dict) or old.get("status") != "ok":
        return "the existing encode did not succeed"
    recorded = old.get("signature")
    if isinstance(recorded, dict) and isinstance(recorded.get("config"), dict):
        recorded = {**recorded, "config": _without_path(recorded["config"])}   # as earlier versions wrote it
    if recorded != signature:
        return "settings changed since the existing encode"
    if src_digest is None or old.get("source_digest") != src_digest:
        return "the source frames differ from the ones encoded (or were not recorded)"
    if old.get("mp4_sha256") != file_digest(job.mp4):
        return f"{job.mp4.name} is not the file the sidecar recorded (truncated or replaced)"
    return None


def encode_clip(job: EncodeJob) -> dict:
    """Encode one clip in one mode at one rate point; return (and write) its sidecar.

    Never raises for an encoder failure: the sidecar records ``status='failed'``, the error with
    the command and the tail of stderr, and the caller goes on with the next clip.
    """
    signature = job_signature(job)
    src_digest, src_each = None, None
    if not job.clip.missing:
        try:
            src_digest, src_each = sources_digest(job.clip.image_paths)
        except InputError:
            pass                          # recorded below as the encode's failure
    if job.skip_existing and job.sidecar.is_file() and job.mp4.is_file():
        why = _reuse_problem(job, signature, src_digest)
        if why is None:
            old = read_json(job.sidecar)
            old["skipped_existing"] = True
            return old
        log.info("%s: %s, encoding again", job.sidecar, why)
    ensure_dir(job.folder)
    for stale in clean_stale_temps(job.folder):          # leftovers of a run killed hard
        log.info("removed %s (left by a killed run)", stale)
    clip, cfg = job.clip, job.config
    side: dict = {
        "signature": signature,
        "clip": clip.clip_id, "split": clip.split, "city": clip.city, "source": clip.source,
        "codec": cfg.codec, "mode": job.mode, "rate_control": job.rate.control,
        "rate_value": job.rate.value, "rate_label": job.rate.label, "two_pass": job.two_pass,
        "frames": len(clip.frame_ids),
        "fps": clip.fps, "width": None, "height": None, "pix_fmt": cfg.pix_fmt, "bytes": None,
        "kbps": None, "encode_seconds": None, "commands": [], "encoder": cfg.encoder,
        # the bitstream depends on the encoder's threads: 0 = its own choice (from the CPUs)
        "threads": job.threads, "cpu_count": os.cpu_count(),
        "encoder_version": (job.x265.version if cfg.encoder == "x265" and job.x265 else
                            f"SVT-AV1 {job.svtav1.version}" if cfg.encoder == "SvtAv1EncApp"
                            and job.svtav1 else job.ffmpeg.version),
        "ffmpeg_version": job.ffmpeg.version, "ffmpeg_path": job.ffmpeg.path,
        "engine": {"x265": "x265-cli", "SvtAv1EncApp": "svtav1-cli"}.get(cfg.encoder, "ffmpeg"),
        "roienc_version": __version__, "config": cfg.as_dict(), "config_path": cfg.path,
        "maps": str(job.maps_root) if job.maps_root and job.mode != "baseline" else None,
        "cityscapes_root": str(Path(job.cityscapes_root).absolute()) if job.cityscapes_root else "",
        "frame_ids": list(clip.frame_ids),
        # what evaluate compares the encode with: the exact files (absolute), where they sit
        # under a Cityscapes root (for --cityscapes-root elsewhere) and a hash of their bytes
        "source_files": [str(Path(p).absolute()) for p in clip.image_paths],
        "source_relpaths": [source_relpath(clip, f) for f in clip.frame_ids],
        "source_digest": src_digest, "source_digests": src_each,
        "input_args": job_input_args(job) if clip.image_paths else [], "adapter": {},
        "status": "ok", "error": None,
    }
    if uses_pyav(job):
        # the encoder is the FFmpeg of the av wheel; job.ffmpeg (the CLI) only counts packets
        info = inproc_versions() or {}
        side.update(engine="pyav", encoder_version=f"FFmpeg {info.get('ffmpeg')} (PyAV {info.get('av')})",
                    ffmpeg_version=info.get("ffmpeg"), pyav=info)
    t0 = time.perf_counter()
    try:
        if clip.missing:
            raise InputError(f"snippet {clip.clip_id} lacks frames {', '.join(clip.missing[:5])}"
                             f"{' ...' if len(clip.missing) > 5 else ''}: a clip needs contiguous frames")
        if src_digest is None:
            side["source_digest"], side["source_digests"] = sources_digest(clip.image_paths)
        width, height = check_clip_frames(clip)       # whole PNGs of one size, or the frame named
        side.update(width=width, height=height)
        maps = None
        if job.mode != "baseline":          # the plain baseline reads no maps
            if job.maps_root is None:
                raise InputError(f"--mode {job.mode} needs --maps")
            maps = load_clip_maps(job.maps_root, clip)
        if cfg.pix_fmt.startswith("yuv420") and (width % 2 or height % 2):
            raise InputError(f"{clip.clip_id}: {width}x{height} frames cannot be coded as "
                             f"{cfg.pix_fmt} (4:2:0 needs even width and height)")
        if maps is not None and (maps.width, maps.height) != (width, height):
            raise InputError(f"maps of {clip.clip_id} are {maps.width}x{maps.height} but its frames "
                             f"are {width}x{height}: rebuild the maps from this dataset")
        _encode(job, maps, side)
        sizes = packet_sizes(job.ffmpeg.path, job.mp4)
        side["bytes"] = job.mp4.stat().st_size
        side["mp4_sha256"] = file_digest(job.mp4)
        side["video_bytes"] = int(sum(sizes))
        side["frames_encoded"] = len(sizes)
        side["kbps"] = bitrate_kbps(sizes, clip.fps)
        if len(sizes) != len(clip.frame_ids):
            raise ToolError(f"encoded {len(sizes)} frames, expected {len(clip.frame_ids)}",
                            side["commands"][-1] if side["commands"] else None)
    except RoiencError as exc:
        side.update(status="skipped" if isinstance(exc, InputError) else "failed", error=str(exc))
        if job.mp4.exists() and side["status"] != "ok":
            job.mp4.unlink()
    side["encode_seconds"] = round(time.perf_counter() - t0, 3)
    write_json(job.sidecar, side)
    return side


def frame_offsets(dq) -> dict:
    """Per frame, the QP offsets the encoder is given (what a rate budget chose shows here):
    the lowest, the mean over the blocks below 0 (0 when none), the highest, and the share of
    blocks below 0."""
    import numpy as np

    d = np.asarray(dq, np.float64).reshape(len(dq), -1)
    neg = d < 0
    n = neg.sum(axis=1)
    mean_neg = np.where(n > 0, np.where(neg, d, 0).sum(axis=1) / np.maximum(n, 1), 0.0)
    return {"min": d.min(axis=1).astype(int).tolist(), "mean_roi": np.round(mean_neg, 3).tolist(),
            "max": d.max(axis=1).astype(int).tolist(),
            "roi_block_share": np.round(n / d.shape[1], 4).tolist()}


def _encode(job: EncodeJob, maps: ClipMaps | None, side: dict) -> None:
    cfg, clip = job.config, job.clip
    adapter: dict = side["adapter"]
    zones = None
    fqps = None
    if maps is not None:
        fqps = frame_qps(maps.qp)
        adapter.update(block_size=maps.block_size, base_qp=maps.base_qp, delta=maps.delta,
                       frame_offsets=frame_offsets(maps.dq))
    side["adds_to_baseline"] = {
        "encoder_params": roi_settings(job, maps),
        "roi": {"roi": "per-frame addroi offsets", "roi+zones": "per-frame addroi offsets and zones",
                "zones": "x265 zones (frame QPs)", "qpfile": "x265 CLI with a qpfile (frame QPs)"
                }.get(job.mode, "none")}
    if job.mode in ("zones", "roi+zones", "qpfile"):
        zmode = job.zone_mode or ("q" if job.rate.control == "crf" else "b")
        if job.mode != "qpfile":
            if zmode == "q" and job.rate.control == "bitrate":
                raise InputError("--zone-mode q with a target bitrate fixes absolute QPs and defeats "
                                 "the rate control; use --zone-mode b")
            off = _frame_qp_offset(job, maps.base_qp)
            zones = zones_string(fqps, zmode, qp_offset=off)
            adapter.update(zones=zones, zone_mode=zmode, frame_qps=fqps, qp_offset=off,
                           qp_rule=("frame QP = round(crf) + (frame_qp - base_qp); CRF ~ QP is an "
                                    "approximation" if zmode == "q" else
                                    "b = 2**((mean_qp - frame_qp)/6), bitrate multiplier around the clip mean"))
    extra = _encoder_params(job, maps, zones)
    log_path = job.folder / f"{clip.clip_id}.log"

    if cfg.encoder == "x265":
        qpf = None
        if job.mode == "qpfile":
            if job.rate.control != "crf":
                raise InputError("qpfile mode forces a QP on every frame; give --crf (its value "
                                 "sets the QP level: frame QP = round(crf) + frame delta)")
            off = _frame_qp_offset(job, maps.base_qp)
            keyint = int(cfg.params.get("keyint", 250))
            qpf = job.folder / f"{clip.clip_id}.qpfile.txt"
            write_text(qpf, qpfile_text(fqps, qp_offset=off, keyint=keyint))
            adapter.update(qpfile=str(qpf), frame_qps=fqps, qp_offset=off,
                           qp_rule="frame QP = round(crf) + (frame_qp - base_qp); types I every "
                                   "keyint frames, P elsewhere (bframes=0)")
        with atomic_path(job.mp4) as tmp_mp4, atomic_path(job.folder / f"{clip.clip_id}.hevc") as tmp_hevc:
            dec = [job.ffmpeg.path, "-hide_banner", "-nostdin", *job_input_args(job),
                   "-vf", f"format={cfg.pix_fmt}", "-f", "yuv4mpegpipe", "-"]
            enc = _x265_cli_args(job, qpf, tmp_hevc, {k: v for k, v in extra.items() if k != "pools"}
                                 | ({"pools": job.threads} if job.threads else {}))
            side["commands"] += [dec, enc]
            run_pipeline(dec, enc, log_path)
            mux = [job.ffmpeg.path, "-hide_banner", "-nostdin", "-y", "-framerate", f"{clip.fps:g}",
                   "-i", str(tmp_hevc), "-c", "copy"] + (["-tag:v", cfg.tag] if cfg.tag else []) + [str(tmp_mp4)]
            side["commands"].append(mux)
            run(mux)
        (job.folder / f"{clip.clip_id}.hevc").unlink(missing_ok=True)
        return

    if cfg.encoder == "SvtAv1EncApp":
        _encode_svtav1(job, maps, side, log_path)
        return

    filter_args = None
    roi_file = None
    if job.mode in ("roi", "roi+zones"):
        grids, qp_range, vpx = maps.dq, qp_range_for(cfg.pix_fmt), cfg.encoder == "libvpx-vp9"
        if vpx:
            # libvpx units, at most 7 non-zero levels a frame; qoffset = delta/63 (libvpx:
            # delta = trunc(qoffset*63), exact for every integer delta); a whole-frame 0 region
            # last on every frame, so no frame inherits the previous frame's map
            grids, qp_range = vpx_delta_grids(maps.dq, cfg.qp_scale), VPX_MAX_DELTA
            levels = [int(np.count_nonzero(np.unique(g))) for g in grids]
            adapter.update(vpx_deltas=frame_offsets(grids), vpx_levels_per_frame=levels,
                           vpx_rule=("libvpx delta = round(dq * qp_scale) clipped to -63..63, "
                                     "then per frame at most 7 non-zero levels minimising the "
                                     "block-weighted squared error (exact 1-D DP, 0 kept); "
                                     "qoffset = delta/63; whole-frame qoffset 0 region listed "
                                     "last on every frame (libvpx keeps the previous map "
                                     "otherwise); key frames: libvpx applies no ROI"),
                           qp_scale=cfg.qp_scale)
        has_nonzero = bool(np.any(grids))
        fs = perframe_filter_script(grids, maps.block_size, maps.width, maps.height,
                                    qp_range=qp_range, pix_fmt=cfg.pix_fmt,
                                    router=graph_router(job.ffmpeg), clear=vpx and has_nonzero)
        adapter.update(rects_per_frame=fs.rects_per_frame, runs=len(fs.runs), qp_range=qp_range)
        if fs.has_roi and has_nonzero:
            script = job.folder / f"{clip.clip_id}.filter.txt"
            write_text(script, fs.text)
            adapter["filter_script"] = str(script)
            filter_args = ffmpeg_filter_script_args(job.ffmpeg, script)
            if uses_pyav(job):
                roi_file = job.folder / f"{clip.clip_id}.roi.json"
                with atomic_path(roi_file) as tmp:
                    inproc.write_roi(tmp, fs.runs, fs.chains, qp_range=qp_range,
                                     width=maps.width, height=maps.height)
                adapter["roi_file"] = str(roi_file)
        else:
            adapter["note"] = "all-zero delta QP map: no ROI, command identical to baseline"
    if uses_pyav(job):
        # in-process: the same argv, run by roienc/inproc.py through PyAV's FFmpeg libraries,
        # the ROI as per-run addroi chains (-roi FILE) instead of the one big filter graph
        with atomic_path(job.mp4) as tmp:
            cmd = build_ffmpeg_cmd(job, tmp, None, extra, roi_file=roi_file,
                                   program=[sys.executable, str(Path(inproc.__file__).absolute())])
            side["commands"].append(cmd)
            side["ffmpeg_equivalent"] = {
                "note": "the same encode through the FFmpeg CLI and the filter script (another "
                        "FFmpeg/x265 build than the one that encoded: not the same bitstream)",
                "command": build_ffmpeg_cmd(job, tmp, filter_args, extra)}
            _run_encoder(job, cmd, log_path, "")
        m = re.search(rb"HEVC encoder version (\S+)|\b264 - core (\d+(?: r\d+)?)", log_path.read_bytes()
                      if log_path.is_file() else b"")
        if m:
            side["pyav"] = {**side.get("pyav", {}), "encoder_build": (
                f"x265 {m.group(1).decode()}" if m.group(1) else f"x264 core {m.group(2).decode()}")}
        return
    if not job.two_pass:
        with atomic_path(job.mp4) as tmp:
            cmd = build_ffmpeg_cmd(job, tmp, filter_args, extra)
            side["commands"].append(cmd)
            _run_encoder(job, cmd, log_path, "")
        return
    # two-pass: the same graph (ROI included) twice, the first pass writing only its statistics
    with tempfile.TemporaryDirectory(prefix=f".{clip.clip_id}.2pass.{temp_tag()}.",
                                     dir=job.folder) as stats_dir:
        stats = Path(stats_dir) / "stats"
        with atomic_path(job.mp4) as tmp:
            cmds = [_with_pass(build_ffmpeg_cmd(job, tmp, filter_args, extra), cfg, n, stats)
                    for n in (1, 2)]
            side["commands"] += cmds
            _run_encoder(job, cmds[0], log_path, " pass 1")
            _run_encoder(job, cmds[1], log_path.with_name(f"{clip.clip_id}.pass2.log"), " pass 2")


def _encode_svtav1(job: EncodeJob, maps: ClipMaps | None, side: dict, log_path: Path) -> None:
    """AV1: FFmpeg decodes to y4m | SvtAv1EncApp (with ``--roi-map-file`` in ROI mode) -> IVF,
    remuxed into MP4 (see :mod:`roienc.svtav1`)."""
    from . import svtav1

    cfg, clip, adapter = job.config, job.clip, side["adapter"]
    roi_map = None
    if job.mode == "roi" and maps is not None:
        grids = svtav1.roi_map_grids(maps.dq, maps.block_size, maps.width, maps.height,
                                     cfg.qp_scale)
        if np.any(grids):
            roi_map = job.folder / f"{clip.clip_id}.roimap.txt"
            write_text(roi_map, svtav1.roi_map_text(grids))
            adapter.update(roi_map_file=str(roi_map), svt_offsets=frame_offsets(grids),
                           svt_rule=("qindex offset per 64x64 block = round(area mean of the map "
                                     "QP delta * qp_scale), clipped to -255..255, at most 7 "
                                     "non-zero levels a picture (block-weighted optimal "
                                     "quantiser); every picture listed"), qp_scale=cfg.qp_scale)
        else:
            adapter["note"] = "all-zero delta QP map: no ROI map file, command identical to baseline"
    with atomic_path(job.mp4) as tmp_mp4, atomic_path(job.folder / f"{clip.clip_id}.ivf") as tmp_ivf:
        dec = [job.ffmpeg.path, "-hide_banner", "-nostdin", *job_input_args(job),
               "-vf", f"format={cfg.pix_fmt}", "-f", "yuv4mpegpipe", "-"]
        enc = svtav1.cli_args(job.svtav1, preset=cfg.preset, rate_control=job.rate.control,
                              rate_value=job.rate.value, params=cfg.params, out_ivf=str(tmp_ivf),
                              roi_map=str(roi_map) if roi_map else None, threads=job.threads)
        side["commands"] += [dec, enc]
        run_pipeline(dec, enc, log_path)
        mux = [job.ffmpeg.path, "-hide_banner", "-nostdin", "-y", "-i", str(tmp_ivf), "-c", "copy",
               *(["-tag:v", cfg.tag] if cfg.tag else []), str(tmp_mp4)]
        side["commands"].append(mux)
        run(mux)
    (job.folder / f"{clip.clip_id}.ivf").unlink(missing_ok=True)


class FrameProgress:
    """A tqdm bar over a clip's frames, fed by FFmpeg's ``frame=`` statistics on stderr."""

    PATTERN = re.compile(rb"frame=\s*(\d+)")

    def __init__(self, total: int, desc: str) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="frame", leave=False, position=1,
                        dynamic_ncols=True)

    def __call__(self, chunk: bytes) -> None:
        found = self.PATTERN.findall(chunk)
        if found:
            n = min(int(found[-1]), self.bar.total)
            if n > self.bar.n:
                self.bar.update(n - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _run_encoder(job: EncodeJob, cmd: list[str], log_path: Path, what: str) -> None:
    from .executor import interactive_progress
    if not job.frame_progress or not interactive_progress():   # no nested bar in logs/pipes
        run(cmd, log_path=log_path)
        return
    bar = FrameProgress(len(job.clip.frame_ids), f"{job.clip.clip_id} {job.mode} {job.rate.label}{what}")
    try:
        run(cmd, log_path=log_path, capture_stdout=False, on_stderr=bar)
    finally:
        bar.close()


def ffmpeg_dict_escape(value: str) -> str:
    """``value`` as one value of an FFmpeg ``key=value:key=value`` option (``-x265-params``):
    ``\\``, ``'``, ``:`` and ``=`` backslash-escaped (FFmpeg's av_get_token rules)."""
    return re.sub(r"([\\':=])", r"\\\1", value)


def _with_pass(cmd: list[str], cfg: EncoderConfig, n: int, stats: Path) -> list[str]:
    """``cmd`` as pass ``n`` of a two-pass encode; pass 1 discards its video (``-f null``)."""
    cmd = list(cmd)
    if cfg.encoder == "libx265":
        i = cmd.index("-x265-params") if "-x265-params" in cmd else None
        extra = f"pass={n}:stats={ffmpeg_dict_escape(str(stats))}"
        if i is None:
            cmd[-1:-1] = ["-x265-params", extra]
        else:
            cmd[i + 1] = f"{cmd[i + 1]}:{extra}"
    else:
        cmd[-1:-1] = ["-pass", str(n), "-passlogfile", str(stats)]
    if n == 1:
        cmd[-1:] = ["-f", "null", "-"]
    return cmd


_CHECKED_CONFIGS: dict[tuple, str | None] = {}
_BAD_OPTION = re.compile(r"Unknown option|Invalid value|Error parsing option|\[error\]|Bad value",
                         re.IGNORECASE)


def check_encoder_options(ff: Tool, cfg: EncoderConfig, engine: str = "ffmpeg") -> None:
    """Refuse a config whose preset, tune or ``[params]`` the encoder does not accept.

    FFmpeg's libx265/libx264 wrappers only *log* an unknown or malformed ``-x265-params`` /
    ``-x264-params`` entry ("Unknown option: aq-mod.") and encode anyway, so a typo would pass as
    an ok encode with the option silently dropped. A 1-frame trial encode with the config's own
    settings shows what the encoder says; any such line refuses the config up front.
    """
    if cfg.encoder not in INPROC_ENCODERS:
        return                            # the x265 CLI exits with an error on unknown options
    vpx = cfg.encoder == "libvpx-vp9"
    params = " ".join(cfg.option_args()) if vpx else cfg.params_string()
    key = (ff.path if engine != "pyav" else "pyav", cfg.encoder, cfg.preset, cfg.tune, cfg.pix_fmt,
           params)
    if key not in _CHECKED_CONFIGS:
        flag = f"{'x265' if cfg.codec == 'hevc' else 'x264'}-params"
        if engine == "pyav":
            opts = {**({"preset": cfg.preset} if cfg.preset else {}),
                    **({"tune": cfg.tune} if cfg.tune else {}),
                    **({k: str(v) for k, v in cfg.params.items()} if vpx else
                       ({flag: params} if params else {}))}
            cmd = [sys.executable, str(Path(inproc.__file__).absolute()), "--check",
                   json.dumps({"encoder": cfg.encoder, "options": opts, "pix_fmt": cfg.pix_fmt})]
        else:
            cmd = [ff.path, "-hide_banner", "-nostdin", "-loglevel", "warning", "-f", "lavfi", "-i",
                   "color=c=gray:s=64x64:r=17", "-frames:v", "1", "-c:v", cfg.encoder,
                   *(["-preset", cfg.preset] if cfg.preset else []),
                   *(["-tune", cfg.tune] if cfg.tune else []),
                   "-pix_fmt", cfg.pix_fmt,
                   *(cfg.option_args() if vpx else [f"-{flag}", params] if params else []),
                   "-f", "null", "-"]
        problem = None
        try:
            err = run(cmd).stderr.decode("utf-8", "replace")
            bad = [ln.strip() for ln in err.splitlines() if _BAD_OPTION.search(ln)]
            if bad:
                problem = bad[0]
        except ToolError as exc:
            problem = (exc.stderr_tail or str(exc)).strip().splitlines()[-1]
        _CHECKED_CONFIGS[key] = problem
    problem = _CHECKED_CONFIGS[key]
    if problem:
        raise InputError(f"config {cfg.path or cfg.name}: {cfg.encoder} does not accept its settings "
                         f"(preset {cfg.preset!r}{', tune ' + repr(cfg.tune) if cfg.tune else ''}, "
                         f"params {params!r}): {problem}")


def error_summary(error: str | None) -> str:
    """One console line of an encode's error: its first line, and where that only says that a
    program failed ("python3 failed"), the last line the program printed (the real cause)."""
    lines = [ln.strip() for ln in (error or "").splitlines() if ln.strip()]
    if not lines:
        return ""
    first = lines[0]
    if first.endswith(" failed") and len(lines) > 1 and "stderr (tail):" in lines:
        said = lines[lines.index("stderr (tail):") + 1:]
        errs = [ln for ln in said if re.search(r"error|invalid|cannot|no such|failed", ln, re.I)]
        cause = (errs or said or lines)[-1]
        if "inproc.py" in error and first.startswith("python"):
            first = "the in-process encoder (PyAV) failed"
        return f"{first}: {cause} (the sidecar has the command and the whole message)"
    return first


def check_jobs(jobs) -> int:
    """``jobs`` (encodes at once) as a whole number of at least 1."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"--jobs must be a whole number of at least 1, got {jobs!r}")
    return jobs


def encode_plans(codec: str, modes: Sequence[str], rates: Sequence[RatePoint] | None,
                 config: str | Path | None, preset: str | None,
                 two_pass: bool) -> list[tuple[str, EncoderConfig, list[RatePoint], list[str]]]:
    """Per mode: its resolved encoder config (the packaged hevc_x265cli one for qpfile unless
    ``config`` is given; ``preset`` over the config's), its rate points (without ``rates``: the
    config's ``[rate]``) and the warnings of :func:`validate_mode`, which refuses an impossible
    mode, rate or setting with an InputError naming the mode and rate."""
    plans = []
    for mode in modes:
        cfg = load_config(config if config is not None else
                          ("hevc_x265cli" if mode == "qpfile" else None), codec)
        if preset:
            cfg.preset = preset
        mode_rates = list(rates) if rates is not None else [RatePoint(*cfg.default_rate())]
        warnings = []
        for rate in mode_rates:
            try:
                warnings += validate_mode(codec, mode, rate, cfg, two_pass)
            except InputError as exc:
                raise InputError(f"mode {mode} ({cfg.name}{', --preset ' + preset if preset else ''}"
                                 f", {rate.label}): {exc}") from None
        plans.append((mode, cfg, mode_rates, warnings))
    return plans


def run_engine(engine: str | None, codec: str, ffmpeg: str | None, two_pass: bool) -> str:
    """:func:`resolve_engine` for the codec's FFmpeg encoder, an FFmpeg named by ``--ffmpeg`` or
    ``$ROIENC_FFMPEG`` counting as asked for (the engine of every encode of a run)."""
    return resolve_engine(engine, FFMPEG_ENCODERS.get(codec, ""), two_pass=two_pass,
                          ffmpeg_named=bool(ffmpeg or os.environ.get("ROIENC_FFMPEG")))


def check_threads(threads: int | None) -> None:
    """Refuse a ``--threads`` value no encoder takes (None: the default)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or not 1 <= threads <= 256):
        raise InputError(f"--threads must be an integer from 1 to 256, got {threads!r}")


def encode_many(clips: Sequence[Clip], maps_root: str | Path | None, *, codec: str = "hevc",
                modes: Sequence[str] = ("baseline",), rates: Sequence[RatePoint] | None = None,
                config: str | Path | None = None, out: str | Path = "enc", jobs: int = 1,
                ffmpeg: str | None = None, x265: str | None = None, skip_existing: bool = False,
                svtav1: str | None = None,
                zone_mode: str | None = None, cityscapes_root: str | Path = "",
                preset: str | None = None, executor: ExecutorSpec | None = None,
                progress: bool = True, two_pass: bool = False,
                engine: str | None = None, threads: int | None = None) -> list[dict]:
    """Encode every clip in every mode at every rate point; return the sidecars.

    Refusals (impossible mode/codec/rate combinations, missing x265) raise before anything runs;
    a failing encode is recorded in its sidecar and the run goes on. ``jobs`` encodes run at
    once (local processes, threads per encode divided accordingly) unless ``executor`` sends
    them to Dask. ``engine``: how libx265/libx264 encodes run (see :data:`ENGINES`; None:
    ``$ROIENC_ENGINE`` or auto), one engine for the whole run.

    ``threads``: each encode's threads (x265's ``pools``, libx264's and libvpx's ``-threads``,
    SVT-AV1's ``--lp``); None: the CPUs divided among ``jobs``, or with one job the encoder's own
    choice. The bitstream depends on it (x265: another pool size, another bitstream, each
    reproducible), so a given value reproduces a run's bytes on any machine, whatever ``jobs``;
    the sidecar records it (``threads``, 0 = the encoder's choice, and ``cpu_count``).
    """
    if not clips:
        raise InputError("no clips to encode (check --split/--cities/--sequence)")
    if not modes:
        raise InputError(f"--mode is empty: give one or more of {', '.join(MODES)}")
    if rates is not None and not rates:
        raise InputError("no rate point given (empty --crf/--bitrate/--qp list)")
    check_jobs(jobs)
    out = ensure_dir(out)
    ff = find_ffmpeg(ffmpeg)
    plans = []
    for mode, cfg, mode_rates, warnings in encode_plans(codec, modes, rates, config, preset,
                                                       two_pass):
        if mode == "qpfile" and config is None:
            log.info("qpfile mode: using the packaged hevc_x265cli config")
        for w in warnings:
            log.warning("%s: %s", mode, w)
        plans.append((mode, cfg, mode_rates))
    needs_x265 = any(cfg.encoder == "x265" for _, cfg, _ in plans)
    x = find_x265(x265) if needs_x265 else None
    svt = None
    if codec == "av1":
        from .svtav1 import find_svtav1
        # raises naming why: missing, or (ROI modes) too old for --roi-map-file
        svt = find_svtav1(svtav1, need_roi=any(m != "baseline" for m in modes))
    enc_name = FFMPEG_ENCODERS.get(codec, "")
    eng = run_engine(engine, codec, ffmpeg, two_pass)
    if (eng == "ffmpeg" and any(cfg.encoder == enc_name for _, cfg, _ in plans)
            and enc_name not in ff.encoders):
        raise ToolError(f"{ff.path} (FFmpeg {ff.version}) has no {enc_name}; install an FFmpeg "
                        "with it or unset ROIENC_FFMPEG to use the bundled one")
    check_threads(threads)                    # before the trial encodes, not after
    for _, cfg, _ in plans:
        check_encoder_options(ff, cfg, eng)
    if maps_root is not None:
        load_params(maps_root)
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0
    work = [EncodeJob(c, Path(maps_root) if maps_root else None, mode, rate, cfg, out, ff, x,
                      threads, skip_existing, zone_mode, str(cityscapes_root), two_pass,
                      engine=eng, svtav1=svt)
            for c in clips for mode, cfg, mode_rates in plans for rate in mode_rates]
    spec = executor or ExecutorSpec("local", jobs)
    if progress and spec.kind == "local" and spec.resolved_workers() == 1:
        for job in work:                  # encodes run in this process: show their frames too
            job.frame_progress = True
    results: list[dict] = []
    with locked_run(out, "roienc encode", wait=True):
        for res in run_tasks(encode_clip, work, spec, desc="encode", unit="clip", progress=progress):
            results.append(res)
            if res["status"] != "ok":
                log.warning("%s %s %s: %s", res["clip"], res["mode"], res["rate_label"],
                            error_summary(res["error"]))
    results.sort(key=lambda r: (r["clip"], r["mode"], r["rate_control"], r["rate_value"]))
    return results
