"""The x265 command-line encoder (config ``hevc_x265cli``): the baseline, and qpfile mode (one QP
a frame from ``--qpfile``, which FFmpeg's libx265 wrapper rejects). FFmpeg decodes the frames to
y4m on a pipe, x265 writes raw HEVC, FFmpeg remuxes it into MP4.

x265 needs a frame type on every qpfile line, so the qpfile forces ``I`` on frame 0 (and every
``keyint`` frames) and ``P`` elsewhere; the config's ``bframes = 0`` makes x265's own GOP match.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..adapters import frame_qps, qpfile_text
from ..errors import InputError
from ..fileio import atomic_path, write_text
from ..maps import ClipMaps
from ..tools import Tool, find_x265, run
from .base import Encoder, EncodeJob, RatePoint, frame_qp_offset, run_pipeline, y4m_decoder


def cli_args(job: EncodeJob, qpfile: Path | None, out_hevc: Path, extra: dict) -> list[str]:
    """The ``x265`` argv reading y4m from stdin: preset, tune, rate, the config's ``[params]``
    with ``extra`` over them (each ``--key value``; ``qp`` and ``zones`` are not parameters of
    the CLI) and the qpfile."""
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


class X265Cli(Encoder):
    """The x265 CLI: modes baseline and qpfile; two-pass is not driven (FFmpeg's libx265 does)."""

    name = "x265"
    codec = "hevc"
    modes = ("baseline", "qpfile")
    engine = "x265-cli"
    mode_configs = {"qpfile": "hevc_x265cli"}

    def mode_refusal(self, mode: str) -> str:
        return f"--mode {mode} goes through FFmpeg; config {self.config.name} drives the x265 CLI"

    def check_settings(self, mode: str, rate: RatePoint, two_pass: bool) -> list[str]:
        if two_pass:
            raise InputError("--two-pass runs through FFmpeg (libx265/libx264); config "
                             f"{self.config.name} drives the x265 CLI")
        return []

    @classmethod
    def find_cli(cls, paths: dict[str, str | None], modes: Sequence[str]) -> dict[str, Tool]:
        return {"x265": find_x265(paths.get("x265"))}

    def sidecar_fields(self, job: EncodeJob) -> dict:
        return {"encoder_version": job.x265.version if job.x265 else job.ffmpeg.version,
                "engine": self.engine}

    def qpfile_payload(self, job: EncodeJob, maps: ClipMaps, adapter: dict) -> Path:
        """``<clip>.qpfile.txt``: ``<frame> <type> <QP>`` a frame, the frame QP following the
        CRF (``round(crf) + frame_qp - base_qp``)."""
        if job.rate.control != "crf":
            raise InputError("qpfile mode forces a QP on every frame; give --crf (its value "
                             "sets the QP level: frame QP = round(crf) + frame delta)")
        fqps = frame_qps(maps.qp)
        off = frame_qp_offset(job, maps.base_qp)
        keyint = int(self.config.params.get("keyint", 250))
        qpf = job.folder / f"{job.clip.clip_id}.qpfile.txt"
        write_text(qpf, qpfile_text(fqps, qp_offset=off, keyint=keyint))
        adapter.update(qpfile=str(qpf), frame_qps=fqps, qp_offset=off,
                       qp_rule="frame QP = round(crf) + (frame_qp - base_qp); types I every "
                               "keyint frames, P elsewhere (bframes=0)")
        return qpf

    def encode(self, job: EncodeJob, maps: ClipMaps | None, side: dict) -> None:
        clip, cfg = job.clip, self.config
        qpf = self.qpfile_payload(job, maps, side["adapter"]) if job.mode == "qpfile" else None
        extra = {"pools": job.threads} if job.threads else {}
        with atomic_path(job.mp4) as tmp_mp4, atomic_path(job.folder / f"{clip.clip_id}.hevc") as tmp_hevc:
            dec = y4m_decoder(job)
            enc = cli_args(job, qpf, tmp_hevc, extra)
            side["commands"] += [dec, enc]
            run_pipeline(dec, enc, job.log_path)
            mux = [job.ffmpeg.path, "-hide_banner", "-nostdin", "-y", "-framerate", f"{clip.fps:g}",
                   "-i", str(tmp_hevc), "-c", "copy"] + (["-tag:v", cfg.tag] if cfg.tag else []) + [str(tmp_mp4)]
            side["commands"].append(mux)
            run(mux)
        (job.folder / f"{clip.clip_id}.hevc").unlink(missing_ok=True)
