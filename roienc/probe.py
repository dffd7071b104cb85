"""What is inside an encoded file: packet sizes and frame count.

Each frame's bytes in display order come from PyAV's demuxer in-process (:func:`frame_sizes_demuxed`,
well under a millisecond a file); FFmpeg itself is the fallback and the reference. ffprobe is
optional (the imageio-ffmpeg wheel has none), so FFmpeg's packet list comes from
``ffmpeg -i FILE -map 0:v:0 -c copy -f framecrc -``, whose 3rd column is each packet's pts and
5th its size.
"""
from __future__ import annotations

from pathlib import Path

from .tools import run


def packets(ffmpeg: str, path: str | Path) -> list[tuple[int, int]]:
    """``(pts, size in bytes)`` of the video packets of ``path``, in decode order (framecrc's
    3rd and 5th columns)."""
    out = run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
               "-f", "framecrc", "-"]).stdout.decode("utf-8", "replace")
    found = []
    for line in out.splitlines():
        if not line or line.startswith("#"):
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) >= 5:
            try:
                pts = int(cols[2])
            except ValueError:          # NOPTS: keep the decode position
                pts = len(found)
            found.append((pts, int(cols[4])))
    return found


def packet_sizes(ffmpeg: str, path: str | Path) -> list[int]:
    """Sizes in bytes of the video packets of ``path``, in decode order."""
    return [size for _, size in packets(ffmpeg, path)]


def display_order_sizes(pkts: list[tuple[int, int]]) -> list[int]:
    """Packet sizes in presentation order (sorted by pts): the bytes each frame got, frame ``i``
    of the source being picture ``i`` shown. With B-pictures decode order differs (I P B B ...)."""
    return [size for _, size in sorted(pkts, key=lambda p: p[0])]


def frame_sizes_demuxed(path: str | Path) -> list[int] | None:
    """Bytes of each picture of the first video stream of ``path`` in presentation order, read by
    PyAV's demuxer in-process (a few ms, no FFmpeg process: for reading many files); None when
    the file cannot be demuxed."""
    import av

    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            found = [(p.pts, p.size) for p in c.demux(s) if p.size]
    except (av.FFmpegError, IndexError, OSError):
        return None
    if any(pts is None for pts, _ in found):
        return None
    return display_order_sizes(found)


def frame_sizes(path: str | Path, ffmpeg: str | None = None) -> list[int] | None:
    """Bytes of each frame of ``path`` in presentation order: :func:`frame_sizes_demuxed`, else
    FFmpeg's packet list when ``ffmpeg`` is given (its errors raised as
    :class:`~roienc.errors.ToolError`); None when PyAV cannot read the file and no FFmpeg is
    given."""
    got = frame_sizes_demuxed(path)
    if got is not None or ffmpeg is None:
        return got
    return display_order_sizes(packets(ffmpeg, path))


def bitrate_kbps(sizes: list[int], fps: float) -> float:
    """Video bitrate from packet sizes and the frame rate: 8 * bytes / (frames / fps) / 1000."""
    if not sizes:
        return float("nan")
    return 8.0 * sum(sizes) / (len(sizes) / fps) / 1000.0
