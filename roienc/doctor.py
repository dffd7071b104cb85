"""What roienc can use on this machine: FFmpeg, its encoders and filters, the x265 CLI, the
SVT-AV1 CLI, and whether addroi (libx265, libvpx-vp9), zones and qpfile really work (2-frame trial
encodes)."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .adapters import qpfile_text, zones_string
from .errors import RoiencError
from .tools import find_ffmpeg, find_ffprobe, find_x265, run


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    essential: bool = True


def _tiny_y4m(path: Path, w: int = 64, h: int = 64, n: int = 2) -> Path:
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F17:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(n):
            f.write(b"FRAME\n" + rng.integers(0, 256, w * h * 3 // 2, dtype=np.uint8).tobytes())
    return path


def _trial(name: str, fn, essential: bool = True) -> Check:
    try:
        return Check(name, True, fn() or "ok", essential)
    except RoiencError as exc:
        return Check(name, False, str(exc).splitlines()[0] + (" | " + str(exc).splitlines()[-1]
                                                             if len(str(exc).splitlines()) > 1 else ""), essential)


def _engine_check(ffmpeg: str | None) -> Check:
    """Which engine encodes libx265/libx264 by default here, and with which build."""
    from .encode import inproc_versions, run_engine

    try:
        eng = run_engine(None, "hevc", ffmpeg, two_pass=False)
    except RoiencError as exc:
        return Check("encode engine", False, str(exc).splitlines()[0], essential=False)
    info = inproc_versions()
    if eng == "pyav":
        detail = (f"pyav: in-process through PyAV {info['av']} (FFmpeg {info['ffmpeg']}); "
                  "--engine ffmpeg or ROIENC_ENGINE=ffmpeg for the FFmpeg CLI above")
    else:
        why = ("PyAV not installed" if info is None else "chosen by --ffmpeg/ROIENC_FFMPEG/ROIENC_ENGINE"
               if "libx265" in info["encoders"] else "PyAV's FFmpeg has no libx265")
        detail = f"ffmpeg: the FFmpeg CLI above ({why})"
    return Check("encode engine", True, detail, essential=False)


def _png_check() -> Check:
    """Which decoder reads the dataset's PNGs (libspng is 1.2-1.8x faster than libpng)."""
    from . import fileio
    if fileio._spng is not None:
        return Check("PNG decoder", True, f"libspng (pyspng {getattr(fileio._spng, '__version__', '?')})",
                     essential=False)
    return Check("PNG decoder", True, "Pillow (pyspng not installed: pip install pyspng for "
                 "faster reading of Cityscapes PNGs)", essential=False)


def _svtav1_check(svtav1: str | None) -> Check:
    """SvtAv1EncApp for --codec av1: where, which version, and whether it takes --roi-map-file."""
    from .svtav1 import locate_svtav1, roi_problem
    try:
        tool = locate_svtav1(svtav1)
    except RoiencError as exc:
        return Check("SVT-AV1 CLI (av1)", False, str(exc).splitlines()[0], essential=False)
    why = roi_problem(tool)
    where = f"{tool.path} (from {tool.source}), SVT-AV1 {tool.version}"
    if why:
        return Check("SVT-AV1 CLI (av1)", False, f"{where}: baseline only; no --roi-map-file, so "
                     "--codec av1 --mode roi is refused (needs SVT-AV1 >= 1.6)", essential=False)
    return Check("SVT-AV1 CLI (av1)", True, f"{where}, with --roi-map-file", essential=False)


def run_doctor(ffmpeg: str | None = None, x265: str | None = None,
               svtav1: str | None = None) -> list[Check]:
    """All checks, in order; nothing raises."""
    checks: list[Check] = []
    try:
        ff = find_ffmpeg(ffmpeg)
    except RoiencError as exc:
        return [Check("ffmpeg", False, str(exc))]
    checks.append(Check("ffmpeg", True, f"{ff.path} (from {ff.source}), version {ff.version}"))
    for enc in ("libx265", "libx264", "libvpx-vp9"):
        checks.append(Check(f"encoder {enc}", enc in ff.encoders,
                            "present" if enc in ff.encoders else f"missing in {ff.path}",
                            essential=enc == "libx265"))
    for flt in ("addroi", "concat", "trim", "split"):
        checks.append(Check(f"filter {flt}", flt in ff.filters,
                            "present" if flt in ff.filters else "missing"))
    checks.append(Check("filter segment", "segment" in ff.filters,
                        "present: per-frame ROI graphs route each frame to its own branch"
                        if "segment" in ff.filters else "missing: per-frame ROI graphs fall back to "
                        "split/trim (slower on long clips)", essential=False))
    checks.append(_engine_check(ffmpeg))
    checks.append(_png_check())
    probe = find_ffprobe(ff.path)
    checks.append(Check("ffprobe", probe is not None, probe or "not found (optional: roienc reads "
                        "packet sizes with ffmpeg itself)", essential=False))
    with tempfile.TemporaryDirectory(prefix="roienc-doctor-") as tmp:
        src = _tiny_y4m(Path(tmp) / "t.y4m")
        base = [ff.path, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(src)]

        def roi():
            run(base + ["-vf", "addroi=x=0:y=0:w=32:h=32:qoffset=-3/51", "-c:v", "libx265",
                        "-crf", "30", "-x265-params", "log-level=error:qg-size=16",
                        str(Path(tmp) / "roi.mp4")])
            return "2-frame libx265 encode with addroi ok"

        def zones():
            run(base + ["-c:v", "libx265", "-crf", "30", "-x265-params",
                        f"log-level=error:zones={zones_string([25, 35])}", str(Path(tmp) / "z.mp4")])
            return "2-frame libx265 encode with -x265-params zones ok"

        checks.append(_trial("ROI (addroi + libx265)", roi))
        checks.append(_trial("x265 zones via FFmpeg", zones))

        def vp9_roi():
            from .configs import load_config
            run(base + ["-vf", "addroi=x=0:y=0:w=32:h=32:qoffset=-10/63,addroi=x=0:y=0:w=64:"
                        "h=64:qoffset=0/63", "-c:v", "libvpx-vp9", "-crf", "36", "-b:v", "0",
                        *load_config("vp9").option_args(), str(Path(tmp) / "v.webm")])
            return "2-frame libvpx-vp9 encode with addroi (realtime, cpu-used 5) ok"

        if "libvpx-vp9" in ff.encoders:
            checks.append(_trial("ROI (addroi + libvpx-vp9)", vp9_roi, essential=False))
        checks.append(_svtav1_check(svtav1))
        try:
            x = find_x265(x265)
            checks.append(Check("x265 CLI", True, f"{x.path} (from {x.source}), version {x.version}",
                                essential=False))

            def qpfile():
                qpf = Path(tmp) / "q.txt"
                qpf.write_text(qpfile_text([25, 35]))
                run([x.path, "--input", str(src), "--qpfile", str(qpf), "--bframes", "0",
                     "--log-level", "error", "--output", str(Path(tmp) / "q.hevc")])
                return "2-frame x265 encode with --qpfile ok"

            checks.append(_trial("qpfile (x265 CLI)", qpfile, essential=False))
        except RoiencError as exc:
            checks.append(Check("x265 CLI", False, str(exc).splitlines()[0], essential=False))
            checks.append(Check("qpfile (x265 CLI)", False, "needs the x265 CLI", essential=False))
    return checks
