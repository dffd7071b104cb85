"""What is inside an encoded file: packet sizes and frame count, read with FFmpeg itself.

ffprobe is optional (the imageio-ffmpeg wheel has none), so packet sizes come from
``ffmpeg -i FILE -map 0:v:0 -c copy -f framecrc -``, whose 5th column is each packet's size.
"""
from __future__ import annotations

from pathlib import Path

from .tools import run


def packet_sizes(ffmpeg: str, path: str | Path) -> list[int]:
    """Sizes in bytes of the video packets of ``path``, in decode order."""
    out = run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
               "-f", "framecrc", "-"]).stdout.decode("utf-8", "replace")
    sizes = []
    for line in out.splitlines():
        if not line or line.startswith("#"):
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) >= 5:
            sizes.append(int(cols[4]))
    return sizes


def bitrate_kbps(sizes: list[int], fps: float) -> float:
    """Video bitrate from packet sizes and the frame rate: 8 * bytes / (frames / fps) / 1000."""
    if not sizes:
        return float("nan")
    return 8.0 * sum(sizes) / (len(sizes) / fps) / 1000.0
