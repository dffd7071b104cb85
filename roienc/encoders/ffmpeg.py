"""Encoders of FFmpeg's libavcodec (libx265, libx264, libvpx-vp9): what they share.

The ROI reaches them as FFmpeg ROI side data: per frame, ``addroi`` rectangles covering the
frame's delta grid (first listed wins), through one filter script for the FFmpeg CLI or per-run
chains (``-roi FILE``) for the in-process runner ``roienc/inproc.py`` (engine ``pyav``: the same
argv, run through the FFmpeg libraries of the ``av`` wheel). Two-pass runs the same graph twice
through the CLI. Subclasses say how their options are written (rate, parameters, threads, pass),
what their ROI units are, and which settings make them ignore the ROI.
"""
from __future__ import annotations

import functools
import json
import re
import sys
import tempfile
from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from .. import inproc
from ..adapters import ffmpeg_filter_script_args, graph_router, perframe_filter_script, qp_range_for
from ..errors import InputError, ToolError
from ..fileio import atomic_path, temp_tag, write_text
from ..maps import ClipMaps
from ..tools import Tool, run
from .base import Encoder, EncodeJob, RatePoint, job_input_args, run_encoder


@functools.cache
def inproc_versions() -> dict | None:
    """:func:`roienc.inproc.versions` (once per process)."""
    return inproc.versions()


_CHECKED_CONFIGS: dict[tuple, str | None] = {}
_BAD_OPTION = re.compile(r"Unknown option|Invalid value|Error parsing option|\[error\]|Bad value",
                         re.IGNORECASE)


