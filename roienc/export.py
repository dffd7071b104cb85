"""``roienc export``: the adapter files of a clip, for use by hand with stock FFmpeg/x265.

Writes ``<clip>.roi.json`` (per-frame rectangles with dq), ``<clip>.filter.txt`` (per-frame addroi
filter script), ``<clip>.zones.txt``, ``<clip>.qpfile.txt`` and ``<clip>.ffmpeg.sh`` with the exact
commands — built by the same functions the encode runner uses.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from .adapters import (ffmpeg_filter_script_args, frame_qps, graph_router, perframe_filter_script,
                       qp_range_for, qpfile_text, roi_rects, zones_string)
from .configs import check_rate, load_config
from .dataset import FPS, Clip, select_clips
from .encode import EncodeJob, RatePoint, _x265_cli_args, build_ffmpeg_cmd, job_input_args
from .errors import InputError
from .fileio import ensure_dir, write_json, write_text
from .maps import load_clip_maps, load_params, read_manifest
from .errors import ToolError
from .tools import Tool, find_ffmpeg, find_x265

FORMATS = ("addroi", "zones", "qpfile", "all")
CODEC = "hevc"          # what the exported commands encode (libx265, the x265 CLI)


def _sh(cmd: list[str], ff: Tool | None = None, x265: Tool | None = None) -> str:
    """``cmd`` as shell text with the binaries (and the filter-script option) as variables."""
    words = []
    for i, a in enumerate(cmd):
        if i == 0 and ff is not None and a == ff.path:
            words.append('"$FFMPEG"')
        elif i == 0 and x265 is not None and a == x265.path:
            words.append('"$X265"')
        elif a in ("-filter_complex_script", "-/filter_complex") and ff is not None:
            words.append('"$FILTER_SCRIPT_OPT"')
        else:
            words.append(shlex.quote(str(a)))
    return " ".join(words)


def _default(var: str, path: str) -> str:
    """``"${VAR:-path}"``, the path quoted for the shell when it needs it."""
    q = shlex.quote(path)
    return f'"${{{var}:-{path}}}"' if q == path else f"${{{var}:-{q}}}"


def _script_head(ff: Tool, x265: Tool | None) -> list[str]:
    """Shell lines choosing the binaries: the ones roienc found, overridable like roienc's own."""
    fopt = "-/filter_complex" if (ff.major or 0) >= 7 else "-filter_complex_script"
    lines = [
        "# binaries: the ones roienc found at export; override with ROIENC_FFMPEG / ROIENC_X265",
        f"FFMPEG={_default('ROIENC_FFMPEG', ff.path)}",
        f"X265={_default('ROIENC_X265', x265.path if x265 else 'x265')}",
        "# a filter graph file is read by -/filter_complex on FFmpeg 7+, -filter_complex_script before",
        f"FILTER_SCRIPT_OPT={fopt}",
        r'if [[ $("$FFMPEG" -hide_banner -version) =~ ^ffmpeg\ version\ n?([0-9]+)\. ]]; then',
        '  if (( BASH_REMATCH[1] >= 7 )); then FILTER_SCRIPT_OPT=-/filter_complex; '
        'else FILTER_SCRIPT_OPT=-filter_complex_script; fi',
        "fi",
        ""]
    return lines


def clips_from_maps(maps_root: str | Path) -> list[Clip]:
    """Clips whose maps exist: each sequence snippet, else each city's annotated frames."""
    params = load_params(maps_root)
    man = read_manifest(maps_root)
    man = man[man["status"] == "ok"]
    root = Path(params.get("cityscapes_root", ""))
    clips = []
    seq = man[man["source"] == "sequence"]
    for (split, city, snippet), g in seq.groupby(
            [seq["split"], seq["city"], seq["frame_id"].str.rsplit("_", n=1).str[0]]):
        fids = sorted(g["frame_id"])
        folder = root / "leftImg8bit_sequence" / split / city
        clips.append(Clip(snippet, split, city, "sequence", fids,
                          [folder / f"{f}_leftImg8bit.png" for f in fids], FPS))
    ann = man[man["source"] == "frames"]
    for (split, city), g in ann.groupby(["split", "city"]):
        fids = sorted(g["frame_id"])
        folder = root / "leftImg8bit" / split / city
        clips.append(Clip(f"{city}_frames", split, city, "frames", fids,
                          [folder / f"{f}_leftImg8bit.png" for f in fids], FPS))
    return clips


