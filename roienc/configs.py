"""Encoder configurations: TOML files in ``encoder_configs/`` (shipped inside the package).

A config names the encoder (``libx265``, ``libx264`` or the ``x265`` CLI), preset, tune, pixel
format, container, rate-control defaults and the encoder's own parameters (``-x265-params`` /
``-x264-params``).
"""
from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from .errors import InputError

ENCODERS = {"libx265": "hevc", "libx264": "h264", "x265": "hevc"}
DEFAULT_CONFIG = {"hevc": "hevc", "h264": "h264"}


@dataclass
class EncoderConfig:
    name: str
    codec: str                  # hevc | h264
    encoder: str                # libx265 | libx264 | x265 (CLI)
    preset: str = "medium"
    tune: str = ""
    pix_fmt: str = "yuv420p"
    container: str = "mp4"
    tag: str = ""
    rate: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    path: str = ""

    def params_string(self, extra: dict | None = None) -> str:
        """``k=v:k=v`` for -x265-params/-x264-params (``extra`` overrides)."""
        merged = {**self.params, **(extra or {})}
        return ":".join(f"{k}={_fmt(v)}" for k, v in merged.items())

    def as_dict(self) -> dict:
        return asdict(self)


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def packaged_configs() -> dict[str, Path]:
    folder = resources.files("roienc").joinpath("encoder_configs")
    return {p.name[:-5]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def load_config(name_or_path: str | Path | None, codec: str | None = None) -> EncoderConfig:
    """Load a config by path or packaged name (``hevc``, ``h264``, ``hevc_x265cli``); default by codec."""
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
    known = {"name", "codec", "encoder", "preset", "tune", "pix_fmt", "container", "tag", "rate", "params"}
    unknown = set(doc) - known
    if unknown:
        raise InputError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    return EncoderConfig(name=doc.get("name", path.stem), codec=cfg_codec, encoder=enc,
                         preset=doc.get("preset", "medium"), tune=doc.get("tune", ""),
                         pix_fmt=doc.get("pix_fmt", "yuv420p"), container=doc.get("container", "mp4"),
                         tag=doc.get("tag", ""), rate=dict(doc.get("rate", {})),
                         params=dict(doc.get("params", {})), path=str(path))
