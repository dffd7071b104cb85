"""libx265 and libx264 through FFmpeg: ROI offsets as ``addroi`` side data in QP units, applied
through adaptive quantisation; x265 also takes zones (one QP or bitrate multiplier a frame).

Both multiply ``qoffset`` by their QP range (51 for 8-bit, 63 for 10-bit), so ``dq/51`` is an
exact offset of ``dq`` QP. x265 averages the offsets over a quantisation group: ROI modes set
``qg-size`` to the maps' block size (the ``roi-settings`` reference carries that setting with zero
offsets).
"""
from __future__ import annotations

import numpy as np

import re
from pathlib import Path

from ..adapters import frame_qps, parse_params, zones_string
from ..configs import EncoderConfig
from ..errors import InputError
from ..maps import ClipMaps
from .base import EncodeJob, RatePoint, frame_qp_offset
from .ffmpeg import FFmpegEncoder

# modes whose ROI offsets act per quantisation group: they carry qg-size = the maps' block size
QG_MODES = ("roi", "roi+zones", "roi-settings")
X265_DEFAULT_QG = 32      # x265's qg-size when none is given (every preset)


def check_roi_compatible(codec: str, rate_control: str, params: dict[str, str] | str | None,
                         preset: str | None = None, tune: str | None = None,
                         block_size: int | None = None) -> list[str]:
    """Refuse settings under which the encoder silently ignores ROI; return softer warnings.

    x264/x265 apply ROI offsets through adaptive quantisation: constant QP, ``aq-mode=0``,
    ``aq-strength=0``, x265's ``hevc-aq``, the ultrafast/superfast presets and ``tune grain`` all
    leave them unused.
    """
    p = parse_params(params) if isinstance(params, str) or params is None else dict(params)
    why = None
    if rate_control in ("cqp", "qp") or "qp" in p:
        why = ("constant-QP rate control: x264/x265 ignore ROI offsets there; use CRF "
               "(--crf) or a bitrate (--bitrate)")
    elif p.get("aq-mode") == "0":
        why = "aq-mode=0: ROI offsets act through adaptive quantisation; use aq-mode>=1"
    elif p.get("aq-strength") not in (None, "") and float(p["aq-strength"]) == 0.0:
        why = "aq-strength=0 disables adaptive quantisation and with it ROI offsets"
    elif p.get("hevc-aq") in ("1", "true"):
        why = "hevc-aq replaces the AQ path ROI offsets go through; remove hevc-aq"
    elif preset in ("ultrafast", "superfast"):
        why = (f"preset {preset} turns adaptive quantisation off, so ROI offsets are ignored; "
               "use veryfast or slower")
    elif tune == "grain":
        why = "tune grain disables adaptive quantisation, so ROI offsets are ignored"
    if why:
        raise InputError(f"ROI with {codec}: {why}")
    warnings = []
    if codec == "hevc" and block_size is not None:
        qg = int(p.get("qg-size", 32))
        if qg > block_size:
            warnings.append(f"x265 qg-size={qg} averages the {block_size}-pixel QP blocks over "
                            f"{qg}x{qg} groups; set qg-size={max(8, min(block_size, 64))} to honour them")
    return warnings


def qg_size_for(block_size: int) -> int:
    """The x265 quantisation group size that honours ``block_size``-px ROI blocks."""
    return max(8, min(64, block_size))


def config_qg_size(cfg: EncoderConfig) -> int:
    """The qg-size an x265 encode of ``cfg`` uses without roienc adding one."""
    try:
        return int(cfg.params.get("qg-size", X265_DEFAULT_QG))
    except (TypeError, ValueError):
        return X265_DEFAULT_QG


def ffmpeg_dict_escape(value: str) -> str:
    """``value`` as one value of an FFmpeg ``key=value:key=value`` option (``-x265-params``):
    ``\\``, ``'``, ``:`` and ``=`` backslash-escaped (FFmpeg's av_get_token rules)."""
    return re.sub(r"([\\':=])", r"\\\1", value)


class X26x(FFmpegEncoder):
    """What libx265 and libx264 share: ``-<name>-params k=v:...``, and the ROI through adaptive
    quantisation (settings that switch it off are refused in ROI modes)."""

    params_option = ""            # -x265-params | -x264-params

    def check_settings(self, mode: str, rate: RatePoint, two_pass: bool) -> list[str]:
        if "roi" not in mode:
            return []
        cfg = self.config
        return check_roi_compatible(self.codec, rate.control, cfg.params_string(), cfg.preset,
                                    cfg.tune or None)

    def param_args(self, extra: dict) -> list[str]:
        params = self.config.params_string(extra)
        return [self.params_option, params] if params else []

    def trial_options(self) -> tuple[str, dict[str, str], list[str]]:
        params = self.config.params_string()
        return (params, {self.params_option[1:]: params} if params else {},
                [self.params_option, params] if params else [])