class FFmpegEncoder(Encoder):
    """An encoder of FFmpeg's libavcodec, driven by an FFmpeg command line (run by the FFmpeg CLI
    or, engine ``pyav``, by the in-process runner), the ROI as ``addroi`` side data."""

    engine = "ffmpeg"
    ffmpeg_library = True
    # the encoder's build line in its log (in-process encodes record it), and how it is named
    build_line: ClassVar[re.Pattern | None] = None
    build_name: ClassVar[str] = ""

    def in_process(self, job: EncodeJob) -> bool:
        return job.engine == "pyav" and not job.two_pass

    def sidecar_fields(self, job: EncodeJob) -> dict:
        if not self.in_process(job):
            return super().sidecar_fields(job)
        # the encoder is the FFmpeg of the av wheel; job.ffmpeg (the CLI) only counts packets
        info = inproc_versions() or {}
        return {"encoder_version": f"FFmpeg {info.get('ffmpeg')} (PyAV {info.get('av')})",
                "ffmpeg_version": info.get("ffmpeg"), "engine": "pyav", "pyav": info}

    # --- how the options are written -----------------------------------------------------------
    def rate_args(self, rate: RatePoint) -> list[str]:
        """The rate control's options (constant QP: in the encoder's parameters)."""
        if rate.control == "crf":
            return ["-crf", f"{rate.value:g}"]
        if rate.control == "bitrate":
            return ["-b:v", f"{rate.value:g}k"]
        return []

    @abstractmethod
    def param_args(self, extra: dict) -> list[str]:
        """The config's ``[params]`` (``extra`` over them) as FFmpeg options."""

    @abstractmethod
    def trial_options(self) -> tuple[str, dict[str, str], list[str]]:
        """The config's ``[params]`` for the 1-frame trial: as shown in a refusal, as AVOptions
        (in-process) and as FFmpeg options (CLI)."""

    def thread_args(self, threads: int) -> list[str]:
        """``-threads N`` where the encoder takes its threads that way."""
        return ["-threads", str(threads)] if threads else []

    def pass_command(self, cmd: list[str], n: int, stats: Path) -> list[str]:
        """``cmd`` as pass ``n`` of a two-pass encode; pass 1 discards its video (``-f null``)."""
        cmd = list(cmd)
        cmd[-1:-1] = ["-pass", str(n), "-passlogfile", str(stats)]
        if n == 1:
            cmd[-1:] = ["-f", "null", "-"]
        return cmd

    def encoder_params(self, job: EncodeJob, maps: ClipMaps | None, adapter: dict) -> dict:
        """What the encode adds to the config's ``[params]`` (the ROI settings, and whatever
        the subclass passes as parameters); may record statistics in ``adapter``."""
        return dict(self.roi_settings(job, maps))

    def command(self, job: EncodeJob, tmp_out: Path, filter_args: list[str] | None,
                extra_params: dict, *, program: list[str] | None = None,
                roi_file: Path | None = None) -> list[str]:
        """The FFmpeg command line of an encode. ``program`` replaces the FFmpeg binary (the
        in-process runner, which reads the same argv); ``roi_file`` adds its ``-roi FILE`` (per-run
        addroi chains) instead of a filter graph."""
        cfg = self.config
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
        cmd += self.rate_args(job.rate)
        cmd += ["-pix_fmt", cfg.pix_fmt]
        cmd += self.param_args(extra_params)
        cmd += self.thread_args(job.threads)
        if cfg.tag:
            cmd += ["-tag:v", cfg.tag]
        cmd += ["-an", str(tmp_out)]
        return cmd

    # --- the ROI payload -----------------------------------------------------------------------
    def roi_grids(self, maps: ClipMaps, adapter: dict) -> tuple[np.ndarray, int, bool]:
        """The per-frame offset grids in the encoder's units, the ``qoffset`` denominator that
        makes them exact, and whether every frame's chain ends with the whole-frame zero region.
        libx264/libx265: the map's QP deltas, ``qoffset = dq/range`` (range 51 + 6 per bit above
        8: what they multiply ``qoffset`` by)."""
        return maps.dq, qp_range_for(self.config.pix_fmt), False

    def addroi_payload(self, job: EncodeJob, maps: ClipMaps,
                       adapter: dict) -> tuple[list[str] | None, Path | None]:
        """Write the per-frame addroi filter script (and for in-process runs the ``-roi`` file
        of per-run chains); return the CLI's filter options and the ``-roi`` file, (None, None)
        when the map has no offset (the baseline's command)."""
        grids, qp_range, clear = self.roi_grids(maps, adapter)
        has_nonzero = bool(np.any(grids))
        fs = perframe_filter_script(grids, maps.block_size, maps.width, maps.height,
                                    qp_range=qp_range, pix_fmt=self.config.pix_fmt,
                                    router=graph_router(job.ffmpeg), clear=clear and has_nonzero)
        adapter.update(rects_per_frame=fs.rects_per_frame, runs=len(fs.runs), qp_range=qp_range)
        if not (fs.has_roi and has_nonzero):
            adapter["note"] = "all-zero delta QP map: no ROI, command identical to baseline"
            return None, None
        script = job.folder / f"{job.clip.clip_id}.filter.txt"
        write_text(script, fs.text)
        adapter["filter_script"] = str(script)
        roi_file = None
        if self.in_process(job):
            roi_file = job.folder / f"{job.clip.clip_id}.roi.json"
            with atomic_path(roi_file) as tmp:
                inproc.write_roi(tmp, fs.runs, fs.chains, qp_range=qp_range,
                                 width=maps.width, height=maps.height)
            adapter["roi_file"] = str(roi_file)
        return ffmpeg_filter_script_args(job.ffmpeg, script), roi_file

    # --- running -------------------------------------------------------------------------------
    def encode(self, job: EncodeJob, maps: ClipMaps | None, side: dict) -> None:
        adapter = side["adapter"]
        extra = self.encoder_params(job, maps, adapter)
        filter_args, roi_file = None, None
        if job.mode in ("roi", "roi+zones"):
            filter_args, roi_file = self.addroi_payload(job, maps, adapter)
        if self.in_process(job):
            self._run_in_process(job, side, filter_args, roi_file, extra)
        elif not job.two_pass:
            with atomic_path(job.mp4) as tmp:
                cmd = self.command(job, tmp, filter_args, extra)
                side["commands"].append(cmd)
                run_encoder(job, cmd, job.log_path, "")
        else:
            self._run_two_pass(job, side, filter_args, extra)

    def _run_in_process(self, job: EncodeJob, side: dict, filter_args: list[str] | None,
                        roi_file: Path | None, extra: dict) -> None:
        """The same argv, run by roienc/inproc.py through PyAV's FFmpeg libraries, the ROI as
        per-run addroi chains (``-roi FILE``) instead of the one big filter graph."""
        with atomic_path(job.mp4) as tmp:
            cmd = self.command(job, tmp, None, extra, roi_file=roi_file,
                               program=[sys.executable, str(Path(inproc.__file__).absolute())])
            side["commands"].append(cmd)
            side["ffmpeg_equivalent"] = {
                "note": "the same encode through the FFmpeg CLI and the filter script (another "
                        "FFmpeg/x265 build than the one that encoded: not the same bitstream)",
                "command": self.command(job, tmp, filter_args, extra)}
            run_encoder(job, cmd, job.log_path, "")
        if self.build_line is not None:
            m = self.build_line.search(job.log_path.read_bytes() if job.log_path.is_file() else b"")
            if m:
                side["pyav"] = {**side.get("pyav", {}),
                                "encoder_build": f"{self.build_name} {m.group(1).decode()}"}

    def _run_two_pass(self, job: EncodeJob, side: dict, filter_args: list[str] | None,
                      extra: dict) -> None:
        """The same graph (ROI included) twice through the CLI, the first pass writing only its
        statistics."""
        clip_id = job.clip.clip_id
        with tempfile.TemporaryDirectory(prefix=f".{clip_id}.2pass.{temp_tag()}.",
                                         dir=job.folder) as stats_dir:
            stats = Path(stats_dir) / "stats"
            with atomic_path(job.mp4) as tmp:
                cmds = [self.pass_command(self.command(job, tmp, filter_args, extra), n, stats)
                        for n in (1, 2)]
                side["commands"] += cmds
                run_encoder(job, cmds[0], job.log_path, " pass 1")
                run_encoder(job, cmds[1], job.log_path.with_name(f"{clip_id}.pass2.log"), " pass 2")

    # --- the 1-frame trial ---------------------------------------------------------------------
    def check_options(self, ffmpeg: Tool, engine: str) -> None:
        """Refuse a config whose preset, tune or ``[params]`` the encoder does not accept.

        FFmpeg's libx265/libx264 wrappers only *log* an unknown or malformed ``-x265-params`` /
        ``-x264-params`` entry ("Unknown option: aq-mod.") and encode anyway, so a typo would pass
        as an ok encode with the option silently dropped. A 1-frame trial encode with the config's
        own settings shows what the encoder says; any such line refuses the config up front.
        """
        cfg = self.config
        shown, av_options, cli_options = self.trial_options()
        key = (ffmpeg.path if engine != "pyav" else "pyav", cfg.encoder, cfg.preset, cfg.tune,
               cfg.pix_fmt, shown)
        if key not in _CHECKED_CONFIGS:
            if engine == "pyav":
                opts = {**({"preset": cfg.preset} if cfg.preset else {}),
                        **({"tune": cfg.tune} if cfg.tune else {}), **av_options}
                cmd = [sys.executable, str(Path(inproc.__file__).absolute()), "--check",
                       json.dumps({"encoder": cfg.encoder, "options": opts, "pix_fmt": cfg.pix_fmt})]
            else:
                cmd = [ffmpeg.path, "-hide_banner", "-nostdin", "-loglevel", "warning", "-f", "lavfi",
                       "-i", "color=c=gray:s=64x64:r=17", "-frames:v", "1", "-c:v", cfg.encoder,
                       *(["-preset", cfg.preset] if cfg.preset else []),
                       *(["-tune", cfg.tune] if cfg.tune else []),
                       "-pix_fmt", cfg.pix_fmt, *cli_options, "-f", "null", "-"]
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
                             f"params {shown!r}): {problem}")
