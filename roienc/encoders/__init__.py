"""One class per encoder (as CompressAI's ``utils/bench/codecs.py`` keeps one class per codec).

Each class holds what roienc knows of its encoder: the requests and settings it refuses (among
them those under which it would ignore the ROI), its ROI payload (addroi runs, libvpx levels,
SVT-AV1 map lines, x265 zones and qpfile), its command and its sidecar fields. The encode runner
(:mod:`roienc.encode`) dispatches on the config's ``encoder`` through :data:`ENCODERS`.

| module | class | config ``encoder`` |
|---|---|---|
| :mod:`.x26x` | :class:`X265`, :class:`X264` | ``libx265``, ``libx264`` |
| :mod:`.vp9` | :class:`Vp9` | ``libvpx-vp9`` |
| :mod:`.x265cli` | :class:`X265Cli` | ``x265`` |
| :mod:`.svtav1` | :class:`SvtAv1` | ``SvtAv1EncApp`` |

Shared: :mod:`.base` (the job, input options, pipes, the :class:`Encoder` base class) and
:mod:`.ffmpeg` (what the libavcodec encoders share: addroi payload, pyav/CLI/two-pass runs).
A new encoder is a module with its class, an entry here, its ``encoder -> codec`` line in
:data:`roienc.configs.ENCODERS` and a config TOML in ``encoder_configs/`` (docs/codecs.md).
"""
from __future__ import annotations

from ..configs import EncoderConfig
from ..errors import InputError
from .base import Encoder, EncodeJob, RatePoint
from .svtav1 import SvtAv1
from .vp9 import Vp9
from .x265cli import X265Cli
from .x26x import X264, X265

ENCODERS: dict[str, type[Encoder]] = {cls.name: cls for cls in (X265, X264, Vp9, X265Cli, SvtAv1)}
# the libavcodec encoder of each codec (engines pyav and ffmpeg)
FFMPEG_ENCODERS: dict[str, str] = {cls.codec: cls.name for cls in ENCODERS.values()
                                   if cls.ffmpeg_library}

# a mode only one encoder takes -> its packaged config, used for that mode when none is given
MODE_CONFIGS: dict[str, str] = {mode: name for cls in ENCODERS.values()
                                for mode, name in cls.mode_configs.items()}


def encoder_class(name: str) -> type[Encoder]:
    """The class of the config ``encoder`` ``name``."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise InputError(f"encoder {name!r}: roienc drives {', '.join(ENCODERS)}") from None


def encoder_for(config: EncoderConfig) -> Encoder:
    """The encoder of ``config`` (its class, holding the config)."""
    return encoder_class(config.encoder)(config)


__all__ = ["ENCODERS", "FFMPEG_ENCODERS", "MODE_CONFIGS", "Encoder", "EncodeJob", "RatePoint", "SvtAv1", "Vp9",
           "X264", "X265", "X265Cli", "encoder_class", "encoder_for"]