def export_clip(maps_root: str | Path, clip: Clip, out: str | Path, fmt: str = "all",
                crf: float = 28.0, ffmpeg: str | None = None) -> list[Path]:
    """Write the adapter files of ``clip``; return their paths."""
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    crf = check_rate("crf", crf, codec=CODEC)
    out = ensure_dir(Path(out).resolve())      # the script runs from any directory
    maps = load_clip_maps(maps_root, clip)
    want = set(FORMATS[:3]) if fmt == "all" else {fmt}
    cid = clip.clip_id
    written: list[Path] = []
    ff = find_ffmpeg(ffmpeg)
    cfg = load_config("hevc")
    job = EncodeJob(clip, Path(maps_root), "roi", RatePoint("crf", crf), cfg, out, ff)
    qps = frame_qps(maps.qp)
    off = int(round(crf)) - maps.base_qp
    try:
        x265: Tool | None = find_x265()
    except ToolError:
        x265 = None
    sh = ["#!/usr/bin/env bash", f"# roienc export of clip {cid} (maps: {maps_root})",
          f"# HEVC at CRF {crf:g}; QP blocks of {maps.block_size} px -> x265 qg-size={maps.block_size}",
          "set -euo pipefail", "", *_script_head(ff, x265)]
    params = {"qg-size": max(8, min(64, maps.block_size))}
    if "addroi" in want:
        qpr = qp_range_for(cfg.pix_fmt)
        frames = [{"frame": i, "frame_id": fid,
                   "rects": [r.__dict__ for r in roi_rects(maps.dq[i], maps.block_size, maps.width, maps.height)]}
                  for i, fid in enumerate(clip.frame_ids)]
        written.append(write_json(out / f"{cid}.roi.json", {
            "clip": cid, "width": maps.width, "height": maps.height, "block_size": maps.block_size,
            "base_qp": maps.base_qp, "qp_range": qpr, "qoffset": "dq/qp_range",
            "overlap": "rectangles may overlap: the first listed that covers a block gives its dq "
                       "(as libx264/libx265 apply them); blocks no rectangle covers get 0",
            "rects_per_frame": [len(f["rects"]) for f in frames], "frames": frames}))
        fs = perframe_filter_script(maps.dq, maps.block_size, maps.width, maps.height,
                                    qp_range=qpr, pix_fmt=cfg.pix_fmt, router=graph_router(ff))
        script = write_text(out / f"{cid}.filter.txt", fs.text)
        written.append(script)
        cmd = build_ffmpeg_cmd(job, out / f"{cid}.roi.mp4",
                               ffmpeg_filter_script_args(ff, script), params)
        sh += ["# per-frame ROI (addroi through the filter script)", _sh(cmd, ff), ""]
    if "zones" in want:
        zones = zones_string(qps, "q", qp_offset=off)
        written.append(write_text(out / f"{cid}.zones.txt", zones + "\n"))
        zjob = EncodeJob(clip, Path(maps_root), "zones", RatePoint("crf", crf), cfg, out, ff)
        cmd = build_ffmpeg_cmd(zjob, out / f"{cid}.zones.mp4", None, {**params, "zones": zones})
        sh += ["# x265 zones (frame QP = round(crf) + frame delta)", _sh(cmd, ff), ""]
    if "qpfile" in want:
        xcfg = load_config("hevc_x265cli")
        qpf = write_text(out / f"{cid}.qpfile.txt",
                         qpfile_text(qps, qp_offset=off, keyint=int(xcfg.params.get("keyint", 250))))
        written.append(qpf)
        xtool = x265 or Tool("x265", "x265", "", "PATH")
        xjob = EncodeJob(clip, Path(maps_root), "qpfile", RatePoint("crf", crf), xcfg, out, ff, xtool)
        dec = [ff.path, "-hide_banner", "-nostdin", *job_input_args(xjob), "-vf",
               f"format={xcfg.pix_fmt}", "-f", "yuv4mpegpipe", "-"]
        enc = _x265_cli_args(xjob, qpf, out / f"{cid}.qpfile.hevc", params)
        sh += ["# x265 CLI with a qpfile (FFmpeg's libx265 wrapper rejects qpfile)",
               'if command -v "$X265" >/dev/null; then',
               "  " + _sh(dec, ff) + " \\\n    | " + _sh(enc, x265=xtool),
               "else",
               '  echo "x265 CLI not found ($X265): qpfile encode skipped (apt-get install x265, '
               'or set ROIENC_X265)" >&2',
               "fi", ""]
    script_path = write_text(out / f"{cid}.ffmpeg.sh", "\n".join(sh) + "\n")
    script_path.chmod(0o755)
    written.append(script_path)
    return written


def export(maps_root: str | Path, out: str | Path, fmt: str = "all",
           sequence_ids: list[str] | None = None, crf: float = 28.0,
           ffmpeg: str | None = None) -> dict[str, list[Path]]:
    """Write the adapter files and commands of every clip of ``maps_root`` (or of
    ``sequence_ids``) into ``out``; the format and the CRF are checked before anything is
    written."""
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    crf = check_rate("crf", crf, codec=CODEC)
    if isinstance(sequence_ids, (str, bytes)):
        raise InputError(f"--sequence takes a list of clip ids, got the string {sequence_ids!r}; "
                         f"pass [{sequence_ids!r}]")
    clips = select_clips(clips_from_maps(maps_root), sequence_ids, f"the maps in {maps_root}")
    if not clips:
        raise InputError(f"{maps_root}: no clip has complete maps (see maps_manifest.csv)")
    return {c.clip_id: export_clip(maps_root, c, out, fmt, crf, ffmpeg) for c in clips}
