"""What every encoder class is given and shares: the job (:class:`EncodeJob`, :class:`RatePoint`),
the FFmpeg input options of its frames, the ``producer | consumer`` pipe of the CLI encoders, the
per-frame progress bar, and the :class:`Encoder` base class whose subclasses (one per config
``encoder``) hold their checks, ROI payload, command and sidecar fields.

The encode runner (:mod:`roienc.encode`) builds the jobs, the sidecar's common fields and the
reuse keys; it hands each job to ``encoder_for(job.config).encode(job, maps, side)``.
"""
from __future__ import annotations

import re
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm import tqdm

from ..configs import EncoderConfig, parse_kbps
from ..dataset import Clip, parse_id
from ..errors import InputError, ToolError
from ..fileio import write_text
from ..maps import ClipMaps
from ..tools import Tool, _launch_problem, run, tail, write_log

# modes whose QPs replace the rate control's frame QPs: no constant QP under them
FRAME_QP_MODES = ("zones", "roi+zones", "qpfile")
# what each mode adds to the plain encoder (the sidecar's adds_to_baseline.roi)
ROI_DESCRIPTIONS = {"roi": "per-frame addroi offsets", "roi+zones": "per-frame addroi offsets and zones",
                    "zones": "x265 zones (frame QPs)", "qpfile": "x265 CLI with a qpfile (frame QPs)"}


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


@dataclass
class EncodeJob:
    """One clip in one mode at one rate point, with the tools that encode it."""

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
    engine: str = "ffmpeg"            # libx265/libx264/libvpx-vp9 through the FFmpeg CLI or "pyav"
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

    @property
    def log_path(self) -> Path:
        """The encoder's stderr (``<clip>.log``)."""
        return self.folder / f"{self.clip.clip_id}.log"


def image2_escape(path: str) -> str:
    """``path`` as a literal inside an FFmpeg image2 pattern (``%`` doubled)."""
    return path.replace("%", "%%")


def concat_list_text(paths: Sequence[Path]) -> str:
    """An ffconcat list naming exactly ``paths`` (absolute), in order."""
    lines = ["ffconcat version 1.0"]
    for p in paths:
        lines.append("file '" + str(Path(p).absolute()).replace("'", "'\\''") + "'")
    return "\n".join(lines) + "\n"


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


def job_input_args(job: EncodeJob) -> list[str]:
    """:func:`input_args` of ``job``'s clip; writes the ffconcat list beside the encode when the
    clip needs one (``<clip>.frames.ffconcat``)."""
    if job.clip.source == "sequence":
        return input_args(job.clip)
    lst = job.folder / f"{job.clip.clip_id}.frames.ffconcat"
    text = concat_list_text(job.clip.image_paths)
    if not lst.is_file() or lst.read_bytes() != text.encode("utf-8", "surrogateescape"):
        write_text(lst, text)
    return input_args(job.clip, lst)


def y4m_decoder(job: EncodeJob) -> list[str]:
    """The FFmpeg command writing the clip's frames as y4m to stdout, for the CLI encoders."""
    return [job.ffmpeg.path, "-hide_banner", "-nostdin", *job_input_args(job),
            "-vf", f"format={job.config.pix_fmt}", "-f", "yuv4mpegpipe", "-"]


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


def run_encoder(job: EncodeJob, cmd: list[str], log_path: Path, what: str) -> None:
    """Run one encoder command, its stderr to ``log_path``; a frame bar when the job asks for
    one and the console is interactive."""
    from ..executor import interactive_progress
    if not job.frame_progress or not interactive_progress():   # no nested bar in logs/pipes
        run(cmd, log_path=log_path)
        return
    bar = FrameProgress(len(job.clip.frame_ids), f"{job.clip.clip_id} {job.mode} {job.rate.label}{what}")
    try:
        run(cmd, log_path=log_path, capture_stdout=False, on_stderr=bar)
    finally:
        bar.close()


def frame_offsets(dq) -> dict:
    """Per frame, the QP offsets the encoder is given (what a rate budget chose shows here):
    the lowest, the mean over the blocks below 0 (0 when none), the highest, and the share of
    blocks below 0."""
    d = np.asarray(dq, np.float64).reshape(len(dq), -1)
    neg = d < 0
    n = neg.sum(axis=1)
    mean_neg = np.where(n > 0, np.where(neg, d, 0).sum(axis=1) / np.maximum(n, 1), 0.0)
    return {"min": d.min(axis=1).astype(int).tolist(), "mean_roi": np.round(mean_neg, 3).tolist(),
            "max": d.max(axis=1).astype(int).tolist(),
            "roi_block_share": np.round(n / d.shape[1], 4).tolist()}


def frame_qp_offset(job: EncodeJob, base_qp: int) -> int:
    """What frame QPs from the maps are shifted by so that they follow the rate point: under CRF
    ``round(crf) - base_qp`` (CRF ~ QP is an approximation), else 0."""
    return int(round(job.rate.value)) - base_qp if job.rate.control == "crf" else 0


