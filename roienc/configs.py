"""Encoder configurations: TOML files in ``encoder_configs/`` (shipped inside the package).

A config names the encoder (``libx265``, ``libx264``, ``libvpx-vp9``, or the ``x265`` /
``SvtAv1EncApp`` CLIs), preset, tune, pixel format, container, rate-control defaults and the
encoder's own parameters (``-x265-params`` / ``-x264-params``; for libvpx-vp9 each one its own
FFmpeg option ``-key value``; for SvtAv1EncApp each one ``--key value``), and for codecs whose ROI
scale is not the x264/x265 QP the ``[roi]`` section (``qp_scale``: encoder units per map QP).
"""
from __future__ import annotations

import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from .errors import InputError

# config ``encoder`` -> the codec it produces; each has its class in roienc.encoders.ENCODERS
# (kept here as data so that reading a config, e.g. for --help, imports no encoder; a test
# checks that both name the same encoders)
ENCODERS = {"libx265": "hevc", "libx264": "h264", "x265": "hevc", "libvpx-vp9": "vp9",
            "SvtAv1EncApp": "av1"}
CODECS = ("hevc", "h264", "vp9", "av1")
DEFAULT_CONFIG = {"hevc": "hevc", "h264": "h264", "vp9": "vp9", "av1": "av1"}
RATE_CONTROLS = ("crf", "bitrate", "qp")
QP_MAX = 51                 # x264/x265 CRF and QP range for 8-bit output
# CRF range per codec: libvpx's and SVT-AV1's quantiser scale is 0..63
CRF_MAX = {"hevc": QP_MAX, "h264": QP_MAX, "vp9": 63, "av1": 63}


