"""Encode runner: Cityscapes clips + QP maps -> real x265/x264/libvpx-vp9/SVT-AV1 encodes with
sidecars.

Codecs (what each honours of a map: docs/codecs.md): ``hevc`` (libx265, or the x265 CLI for
qpfile), ``h264`` (libx264), ``vp9`` (libvpx-vp9: addroi regions in libvpx units, at most 7
non-zero levels a frame, a whole-frame zero region last on every frame since libvpx keeps a
previous map) and ``av1`` (the SvtAv1EncApp CLI with ``--roi-map-file``, frames piped as y4m).
Each encoder is a class of :mod:`roienc.encoders` holding its refusals, ROI payload, command and
sidecar fields; this module is the runner around them (plans, engines, jobs, the sidecar's common
fields, reuse, the run) and dispatches each encode to the config's class.

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

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .configs import CRF_MAX, EncoderConfig, check_rate, load_config
from .dataset import Clip, check_clip_frames
from .encoders import ENCODERS, FFMPEG_ENCODERS, MODE_CONFIGS, encoder_class, encoder_for
# the job and the helpers every encoder shares, importable from here as before
from .encoders.base import (EncodeJob, FrameProgress, RatePoint, ROI_DESCRIPTIONS,  # noqa: F401
                            concat_list_text, frame_offsets, image2_escape, input_args,
                            job_input_args, parse_bitrate, run_pipeline)
from .encoders.ffmpeg import inproc_versions
from .encoders.x265cli import cli_args as _x265_cli_args  # noqa: F401 - roienc export
from .encoders.x26x import (QG_MODES, X265_DEFAULT_QG, config_qg_size, ffmpeg_dict_escape,  # noqa: F401
                            qg_size_for)
from .errors import InputError, RoiencError, ToolError
from .executor import ExecutorSpec, run_tasks
from . import inproc
from .fileio import clean_stale_temps, ensure_dir, read_json, write_json
from .maps import ClipMaps, frame_prefix, load_clip_maps, load_params
from .store import file_digest, files_digest, key_of, locked_run
from .probe import bitrate_kbps, frame_sizes
from .tools import Tool, find_ffmpeg

log = logging.getLogger(__name__)

MODES = ("baseline", "roi-settings", "roi", "zones", "roi+zones", "qpfile")
OFFSET_MODES = ("roi", "roi+zones")      # the modes that hand the maps' block offsets to the encoder
# encoders the in-process runner (roienc/inproc.py, the av wheel's FFmpeg) can run
INPROC_ENCODERS = tuple(name for name, cls in ENCODERS.items() if cls.ffmpeg_library)
# how libx265/libx264/libvpx-vp9 encodes run: "pyav" (in-process runner, roienc/inproc.py, through
# the FFmpeg libraries of the av wheel: ROI side data per frame, linear in clip length) or "ffmpeg"
# (the FFmpeg CLI with a per-frame filter script); "auto": pyav when it has the encoder, unless an
# FFmpeg was named (--ffmpeg, $ROIENC_FFMPEG) or two-pass is asked (CLI only)
ENGINES = ("auto", "pyav", "ffmpeg")


def uses_pyav(job: EncodeJob) -> bool:
    """Whether ``job`` encodes through the in-process runner (libx265/libx264/libvpx-vp9, one
    pass)."""
    return encoder_for(job.config).in_process(job)


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


def validate_mode(codec: str, mode: str, rate: RatePoint, config: EncoderConfig,
                  two_pass: bool = False) -> list[str]:
    """Refuse impossible combinations with the reason; return warnings. Besides the mode's name
    and the codec's rate scale, what is refused is the encoder's own (:meth:`Encoder.check
    <roienc.encoders.base.Encoder.check>`)."""
    if mode not in MODES:
        raise InputError(f"--mode {mode!r}: choose from {', '.join(MODES)}")
    check_rate(rate.control, rate.value, qp_max=CRF_MAX.get(codec, 51))
    return encoder_for(config).check(mode, rate, two_pass)


def source_relpath(clip: Clip, frame_id: str) -> str:
    """Where a frame of ``clip`` lives under a Cityscapes root."""
    folder = "leftImg8bit_sequence" if clip.source == "sequence" else "leftImg8bit"
    return f"{folder}/{clip.split}/{clip.city}/{frame_id}_leftImg8bit.png"


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


def roi_settings(job: EncodeJob, maps: ClipMaps | None) -> dict:
    """Encoder parameters the ROI machinery adds on top of the plain baseline (recorded in the
    sidecar as ``adds_to_baseline``; ``roi-settings`` encodes carry exactly these, no offsets).
    An all-zero delta map has no ROI and adds nothing: its encode is the baseline's bitstream."""
    return encoder_for(job.config).roi_settings(job, maps)