class Encoder(ABC):
    """One encoder, as roienc drives it: the settings and requests it refuses (among them those
    under which it would ignore the ROI), the ROI payload it is given, its command(s) and the
    sidecar fields it records. One subclass per config ``encoder`` name, registered in
    :data:`roienc.encoders.ENCODERS`; an instance holds the resolved config of one mode."""

    name: ClassVar[str]                                  # the config's ``encoder``
    codec: ClassVar[str]                                 # hevc | h264 | vp9 | av1
    modes: ClassVar[tuple[str, ...]] = ("baseline", "roi-settings", "roi")
    engine: ClassVar[str]                                # the sidecar's ``engine``
    ffmpeg_library: ClassVar[bool] = False               # an encoder of FFmpeg's libavcodec
    # modes only this encoder takes -> the packaged config used for them when none is given
    mode_configs: ClassVar[dict[str, str]] = {}

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config

    # --- checks --------------------------------------------------------------------------------
    def check(self, mode: str, rate: RatePoint, two_pass: bool = False) -> list[str]:
        """Refuse (InputError) a mode, rate control or setting this encoder does not drive, or
        under which it would ignore the ROI; return softer warnings. ``mode`` is one of
        :data:`roienc.encode.MODES` and ``rate`` within the codec's scale (checked before)."""
        if mode not in self.modes:
            raise InputError(self.mode_refusal(mode))
        self.check_request(mode, rate, two_pass)
        if rate.control == "qp" and mode in FRAME_QP_MODES:
            raise InputError(f"--mode {mode} with constant QP makes no sense: per-frame QPs replace it; "
                             "use --crf or --bitrate")
        if two_pass and rate.control != "bitrate":
            raise InputError("--two-pass needs --bitrate: under CRF or constant QP a first pass "
                             "changes nothing")
        return self.check_settings(mode, rate, two_pass)

    def mode_refusal(self, mode: str) -> str:
        """Why this encoder does not take ``mode``."""
        if mode in ("zones", "roi+zones", "qpfile"):
            return (f"--mode {mode} is x265-only (zones and qpfile are x265 features); with "
                    f"--codec {self.codec} use baseline or roi")
        return f"--mode {mode}: {self.name} takes {', '.join(self.modes)}"

    def check_request(self, mode: str, rate: RatePoint, two_pass: bool) -> None:
        """Refusals of this encoder that come before the common ones (rate controls, presets,
        two-pass it does not drive; the settings it ignores the ROI under)."""

    def check_settings(self, mode: str, rate: RatePoint, two_pass: bool) -> list[str]:
        """Refusals after the common ones, and warnings."""
        return []

    def refuse_constant_qp(self, rate: RatePoint) -> None:
        """For encoders roienc drives by CRF or bitrate only."""
        if rate.control == "qp":
            raise InputError(f"--qp with --codec {self.codec}: roienc drives {self.config.encoder} by "
                             "CRF or bitrate only; use --crf (0-63) or --bitrate")

    def check_options(self, ffmpeg: Tool, engine: str) -> None:
        """Refuse a config whose preset, tune or ``[params]`` the encoder does not accept (before
        anything runs). The CLIs exit with an error on unknown options: nothing to try."""

    # --- tools, engine, settings ---------------------------------------------------------------
    @classmethod
    def find_cli(cls, paths: dict[str, str | None], modes: Sequence[str]) -> dict[str, Tool]:
        """The command-line encoder this encoder runs besides FFmpeg, found once a run: the
        :class:`EncodeJob` field it goes into -> the tool (none here)."""
        return {}

    def in_process(self, job: EncodeJob) -> bool:
        """Whether ``job`` runs through the in-process runner (roienc/inproc.py)."""
        return False

    def roi_settings(self, job: EncodeJob, maps: ClipMaps | None) -> dict:
        """Encoder parameters the ROI machinery adds to the plain baseline (sidecar
        ``adds_to_baseline``; ``roi-settings`` encodes carry exactly these, no offsets)."""
        return {}

    def settings_reference_is_baseline(self, block_size: int) -> bool:
        """Whether the ``roi-settings`` reference of ``block_size``-px maps is the plain
        baseline's very command."""
        return False

    # --- the encode ----------------------------------------------------------------------------
    def sidecar_fields(self, job: EncodeJob) -> dict:
        """The encoder's own sidecar fields (``engine``, ``encoder_version``, ...)."""
        return {"encoder_version": job.ffmpeg.version, "engine": self.engine}

    @abstractmethod
    def encode(self, job: EncodeJob, maps: ClipMaps | None, side: dict) -> None:
        """Build the ROI payload from ``maps`` (None in baseline mode), write the encode to
        ``job.mp4`` and record the commands (``side['commands']``) and the payload's statistics
        (``side['adapter']``)."""