def parse_kbps(text) -> float:
    """``'4M'`` -> 4000.0 kbps, ``'800k'`` -> 800.0, ``'1500'`` / ``1500`` -> 1500.0 (kbps)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmM]?)\s*(bps|b)?\s*", str(text))
    if not m or isinstance(text, bool):
        raise InputError(f"--bitrate {text!r}: use e.g. 4M, 800k or a number of kbit/s")
    val = float(m.group(1)) * (1000.0 if m.group(2) in ("M", "m") else 1.0)
    if not (math.isfinite(val) and val > 0):
        raise InputError(f"--bitrate must be a positive, finite rate, got {text!r}")
    return val


def check_rate(control: str, value, where: str = "", qp_max: int | None = None,
               codec: str | None = None) -> float:
    """``value`` as a valid rate of ``control`` (CRF/QP in 0..``qp_max``, bitrate > 0 kbps), or
    InputError. ``codec`` gives the bound (:data:`CRF_MAX`: 51 for hevc and h264, 63 for vp9
    and av1) and is named in the message; without either the bound is x264/x265's 51."""
    if control not in RATE_CONTROLS:
        raise InputError(f"{where}rate control must be one of {', '.join(RATE_CONTROLS)}, got {control!r}")
    if control == "bitrate":
        return parse_kbps(value)
    if qp_max is None:
        qp_max = CRF_MAX.get(codec, QP_MAX) if codec is not None else QP_MAX
    if isinstance(value, bool):
        raise InputError(f"{where}--{control} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}--{control} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and 0 <= v <= qp_max):
        shown = f"{v:g}" if math.isfinite(v) or not isinstance(value, str) else repr(value)
        scale = f" for {codec}" if codec else ""
        raise InputError(f"{where}--{control} must be between 0 and {qp_max}{scale}, got {shown}")
    return v


@dataclass
class EncoderConfig:
    name: str
    codec: str                  # hevc | h264 | vp9 | av1
    encoder: str                # libx265 | libx264 | x265 (CLI) | libvpx-vp9 | SvtAv1EncApp (CLI)
    preset: str = "medium"
    tune: str = ""
    pix_fmt: str = "yuv420p"
    container: str = "mp4"
    tag: str = ""
    rate: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    path: str = ""
    roi: dict = field(default_factory=dict)

    @property
    def qp_scale(self) -> float:
        """Encoder ROI units per map QP (``[roi] qp_scale``; 1 for x264/x265)."""
        return float(self.roi.get("qp_scale", 1.0))

    @property
    def map_block_size(self) -> int | None:
        """``[roi] block_size``: the QP block size ``roienc sweep`` builds maps with for this
        encoder when ``--block-size`` is not given (None: the library's default)."""
        return self.roi.get("block_size")

    def option_args(self, extra: dict | None = None) -> list[str]:
        """``[params]`` as separate FFmpeg options ``-key value`` (libvpx-vp9; ``extra``
        overrides)."""
        merged = {**self.params, **(extra or {})}
        return [a for k, v in merged.items() for a in (f"-{k}", _fmt(v))]

    def params_string(self, extra: dict | None = None) -> str:
        """``k=v:k=v`` for -x265-params/-x264-params (``extra`` overrides)."""
        merged = {**self.params, **(extra or {})}
        return ":".join(f"{k}={_fmt(v)}" for k, v in merged.items())

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def sweep_crfs(self) -> tuple[float, ...] | None:
        """``[rate] sweep_crf``: the CRFs ``roienc sweep`` encodes at without --crf/--bitrate/--qp
        (vp9, av1: 30, 36, 42, 48 on their 0..63 scale), None when the config names none."""
        crfs = self.rate.get("sweep_crf")
        return tuple(float(v) for v in crfs) if crfs is not None else None

    def default_rate(self) -> tuple[str, float]:
        """The ``[rate]`` section's rate point, used when no --crf/--bitrate/--qp is given:
        ``control`` (crf when absent) and that control's value (CRF 28 when absent)."""
        control = self.rate.get("control", "crf")
        if control not in self.rate and control != "crf":
            raise InputError(f"{self.path}: [rate] control = {control!r} needs a {control} value")
        return control, check_rate(control, self.rate.get(control, 28), f"{self.path}: [rate] ",
                                   codec=self.codec)


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def packaged_configs() -> dict[str, Path]:
    folder = resources.files("roienc").joinpath("encoder_configs")
    return {p.name[:-5]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def load_config(name_or_path: str | Path | None, codec: str | None = None) -> EncoderConfig:
    """Load a config by path or packaged name (``hevc``, ``h264``, ``hevc_x265cli``, ``vp9``,
    ``av1``); default by codec."""
    if name_or_path is None:
        name_or_path = DEFAULT_CONFIG.get(codec or "hevc", "hevc")
    path = Path(name_or_path)
    if not path.is_file():
        packaged = packaged_configs()
        key = path.name[:-5] if path.name.endswith(".toml") else str(name_or_path)
        if key not in packaged:
            raise InputError(f"--config {name_or_path}: no such file, and no packaged config of that "
                             f"name (packaged: {', '.join(sorted(packaged))})")
        path = packaged[key]
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read encoder config ({exc})") from None
    enc = doc.get("encoder")
    if enc not in ENCODERS:
        raise InputError(f"{path}: encoder must be one of {', '.join(ENCODERS)}, got {enc!r}")
    cfg_codec = doc.get("codec", ENCODERS[enc])
    if cfg_codec != ENCODERS[enc]:
        raise InputError(f"{path}: encoder {enc} does not produce codec {cfg_codec}")
    if codec is not None and codec != cfg_codec:
        raise InputError(f"{path}: config is for {cfg_codec}, but --codec {codec} was asked for")
    known = {"name", "codec", "encoder", "preset", "tune", "pix_fmt", "container", "tag", "rate",
             "params", "roi"}
    unknown = set(doc) - known
    if unknown:
        raise InputError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    rate = doc.get("rate", {})
    if not isinstance(rate, dict) or set(rate) - {"control", "sweep_crf", *RATE_CONTROLS}:
        raise InputError(f"{path}: [rate] takes control ({'|'.join(RATE_CONTROLS)}), "
                         f"{', '.join(RATE_CONTROLS)} and sweep_crf; got {', '.join(sorted(rate)) if isinstance(rate, dict) else rate!r}")
    if "sweep_crf" in rate:
        crfs = rate["sweep_crf"]
        if not (isinstance(crfs, list) and len(crfs) >= 2 and len(set(crfs)) == len(crfs)):
            raise InputError(f"{path}: [rate] sweep_crf must be a list of at least 2 different "
                             f"CRFs (a BD-rate needs a curve), got {crfs!r}")
        for v in crfs:
            check_rate("crf", v, f"{path}: [rate] sweep_crf ", codec=cfg_codec)
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise InputError(f"{path}: [params] must be a table of encoder options")
    roi = doc.get("roi", {})
    if not isinstance(roi, dict) or set(roi) - {"qp_scale", "block_size"}:
        raise InputError(f"{path}: [roi] takes only qp_scale (encoder ROI units per map QP) and "
                         "block_size (the maps' QP block size sweep uses without --block-size)")
    bs = roi.get("block_size")
    if "block_size" in roi and not (isinstance(bs, int) and not isinstance(bs, bool)
                                    and 2 <= bs <= 64 and bs % 2 == 0):
        raise InputError(f"{path}: [roi] block_size must be an even number of pixels from 2 to "
                         f"64, got {bs!r}")
    if "qp_scale" in roi and not (isinstance(roi["qp_scale"], (int, float))
                                  and not isinstance(roi["qp_scale"], bool) and roi["qp_scale"] > 0):
        raise InputError(f"{path}: [roi] qp_scale must be a positive number, got {roi['qp_scale']!r}")
    cfg = EncoderConfig(name=doc.get("name", path.stem), codec=cfg_codec, encoder=enc,
                         preset=doc.get("preset", "medium"), tune=doc.get("tune", ""),
                         pix_fmt=doc.get("pix_fmt", "yuv420p"), container=doc.get("container", "mp4"),
                         tag=doc.get("tag", ""), rate=dict(rate), params=dict(params), path=str(path),
                         roi=dict(roi))
    cfg.default_rate()                     # a bad [rate] section fails here, naming the file
    return cfg