def settings_reference_is_baseline(codec: str, block_size: int,
                                   config: str | Path | None = None) -> bool:
    """Whether the ``roi-settings`` reference of maps of ``block_size``-px blocks is the plain
    baseline's very command (nothing added: e.g. the qg-size x265 needs is the one it uses
    anyway)."""
    return encoder_for(load_config(config, codec)).settings_reference_is_baseline(block_size)


def build_ffmpeg_cmd(job: EncodeJob, tmp_out: Path, filter_args: list[str] | None,
                     extra_params: dict, *, program: Sequence[str] | None = None,
                     roi_file: Path | None = None) -> list[str]:
    """The FFmpeg command line of an encode of a libavcodec encoder (see
    :meth:`roienc.encoders.ffmpeg.FFmpegEncoder.command`)."""
    return encoder_for(job.config).command(job, tmp_out, filter_args, extra_params,
                                           program=list(program) if program else None,
                                           roi_file=roi_file)


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
        "encoder_version": None,           # the encoder's sidecar fields, below
        "ffmpeg_version": job.ffmpeg.version, "ffmpeg_path": job.ffmpeg.path, "engine": None,
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
    side.update(encoder_for(cfg).sidecar_fields(job))
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
        # what each frame got, in frame (display) order: PyAV's demuxer (~3 ms), else FFmpeg
        sizes = frame_sizes(job.mp4, job.ffmpeg.path)
        side["bytes"] = job.mp4.stat().st_size
        side["mp4_sha256"] = file_digest(job.mp4)
        side["video_bytes"] = int(sum(sizes))
        side["frames_encoded"] = len(sizes)
        side["kbps"] = bitrate_kbps(sizes, clip.fps)
        side["frame_bytes"] = sizes
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


def _encode(job: EncodeJob, maps: ClipMaps | None, side: dict) -> None:
    """What the maps are, what the mode adds to the baseline, then the encoder's own encode
    (:meth:`roienc.encoders.base.Encoder.encode`: its ROI payload, command and statistics)."""
    encoder = encoder_for(job.config)
    if maps is not None:
        side["adapter"].update(block_size=maps.block_size, base_qp=maps.base_qp, delta=maps.delta)
        if job.mode in OFFSET_MODES:
            side["adapter"]["frame_offsets"] = frame_offsets(maps.dq)
            if any(p is not None for p in maps.predicted_pct):
                side["adapter"]["frame_predicted_pct"] = maps.predicted_pct
    side["adds_to_baseline"] = {"encoder_params": encoder.roi_settings(job, maps),
                                "roi": ROI_DESCRIPTIONS.get(job.mode, "none")}
    encoder.encode(job, maps, side)


def check_encoder_options(ff: Tool, cfg: EncoderConfig, engine: str = "ffmpeg") -> None:
    """Refuse a config whose preset, tune or ``[params]`` the encoder does not accept (a 1-frame
    trial encode for FFmpeg's encoders, which only log an unknown parameter and encode anyway:
    :meth:`roienc.encoders.ffmpeg.FFmpegEncoder.check_options`; cached per setting)."""
    encoder_for(cfg).check_options(ff, engine)


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
    """Per mode: its resolved encoder config (for a mode only one encoder takes, its packaged
    config, :data:`~roienc.encoders.MODE_CONFIGS`: hevc_x265cli for qpfile, unless ``config`` is
    given; ``preset`` over the config's), its rate points (without ``rates``: the
    config's ``[rate]``) and the warnings of :func:`validate_mode`, which refuses an impossible
    mode, rate or setting with an InputError naming the mode and rate."""
    plans = []
    for mode in modes:
        cfg = load_config(config if config is not None else MODE_CONFIGS.get(mode), codec)
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
        if mode in MODE_CONFIGS and config is None:
            log.info("%s mode: using the packaged %s config", mode, MODE_CONFIGS[mode])
        for w in warnings:
            log.warning("%s: %s", mode, w)
        plans.append((mode, cfg, mode_rates))
    # each encoder's own CLI (x265, SvtAv1EncApp), found once: EncodeJob field -> tool
    clis: dict[str, Tool] = {}
    cli_paths = dict(x265=x265, svtav1=svtav1)      # the CLIs named by the user
    for name in dict.fromkeys(cfg.encoder for _, cfg, _ in plans):
        clis.update(encoder_class(name).find_cli(cli_paths, [m for m, cfg, _ in plans
                                                             if cfg.encoder == name]))
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
    work = [EncodeJob(c, Path(maps_root) if maps_root else None, mode, rate, cfg, out, ff,
                      threads=threads, skip_existing=skip_existing, zone_mode=zone_mode,
                      cityscapes_root=str(cityscapes_root), two_pass=two_pass, engine=eng, **clis)
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
