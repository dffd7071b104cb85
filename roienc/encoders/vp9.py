"""libvpx-vp9 through FFmpeg: the ROI as ``addroi`` side data in libvpx units.

FFmpeg's libvpx wrapper (libvpxenc.c ``set_roi_map``) turns a frame's ROI list into a VP9
segmentation map of 8x8 blocks: ``delta_q = trunc(qoffset * 63)`` on libvpx's 0..63 quantiser
scale, segment 0 reserved for delta 0, so at most 7 distinct non-zero deltas a frame (regions with
an 8th value are dropped); the first listed region wins where regions overlap (it paints in
reverse). The map persists: a frame without ROI side data keeps the previous frame's map, so every
frame of a ROI encode lists a whole-frame zero region last. What was measured: docs/codecs.md.
"""
from __future__ import annotations

import numpy as np

from ..adapters import quantise_levels
from ..errors import InputError
from ..maps import ClipMaps
from .base import RatePoint, frame_offsets
from .ffmpeg import FFmpegEncoder

VPX_MAX_DELTA = 63          # libvpx's quantiser scale; qoffset = delta/63
VPX_MAX_LEVELS = 7          # non-zero deltas a frame (8 segments, segment 0 is delta 0)
VPX_RULE = ("libvpx delta = round(dq * qp_scale) clipped to -63..63, then per frame at most 7 "
            "non-zero levels minimising the block-weighted squared error (exact 1-D DP, 0 kept); "
            "qoffset = delta/63; whole-frame qoffset 0 region listed last on every frame (libvpx "
            "keeps the previous map otherwise); key frames: libvpx applies no ROI")


def vpx_delta_grids(dq_grids: np.ndarray, qp_scale: float,
                    max_levels: int = VPX_MAX_LEVELS) -> np.ndarray:
    """Map QP deltas (x264/x265 scale) -> libvpx deltas a frame can carry: ``round(dq *
    qp_scale)`` (half away from zero) clipped to -63..63, then per frame
    :func:`~roienc.adapters.quantise_levels` to at most ``max_levels`` non-zero values, every
    block weighted the same (blocks are equal areas)."""
    g = np.asarray(dq_grids, np.float64) * float(qp_scale)
    g = np.clip(np.sign(g) * np.floor(np.abs(g) + 0.5), -VPX_MAX_DELTA, VPX_MAX_DELTA).astype(np.int16)
    return np.stack([quantise_levels(f, max_levels=max_levels) for f in g]) if len(g) else g


def check_vp9_roi(params: dict) -> None:
    """Refuse libvpx-vp9 settings under which the ROI map is ignored or lands on other frames.

    libvpx-vp9 (FFmpeg's wrapper) uses the ROI only with ``deadline=realtime``, ``cpu-used >= 5``
    and ``aq-mode`` 0 or unset; otherwise it logs one warning and encodes without it. With
    look-ahead (``lag-in-frames`` > 0, libvpx's default) a frame is coded after later frames have
    set their maps, so it gets another frame's map (measured): ``lag-in-frames=0`` is required.
    """
    p = {k: str(v) for k, v in params.items()}
    why = None
    if p.get("deadline", "good") not in ("realtime", "rt"):
        why = (f"deadline {p.get('deadline', 'good (the default)')}: libvpx-vp9 ignores ROI "
               "unless deadline=realtime")
    elif int(p.get("cpu-used", p.get("speed", 1))) < 5:
        why = (f"cpu-used {p.get('cpu-used', '1 (the default)')}: libvpx-vp9 ignores ROI below "
               "cpu-used 5")
    elif int(p.get("aq-mode", -1)) > 0:
        why = f"aq-mode {p['aq-mode']}: libvpx-vp9 ignores ROI unless aq-mode is 0 or unset"
    elif int(p.get("lag-in-frames", -1)) != 0:
        why = (f"lag-in-frames {p.get('lag-in-frames', 'unset (libvpx look-ahead)')}: with "
               "look-ahead libvpx codes a frame under a later frame's ROI map; set lag-in-frames = 0")
    if why:
        raise InputError(f"ROI with vp9: {why} (in the config's [params])")


class Vp9(FFmpegEncoder):
    """libvpx-vp9: ROI (addroi in libvpx units, at most 7 levels a frame, a whole-frame zero
    region last) and ``roi-settings`` (nothing added); CRF as constant quality; each ``[params]``
    entry its own FFmpeg option; no presets, no constant QP."""

    name = "libvpx-vp9"
    codec = "vp9"

    def check_request(self, mode: str, rate: RatePoint, two_pass: bool) -> None:
        self.refuse_constant_qp(rate)
        if self.config.preset:
            raise InputError(f"preset {self.config.preset!r}: libvpx-vp9 has no presets (its speed "
                             "is cpu-used in the config's [params]); drop --preset / the config's preset")
        if mode in ("roi", "roi-settings"):
            check_vp9_roi(self.config.params)

    def rate_args(self, rate: RatePoint) -> list[str]:
        if rate.control == "crf":
            return ["-crf", f"{rate.value:g}", "-b:v", "0"]     # constant quality: no bitrate cap
        return super().rate_args(rate)

    def param_args(self, extra: dict) -> list[str]:
        return self.config.option_args(extra)

    def trial_options(self) -> tuple[str, dict[str, str], list[str]]:
        cfg = self.config
        return (" ".join(cfg.option_args()), {k: str(v) for k, v in cfg.params.items()},
                cfg.option_args())

    def roi_grids(self, maps: ClipMaps, adapter: dict) -> tuple[np.ndarray, int, bool]:
        """libvpx units (``round(dq * qp_scale)``), at most 7 non-zero levels a frame;
        ``qoffset = delta/63`` (libvpx: ``delta = trunc(qoffset*63)``, exact for every integer
        delta); a whole-frame 0 region last on every frame, so no frame inherits the previous
        frame's map."""
        qp_scale = self.config.qp_scale
        grids = vpx_delta_grids(maps.dq, qp_scale)
        levels = [int(np.count_nonzero(np.unique(g))) for g in grids]
        adapter.update(vpx_deltas=frame_offsets(grids), vpx_levels_per_frame=levels,
                       vpx_rule=VPX_RULE, qp_scale=qp_scale)
        return grids, VPX_MAX_DELTA, True