class X265(X26x):
    """libx265: ROI (addroi, ``qg-size`` = block size), zones, both, and the ``roi-settings``
    reference; threads as ``pools``, constant QP as the ``qp`` parameter, two-pass statistics
    as ``pass``/``stats`` parameters."""

    name = "libx265"
    codec = "hevc"
    modes = ("baseline", "roi-settings", "roi", "zones", "roi+zones")
    params_option = "-x265-params"
    build_line = re.compile(rb"HEVC encoder version (\S+)")
    build_name = "x265"

    def mode_refusal(self, mode: str) -> str:
        if mode == "qpfile":
            return ("--mode qpfile needs the x265 CLI config (FFmpeg's libx265 wrapper rejects "
                    "qpfile): use --config hevc_x265cli")
        return super().mode_refusal(mode)

    def check_settings(self, mode: str, rate: RatePoint, two_pass: bool) -> list[str]:
        warnings = []
        if mode in ("zones", "roi+zones") and str(self.config.params.get("bframes", "")) != "0":
            warnings.append(f"config {self.config.name} lets x265 use B-frames: zones then act in "
                            "encode order and shift by up to a mini-GOP at zone changes; for "
                            "frame-exact zones use bframes = 0 in the config of every mode compared")
        return warnings + super().check_settings(mode, rate, two_pass)

    def roi_settings(self, job: EncodeJob, maps: ClipMaps | None) -> dict:
        """``qg-size`` = the maps' block size in ROI modes (x265 averages offsets over a
        quantisation group), unless x265 uses that size anyway. An all-zero delta map has no
        ROI and adds nothing: its encode is the baseline's bitstream."""
        if (maps is not None and job.mode in QG_MODES
                and bool((maps.qp != maps.base_qp).any())):
            qg = qg_size_for(maps.block_size)
            if qg != config_qg_size(self.config):     # x265 would use it anyway: nothing added
                return {"qg-size": qg}
        return {}

    def roi_grids(self, maps: ClipMaps, adapter: dict) -> tuple[np.ndarray, int, bool]:
        """As libx264's, and every frame's chain ends with the whole-frame zero region: x265
        keeps its input pictures in a pool, and a picture first made for a frame without ROI side
        data has no room for offsets; handed a later frame with ROI, x265 4.2 crashes (SIGSEGV,
        measured). With the zero region every frame of an ROI clip carries side data."""
        grids, qp_range, _ = super().roi_grids(maps, adapter)
        return grids, qp_range, True

    def settings_reference_is_baseline(self, block_size: int) -> bool:
        return qg_size_for(block_size) == config_qg_size(self.config)

    def zones_payload(self, job: EncodeJob, maps: ClipMaps, adapter: dict) -> str:
        """x265 zones of the frame QPs (see :func:`roienc.adapters.zones_string`): absolute QPs
        that follow the CRF (``q``), or bitrate multipliers around the clip mean (``b``, the
        default under a target bitrate)."""
        zmode = job.zone_mode or ("q" if job.rate.control == "crf" else "b")
        if zmode == "q" and job.rate.control == "bitrate":
            raise InputError("--zone-mode q with a target bitrate fixes absolute QPs and defeats "
                             "the rate control; use --zone-mode b")
        fqps = frame_qps(maps.qp)
        off = frame_qp_offset(job, maps.base_qp)
        zones = zones_string(fqps, zmode, qp_offset=off)
        adapter.update(zones=zones, zone_mode=zmode, frame_qps=fqps, qp_offset=off,
                       qp_rule=("frame QP = round(crf) + (frame_qp - base_qp); CRF ~ QP is an "
                                "approximation" if zmode == "q" else
                                "b = 2**((mean_qp - frame_qp)/6), bitrate multiplier around the clip mean"))
        return zones

    def encoder_params(self, job: EncodeJob, maps: ClipMaps | None, adapter: dict) -> dict:
        zones = self.zones_payload(job, maps, adapter) if job.mode in ("zones", "roi+zones") else None
        extra = super().encoder_params(job, maps, adapter)
        if job.threads:
            extra["pools"] = job.threads
        if job.rate.control == "qp":
            extra["qp"] = f"{job.rate.value:g}"
        if zones:
            extra["zones"] = zones
        return extra

    def thread_args(self, threads: int) -> list[str]:
        return []                             # x265's threads are its pools (a parameter)

    def pass_command(self, cmd: list[str], n: int, stats: Path) -> list[str]:
        cmd = list(cmd)
        i = cmd.index(self.params_option) if self.params_option in cmd else None
        extra = f"pass={n}:stats={ffmpeg_dict_escape(str(stats))}"
        if i is None:
            cmd[-1:-1] = [self.params_option, extra]
        else:
            cmd[i + 1] = f"{cmd[i + 1]}:{extra}"
        if n == 1:
            cmd[-1:] = ["-f", "null", "-"]
        return cmd


class X264(X26x):
    """libx264: ROI (addroi on 16x16 macroblocks) and the ``roi-settings`` reference (nothing
    added); constant QP as ``-qp``."""

    name = "libx264"
    codec = "h264"
    params_option = "-x264-params"
    build_line = re.compile(rb"\b264 - core (\d+(?: r\d+)?)")
    build_name = "x264 core"

    def rate_args(self, rate: RatePoint) -> list[str]:
        if rate.control == "qp":
            return ["-qp", f"{rate.value:g}"]
        return super().rate_args(rate)
