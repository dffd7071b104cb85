"""Evaluate encodes: decode, compare with the source in the same pixel format, region metrics.

For every sidecar under ``ENC`` with status ok, the encoded clip is decoded to raw YUV through a
pipe, and the source PNG frames are converted to the same pixel format by the same FFmpeg with
the same filter the encoder input went through (``format=<pix_fmt>``), so colour conversion is not
counted as coding error. Both streams are read frame by frame in lockstep: memory stays flat.

ROI = luma pixels with importance >= ``roi_threshold``; every region metric (``psnr_roi``,
``ssim_roi``, their ``nonroi`` complements, weighted and near-object PSNR) is on luma.
``psnr_u``/``psnr_v`` cover whole planes, and ``psnr_yuv`` = (6*PSNR_Y + PSNR_U + PSNR_V)/8 from
clip-pooled plane PSNRs.
``psnr_near_objects``: pixels of objects inside d_safe (``<id>_near_mask.png`` of build-maps).
SSIM only where asked (``ssim=True``, ``--ssim``): otherwise the ``ssim_*`` columns are NaN.
"""
from __future__ import annotations

import logging
import queue
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from . import __version__
from .dataset import Clip
from .encode import concat_list_text, input_args, sources_digest, sources_sha1
from .errors import InputError, RoiencError, ToolError
from .executor import ExecutorSpec, run_tasks
from .fileio import clean_stale_temps, ensure_dir, read_json, write_csv, write_json
from .maps import frame_prefix, importance_file, load_importance, load_near_mask, read_manifest
from .names import check_output_path
from .store import file_digest, key_of
from .metrics import RegionAccumulator, WeightedAccumulator, ssim_map
from .probe import bitrate_kbps, packet_sizes
from .tools import _launch_problem, find_ffmpeg, tail

log = logging.getLogger(__name__)

RESULT_COLUMNS = ["clip", "codec", "mode", "rate_control", "rate_value", "frames", "width",
                  "height", "bytes", "kbps", "bpp", "psnr_y", "psnr_yuv", "psnr_roi",
                  "psnr_nonroi", "psnr_weighted", "ssim_y", "ssim_roi", "ssim_nonroi",
                  "roi_fraction", "psnr_near_objects", "encode_seconds"]
EXTRA_COLUMNS = ["psnr_u", "psnr_v", "psnr_roi_framemean", "psnr_nonroi_framemean",
                 "near_fraction", "rate_label", "sidecar", "eval_key", "judged_by", "frames_csv"]
REPORT_FLUSH_S = 5.0   # rewrite the partial report at most this often while a run goes on
SSIM_COLUMNS = ["ssim_y", "ssim_roi", "ssim_nonroi"]
FRAME_COLUMNS = ["frame", "frame_id", "psnr_y", "psnr_roi", "psnr_nonroi", "ssim_y", "ssim_roi",
                 "ssim_nonroi", "roi_fraction", "bytes", "eval_key"]


@dataclass(frozen=True)
class EvalTask:
    sidecar: Path
    maps_root: Path
    cityscapes_root: Path | None
    roi_threshold: float
    per_frame_dir: Path | None
    ffmpeg: str
    ssim: bool = False        # True: the SSIM map (ssim_* columns); False: they are NaN
    pipeline: bool = True     # False: every metric of a frame in the main thread (same numbers)
    # the judging maps' record of the frame each map was built from (its image's sha256, from
    # maps_manifest.csv), by frame id: maps of other frames are refused
    maps_images: tuple[tuple[str, str], ...] = ()


class FrameReader:
    """Raw planar YUV frames from an FFmpeg process, one at a time.

    A thread reads ahead (up to ``prefetch`` frames), so FFmpeg keeps decoding while the caller
    computes metrics instead of blocking on a full pipe: decode and metrics overlap.
    """

    def __init__(self, cmd: list[str], width: int, height: int, pix_fmt: str,
                 prefetch: int = 2) -> None:
        self.cmd, self.w, self.h = cmd, width, height
        self.depth = 2 if pix_fmt.endswith(("10le", "12le", "16le")) else 1
        self.dtype = np.uint16 if self.depth == 2 else np.uint8
        cw, ch = (width + 1) // 2, (height + 1) // 2
        if "444" in pix_fmt:
            cw, ch = width, height
        elif "422" in pix_fmt:
            ch = height
        self.shapes = [(height, width), (ch, cw), (ch, cw)]
        self.frame_bytes = sum(a * b for a, b in self.shapes) * self.depth
        self._err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err,
                                         stdin=subprocess.DEVNULL, bufsize=self.frame_bytes)
        except OSError as exc:
            self._err.close()
            raise ToolError(_launch_problem(cmd[0], exc), cmd) from None
        self._q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._eof = False
        self._thread = threading.Thread(target=self._read_ahead, daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read_ahead(self) -> None:
        try:
            while not self._stop.is_set():
                buf = self.proc.stdout.read(self.frame_bytes)
                if not self._put(buf) or len(buf) < self.frame_bytes:
                    return
        except (OSError, ValueError) as exc:      # pipe closed under us by close()
            self._put(exc)

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        while True:
            buf = self._q.get()
            if isinstance(buf, Exception):
                raise ToolError(f"reading frames from {Path(self.cmd[0]).name} failed: {buf}", self.cmd)
            if not buf:
                self._eof = True
                break
            if len(buf) < self.frame_bytes:
                raise ToolError(f"truncated frame from {Path(self.cmd[0]).name}", self.cmd)
            arr = np.frombuffer(buf, dtype=self.dtype)
            planes, off = [], 0
            for shp in self.shapes:
                n = shp[0] * shp[1]
                planes.append(arr[off:off + n].reshape(shp))
                off += n
            yield planes

    def close(self) -> None:
        if not self._eof:
            self._stop.set()
        if not self._eof and self.proc.poll() is None:
            self.proc.kill()                       # stopped early: do not wait for a full decode
            killed = True
        else:
            killed = False
        self._thread.join(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        rc = self.proc.wait()
        self._err.seek(0)
        err = self._err.read()
        self._err.close()
        if not killed and rc not in (0, None) and rc > 0:
            raise ToolError(f"{Path(self.cmd[0]).name} failed while decoding", self.cmd, rc, tail(err))


def _source_cmd(ffmpeg: str, side: dict, input_args: list[str] | None = None) -> list[str]:
    args = input_args if input_args is not None else side["input_args"]
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", *args,
            "-vf", f"format={side['pix_fmt']}", "-f", "rawvideo", "-pix_fmt", side["pix_fmt"], "-"]


def source_files(side: dict, cityscapes_root: Path | None) -> list[Path]:
    """The source frames of an encode: the sidecar's absolute paths, or with
    ``--cityscapes-root`` the same frames under that root."""
    if cityscapes_root is not None:
        return [Path(cityscapes_root) / rel for rel in side.get("source_relpaths", [])]
    return [Path(f) for f in side.get("source_files", [])]


def encoded_file(sidecar: Path, side: dict) -> Path:
    """The video an encode's sidecar describes (``<clip>.mp4`` beside it, or the config's
    container)."""
    mp4 = sidecar.with_suffix(".mp4")
    if mp4.is_file():
        return mp4
    return sidecar.with_name(f"{side.get('clip')}.{side.get('config', {}).get('container', 'mp4')}")


def source_input(side: dict, sidecar: Path, cityscapes_root: Path | None, tmpdir: Path) -> list[str]:
    """FFmpeg input options reading the source frames of an encode, built the way the encode
    built its own (:func:`roienc.encode.input_args`): the sidecar's absolute frame paths, or,
    with ``--cityscapes-root``, the same frames under that root. The frames must be the ones
    encoded: every file present and the hash of their bytes equal to the sidecar's."""
    if not (side.get("source_digest") or side.get("source_sha1")) or "source_relpaths" not in side:
        # sidecar of roienc < 0.x: no recorded files, only the encoder's input options
        log.warning("%s: sidecar records no source files; comparing with its input options as "
                    "they stand (re-encode to get the source check)", sidecar)
        return list(side["input_args"])
    files = source_files(side, cityscapes_root)
    where = (f"--cityscapes-root {cityscapes_root}" if cityscapes_root is not None else
             f"the sidecar's paths (encoded from {side.get('cityscapes_root') or 'an unrecorded root'})")
    if len(files) != len(side["frame_ids"]):
        raise InputError(f"{sidecar}: {len(files)} source files for {len(side['frame_ids'])} frames")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise InputError(f"{sidecar}: source frame {missing[0]} not found (looked in {where}"
                         f"{'' if cityscapes_root else '; pass --cityscapes-root'}), "
                         f"{len(missing)} of {len(files)} missing")
    same = (sources_digest(files)[0] == side["source_digest"] if side.get("source_digest")
            else sources_sha1(files) == side["source_sha1"])
    if not same:
        raise InputError(f"{sidecar}: the source frames in {where} are not the ones encoded "
                         f"(their bytes differ); pass the --cityscapes-root the encode used "
                         f"({side.get('cityscapes_root') or 'not recorded'})")
    clip = Clip(side["clip"], side["split"], side["city"], side["source"], list(side["frame_ids"]),
                files, float(side["fps"]))
    if clip.source == "sequence":
        return input_args(clip)
    lst = Path(tmpdir) / f"{clip.clip_id}.frames.ffconcat"
    lst.write_bytes(concat_list_text(files).encode("utf-8", "surrogateescape"))
    return input_args(clip, lst)


def _mp4_boxes(f, start: int, end: int):
    """``(type, payload start, payload end)`` of the ISO-BMFF boxes between two file offsets."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        head = f.read(16)
        size, typ = int.from_bytes(head[:4], "big"), head[4:8]
        hdr = 8
        if size == 1:                          # 64-bit size
            size, hdr = int.from_bytes(head[8:16], "big"), 16
        elif size == 0:                        # to the end of the enclosing box
            size = end - pos
        if size < hdr or pos + size > end:
            raise ValueError(f"box {typ!r} at {pos}: size {size} does not fit")
        yield typ, pos + hdr, pos + size
        pos += size


def mp4_video_sample_sizes(path: str | Path) -> list[int] | None:
    """Sizes in bytes of the samples (= packets) of the first video track of an MP4/MOV file,
    read from its sample size table (``stsz``): what :func:`roienc.probe.packet_sizes` gets from
    an FFmpeg run (~0.14 s of process start and demuxing a clip) in well under a millisecond.
    None where the file is not a plain MP4 this reads (fragmented, compact ``stz2`` table, no
    video track, damaged): the caller asks FFmpeg then."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, 2)
            moov = next(((a, b) for t, a, b in _mp4_boxes(f, 0, end) if t == b"moov"), None)
            if moov is None:
                return None
            boxes = list(_mp4_boxes(f, *moov))
            if any(t == b"mvex" for t, _, _ in boxes):
                return None                     # fragmented: samples live in the fragments
            for t, a, b in boxes:
                if t != b"trak":
                    continue
                mdia = next(((x, y) for u, x, y in _mp4_boxes(f, a, b) if u == b"mdia"), None)
                if mdia is None:
                    continue
                sub = {u: (x, y) for u, x, y in _mp4_boxes(f, *mdia)}
                if b"hdlr" not in sub or b"minf" not in sub:
                    continue
                f.seek(sub[b"hdlr"][0] + 8)
                if f.read(4) != b"vide":
                    continue
                stbl = next(((x, y) for u, x, y in _mp4_boxes(f, *sub[b"minf"]) if u == b"stbl"), None)
                stsz = stbl and next(((x, y) for u, x, y in _mp4_boxes(f, *stbl) if u == b"stsz"), None)
                if not stsz:
                    return None
                f.seek(stsz[0])
                head = f.read(12)
                size, count = int.from_bytes(head[4:8], "big"), int.from_bytes(head[8:12], "big")
                if size:
                    return [size] * count
                if stsz[0] + 12 + 4 * count > stsz[1]:
                    return None
                return np.frombuffer(f.read(4 * count), ">u4").astype(int).tolist()
    except (OSError, ValueError):
        return None
    return None


def _packet_sizes(ffmpeg: str, mp4: Path, frames: int) -> list[int]:
    """Video packet sizes of an encode: from the MP4's sample table when it holds one entry per
    encoded frame, else from FFmpeg (:func:`roienc.probe.packet_sizes`)."""
    sizes = mp4_video_sample_sizes(mp4) if mp4.suffix.lower() in (".mp4", ".mov") else None
    return sizes if sizes is not None and len(sizes) == frames else packet_sizes(ffmpeg, mp4)


def _up_filtered_gray_png(data: bytes) -> np.ndarray | None:
    """A non-zero mask of a gray PNG (1- or 8-bit, not interlaced) whose rows all use filter 2
    ('Up'), as build-maps writes its near-object masks (:func:`roienc.fileio.png_idat`): inflate,
    undo the filter with a running sum over rows, unpack bits. About 1 ms at 2048x1024 where
    Pillow's decode plus its array conversion take ~6. None for any other PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    pos, ihdr, idat = 8, None, []
    while pos + 8 <= len(data):
        n, typ = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        crc = data[pos + 8 + n:pos + 12 + n]
        if len(body) != n or crc != zlib.crc32(body, zlib.crc32(typ)).to_bytes(4, "big"):
            return None                  # damaged: Pillow says how
        if typ == b"IHDR":
            ihdr = body
        elif typ == b"IDAT":
            idat.append(body)
        elif typ == b"IEND":
            break
        elif typ[0] & 0x20 == 0 or typ in (b"PLTE", b"tRNS", b"sBIT", b"gAMA", b"iCCP", b"sRGB"):
            return None                  # a critical or a value-changing chunk: not ours to read
        pos += 12 + n
    if ihdr is None or len(ihdr) != 13 or not idat:
        return None
    w, h = int.from_bytes(ihdr[:4], "big"), int.from_bytes(ihdr[4:8], "big")
    bits, colour, interlace = ihdr[8], ihdr[9], ihdr[12]
    if colour != 0 or bits not in (1, 8) or interlace != 0 or not w or not h:
        return None
    stride = (w + 7) // 8 if bits == 1 else w
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error:
        return None
    if len(raw) != h * (stride + 1):
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(h, stride + 1)
    if not (rows[:, 0] == 2).all():
        return None
    px = np.cumsum(rows[:, 1:], axis=0, dtype=np.uint8)     # 'Up': each row adds the one above
    if bits == 1:
        return np.unpackbits(px, axis=1, count=w).view(bool)
    return px > 0


def _near_mask(maps_root: Path, split: str, city: str, fid: str) -> np.ndarray | None:
    """:func:`roienc.maps.load_near_mask`, the same mask read faster where the PNG is build-maps'
    own Up-filtered gray (any other, or a damaged one, goes to it: its errors, its result)."""
    p = frame_prefix(Path(maps_root), split, city, fid).with_name(f"{fid}_near_mask.png")
    try:
        fast = _up_filtered_gray_png(p.read_bytes())
    except OSError:
        fast = None
    return fast if fast is not None else load_near_mask(maps_root, split, city, fid)


def _decode_cmd(ffmpeg: str, path: Path, pix_fmt: str) -> list[str]:
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
            "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"]


def evaluate_clip(task: EvalTask) -> dict:
    """Metrics of one encode (one results row); per-frame CSV when asked."""
    side = read_json(task.sidecar)
    mp4 = encoded_file(task.sidecar, side)
    if not mp4.is_file():
        raise InputError(f"{task.sidecar}: its encoded file {mp4} is missing")
    if side.get("mp4_sha256") and file_digest(mp4) != side["mp4_sha256"]:
        raise InputError(f"{mp4} is not the file its sidecar {task.sidecar.name} describes (its "
                         "bytes differ from the encode's: replaced or damaged); encode the clip "
                         "again (`roienc encode --skip-existing` does)")
    pix = side["pix_fmt"]
    ff = task.ffmpeg
    check_maps_frames(task, side)
    with tempfile.TemporaryDirectory(prefix="roienc-eval-") as tmpdir:
        src_cmd = _source_cmd(ff, side, source_input(side, task.sidecar, task.cityscapes_root,
                                                     Path(tmpdir)))
        dec_cmd = _decode_cmd(ff, mp4, pix)
        row = _measure(task, side, mp4, dec_cmd, src_cmd)
    row["_commands"] = [dec_cmd, src_cmd]
    return row


PIPELINE_DEPTH = 2        # frames whose metrics may be in flight at once (scratch buffer sets)


class _Slot:
    """Scratch buffers of one frame in flight, reused frame after frame (no fresh 8 MB arrays
    to allocate and page-fault per frame)."""

    def __init__(self, shapes: list[tuple[int, int]], dtype: type) -> None:
        self.diff = [np.empty(sh, dtype) for sh in shapes]
        self.err = [np.empty(sh, np.float32) for sh in shapes]
        self.small_w = np.empty(shapes[0], np.float32)   # the smaller luma region as 0/1 weights
        self.near_w = np.empty(shapes[0], np.float32)    # near-object pixels as 0/1 weights
        self.smap = np.empty(shapes[0], np.float32)


def _psnr_sums(d: list[np.ndarray], s: list[np.ndarray], imp: np.ndarray, nm: np.ndarray,
               slot: _Slot) -> tuple:
    """Squared-error sums of one frame: luma whole and over the smaller region (dot product with
    its 0/1 weights; the other one by difference), chroma planes whole, importance-weighted,
    near-object pixels."""
    errs = []
    for p, q, diff, err in zip(d, s, slot.diff, slot.err):
        cv2.absdiff(p, q, dst=diff)
        errs.append(np.square(diff, dtype=np.float32, out=err))                  # exact
    # whole-plane sums: OpenCV accumulates float32 in float64, 4x numpy's sum(dtype=float64);
    # the squared errors are integers, so both are the exact sum
    e_all, e_u, e_v = (cv2.sumElems(e)[0] for e in errs)
    e_small = float(np.dot(errs[0].ravel(), slot.small_w.ravel()))            # = masked_sum
    w = imp if imp.dtype == np.float32 else imp.astype(np.float32)
    wsq = float(np.dot(w.ravel(), errs[0].ravel()))            # = WeightedAccumulator.frame_sums
    wsum = cv2.sumElems(w)[0]                                  # (its sum in another order)
    near_n = int(np.count_nonzero(nm))
    if near_n:
        np.copyto(slot.near_w, nm)
        near_sq = float(np.dot(errs[0].ravel(), slot.near_w.ravel()))         # = masked_sum
    else:
        near_sq = 0.0
    return e_all, e_u, e_v, e_small, wsq, wsum, near_sq, near_n


def _ssim_sums(s0: np.ndarray, d0: np.ndarray, peak: float, slot: _Slot) -> tuple[float, float]:
    """SSIM map of one frame's luma summed whole and over the smaller region."""
    smap = ssim_map(s0, d0, peak, 7, slot.smap)
    # OpenCV sums float32 in float64 too, 4x faster than numpy's pairwise sum (another order)
    return cv2.sumElems(smap)[0], float(np.dot(smap.ravel(), slot.small_w.ravel()))


class _Done:
    """A computed value with a future's ``result()`` (the sequential path)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def result(self) -> object:
        return self.value


_NO_SSIM = _Done((0.0, 0.0))


def _measure(task: EvalTask, side: dict, mp4: Path, dec_cmd: list[str], src_cmd: list[str]) -> dict:
    """Metrics of one encode. Both streams are read ahead by :class:`FrameReader` threads; with
    ``task.pipeline`` the metrics of frame n run in worker threads (squared-error sums; the SSIM
    map when asked) while the main thread takes frame n+1, a third thread reads the maps of the
    next frames, and the per-frame sums are pooled in frame order on the main thread, so the
    numbers are those of the sequential path (``pipeline=False``) bit for bit."""
    w, h, pix = int(side["width"]), int(side["height"]), side["pix_fmt"]
    peak = 255.0 if not pix.endswith(("10le", "12le")) else float((1 << int(pix[-4:-2])) - 1)
    dec = FrameReader(dec_cmd, w, h, pix)
    src = FrameReader(src_cmd, w, h, pix)
    planes = [RegionAccumulator() for _ in range(3)]
    roi, nonroi, near = RegionAccumulator(), RegionAccumulator(), RegionAccumulator()
    weighted = WeightedAccumulator()
    ssim_all = RegionAccumulator()
    rows: list[list] = []
    depth = PIPELINE_DEPTH if task.pipeline else 1
    slots = [_Slot(dec.shapes, dec.dtype) for _ in range(depth)]
    pools = ([ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"eval-{name}")
              for name in ("psnr", "ssim", "maps")] if task.pipeline else [])
    pending: deque = deque()
    n_all = h * w
    sizes_uv = [dec.shapes[1][0] * dec.shapes[1][1], dec.shapes[2][0] * dec.shapes[2][1]]
    roi_px = near_px = 0
    n = 0
    fids = side["frame_ids"]
    nan = float("nan")

    def pool_frame(i: int, fid: str, n_roi: int, small_is_roi: bool, psnr_f, ssim_f) -> None:
        nonlocal roi_px, near_px, n
        e_all, e_u, e_v, e_small, wsq, wsum, near_sq, near_n = psnr_f.result()
        s_all, s_small = ssim_f.result()
        planes[0].add_sums(e_all, n_all, 0.0, peak)
        planes[1].add_sums(e_u, sizes_uv[0], 0.0, peak)
        planes[2].add_sums(e_v, sizes_uv[1], 0.0, peak)
        weighted.add_sums(wsq, wsum)
        near.add_sums(near_sq, near_n, 0.0, peak)
        e_big, s_big = max(e_all - e_small, 0.0), s_all - s_small
        (e_roi, s_roi), (e_non, s_non) = (((e_small, s_small), (e_big, s_big)) if small_is_roi
                                          else ((e_big, s_big), (e_small, s_small)))
        _, sy = ssim_all.add_sums(e_all, n_all, s_all, peak)
        pr, sr = roi.add_sums(e_roi, n_roi, s_roi, peak)
        pn, sn = nonroi.add_sums(e_non, n_all - n_roi, s_non, peak)
        if not task.ssim:
            sy = sr = sn = nan
        roi_px += n_roi
        near_px += near_n
        n += 1
        rows.append([i, fid, planes[0].frame_psnr[-1], pr, pn, sy, sr, sn, n_roi / n_all])

    def frame_maps(fid: str) -> tuple:
        imp = load_importance(task.maps_root, side["split"], side["city"], fid)
        if imp.shape != (h, w):
            raise InputError(f"importance map of {fid} is {imp.shape[1]}x{imp.shape[0]}, "
                             f"the video {w}x{h}")
        nm = _near_mask(task.maps_root, side["split"], side["city"], fid)
        if nm is None:
            nm = imp >= 1.0
        mask = imp >= task.roi_threshold
        return imp, nm, mask, int(np.count_nonzero(mask))

    # the maps of the next frames (importance .npy and its checks, near mask: ~3 ms a frame at
    # 2048x1024) are read in a thread while this frame is taken
    maps_ahead: deque = deque()

    def read_ahead(i: int) -> None:           # frames i, i+1, ... up to depth of them
        while task.pipeline and len(maps_ahead) < depth and i + len(maps_ahead) < len(fids):
            maps_ahead.append(pools[2].submit(frame_maps, fids[i + len(maps_ahead)]))

    def next_maps(i: int) -> tuple:
        if not task.pipeline:
            return frame_maps(fids[i])
        read_ahead(i)
        return maps_ahead.popleft().result()

    try:
        read_ahead(0)                          # while FFmpeg starts
        for i, (d, s) in enumerate(zip(dec, src)):
            if i >= len(fids):
                raise ToolError(f"{mp4}: more decoded frames than the {len(fids)} encoded")
            fid = fids[i]
            imp, nm, mask, n_roi = next_maps(i)
            # luma region sums once: the whole frame, the smaller of ROI / non-ROI by a dot
            # product, the other by difference
            small_is_roi = 2 * n_roi <= n_all
            slot = slots[i % depth]               # free: frame i - depth is pooled already
            np.copyto(slot.small_w, mask if small_is_roi else ~mask)
            if task.pipeline:
                psnr_f = pools[0].submit(_psnr_sums, d, s, imp, nm, slot)
                ssim_f = (pools[1].submit(_ssim_sums, s[0], d[0], peak, slot) if task.ssim
                          else _NO_SSIM)
            else:
                psnr_f = _Done(_psnr_sums(d, s, imp, nm, slot))
                ssim_f = _Done(_ssim_sums(s[0], d[0], peak, slot)) if task.ssim else _NO_SSIM
            pending.append((i, fid, n_roi, small_is_roi, psnr_f, ssim_f))
            while len(pending) >= depth:
                pool_frame(*pending.popleft())
        while pending:
            pool_frame(*pending.popleft())
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
        for r in (dec, src):
            try:
                r.close()
            except ToolError:
                if n == len(fids):
                    raise
    if n != len(fids):
        raise ToolError(f"{mp4}: decoded {n} frames, the sidecar lists {len(fids)}")
    sizes = _packet_sizes(task.ffmpeg, mp4, n)
    kbps = bitrate_kbps(sizes, float(side["fps"]))
    py, pu, pv = (p.psnr(peak) for p in planes)
    row = {
        "clip": side["clip"], "codec": side["codec"], "mode": side["mode"],
        "rate_control": side["rate_control"], "rate_value": side["rate_value"], "frames": n,
        "width": w, "height": h, "bytes": int(sum(sizes)), "kbps": kbps,
        "bpp": 8.0 * sum(sizes) / (n * w * h),
        "psnr_y": py, "psnr_yuv": (6 * py + pu + pv) / 8.0, "psnr_roi": roi.psnr(peak),
        "psnr_nonroi": nonroi.psnr(peak), "psnr_weighted": weighted.psnr(peak),
        "ssim_y": ssim_all.ssim() if task.ssim else nan,
        "ssim_roi": roi.ssim() if task.ssim else nan,
        "ssim_nonroi": nonroi.ssim() if task.ssim else nan,
        "roi_fraction": roi_px / (n * w * h), "psnr_near_objects": near.psnr(peak),
        "encode_seconds": side.get("encode_seconds"),
        "psnr_u": pu, "psnr_v": pv, "psnr_roi_framemean": roi.frame_mean_psnr(),
        "psnr_nonroi_framemean": nonroi.frame_mean_psnr(), "near_fraction": near_px / (n * w * h),
        "rate_label": side.get("rate_label"), "sidecar": str(task.sidecar), "eval_key": eval_key(task),
        "judged_by": judged_by(side, task.maps_root),
    }
    if task.per_frame_dir is not None:
        got = side.get("frame_bytes")     # display order, recorded by encode (absent: older sidecar)
        key = row["eval_key"]             # which results row these frames belong to
        rows = [r + [got[r[0]] if isinstance(got, list) and len(got) == n else None, key]
                for r in rows]
        name = f"{side['codec']}_{side['mode']}_{side.get('rate_label', '')}_{side['clip']}.csv"
        path = Path(task.per_frame_dir) / name.replace("+", "_")
        write_csv(path, rows, header=FRAME_COLUMNS)
        row["frames_csv"] = str(path)
    return row


def per_frame_rows(path, key: str | None = None) -> pd.DataFrame | None:
    """A per-frame CSV of :func:`evaluate` (``--per-frame``), or None when it is missing,
    unreadable or (``key`` given) written for another results row than the one of ``eval_key``
    ``key``: per-frame figures are used only with the row they were measured with."""
    if not isinstance(path, str) or not path:
        return None
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    if key is not None and ("eval_key" not in df or not (df["eval_key"].astype(str) == key).all()):
        return None
    return df


def check_maps_frames(task: EvalTask, side: dict) -> None:
    """Refuse judging maps built from other frames than the encode's: for every frame both
    record, the image digest in the maps' manifest must be the encoded frame's."""
    built = dict(task.maps_images)
    encoded = side.get("source_digests") or []
    for fid, digest in zip(side["frame_ids"], encoded):
        if built.get(fid) and digest and built[fid] != digest:
            raise InputError(
                f"{task.sidecar}: the maps {task.maps_root} were built from another picture of "
                f"frame {fid} than the one encoded (another dataset, or the frame changed since): "
                "build the judging maps from the dataset the encode used, or encode again")


def maps_images(maps_root: Path) -> dict[str, str]:
    """Frame id -> sha256 of the picture the maps of that frame were built from (rows of
    ``maps_manifest.csv`` that record it)."""
    try:
        man = read_manifest(maps_root)
    except InputError:
        return {}
    if "image_digest" not in man:
        return {}
    ok = man[(man["status"] == "ok") & (man["image_digest"].astype(str) != "")]
    return dict(zip(ok["frame_id"].astype(str), ok["image_digest"].astype(str)))


def judged_by(side: dict, maps_root: Path) -> str:
    """Which maps define the regions of a row, and whether they are the ones that drove the
    encode ('self': flatters an ROI in the wrong place) or independent of it."""
    used = side.get("maps")
    if used and Path(used).resolve() == Path(maps_root).resolve():
        return f"self: the maps that drove the encoder ({maps_root})"
    return f"maps {maps_root}" + ("" if used else " (the encode used no maps)")


def eval_key(task: EvalTask) -> str:
    """What a results row is made from (:mod:`roienc.store`): the contents of the encoded file,
    its sidecar, the source frames the evaluation compares with, every judging map it reads
    (importance and near-object mask of each frame), the ROI threshold, SSIM or not, and the
    roienc version. A row whose key is unchanged can be reused."""
    def digest(p: Path) -> str | None:
        return file_digest(p) if p.is_file() else None
    side = read_json(task.sidecar)
    mp4 = encoded_file(task.sidecar, side)
    sources = source_files(side, task.cityscapes_root)
    maps = []
    for fid in side.get("frame_ids", []):
        prefix = frame_prefix(Path(task.maps_root), side.get("split", ""), side.get("city", ""), fid)
        maps.append([digest(importance_file(prefix)),
                     digest(prefix.with_name(f"{fid}_near_mask.png"))])
    return key_of("evaluation", mp4=digest(mp4), sidecar=digest(task.sidecar),
                  sources=[digest(p) for p in sources], maps=maps,
                  maps_images=dict(task.maps_images),
                  roi_threshold=float(task.roi_threshold), ssim=task.ssim)[:32]


SIDECAR_KEYS = ("clip", "split", "city", "codec", "mode", "rate_control", "rate_value", "frames",
                "frame_ids", "fps", "width", "height", "pix_fmt")
MEDIA_SUFFIXES = (".mp4", ".mkv", ".mov", ".hevc", ".log")


def _safe_eval(task: EvalTask) -> dict:
    try:
        return evaluate_clip(task)
    except RoiencError as exc:
        return {"sidecar": str(task.sidecar), "error": str(exc)}
    except (KeyError, TypeError, ValueError) as exc:     # a sidecar with malformed values
        return {"sidecar": str(task.sidecar),
                "error": f"{task.sidecar}: cannot evaluate ({type(exc).__name__}: {exc})"}


def _sidecar_problem(path: Path) -> tuple[bool, str | None]:
    """``(is_sidecar, problem)`` of a JSON file under ``--encoded``: an encode's sidecar (JSON
    beside its video or log, or with the sidecar's keys) to evaluate, and what is wrong with it."""
    beside = any(path.with_suffix(s).exists() for s in MEDIA_SUFFIXES)
    try:
        side = read_json(path)
    except InputError as exc:
        return beside, str(exc)
    if not isinstance(side, dict):
        return beside, f"{path}: not a sidecar (a JSON {type(side).__name__}, not an object)"
    if not beside and "frame_ids" not in side:
        return False, None                  # some other JSON (a report's provenance, ...)
    if side.get("status") != "ok":
        return False, None                  # a failed/skipped encode: encode reported it
    missing = [k for k in SIDECAR_KEYS if k not in side]
    if missing:
        return True, f"{path}: sidecar lacks {', '.join(missing)} (re-encode this clip)"
    if not isinstance(side["frame_ids"], list) or len(side["frame_ids"]) != side["frames"]:
        return True, f"{path}: sidecar frame_ids do not match its {side['frames']} frames"
    return True, None


def find_sidecars(encoded: str | Path, errors: list[dict] | None = None) -> list[Path]:
    """Sidecars of the successful encodes under ``encoded``; damaged sidecars (unreadable,
    missing keys) are appended to ``errors`` instead of being skipped silently."""
    root = Path(encoded)
    if not root.is_dir():
        raise InputError(f"--encoded {root}: no such directory (run `roienc encode` first)")
    out = []
    for p in sorted(root.rglob("*.json")):
        is_side, problem = _sidecar_problem(p)
        if problem is not None and is_side:
            if errors is not None:
                errors.append({"sidecar": str(p), "error": problem})
            continue
        if is_side:
            out.append(p)
    return out


def check_report_path(report: str | Path) -> Path:
    """``--report`` must name a CSV file in a writable folder; its provenance goes to
    ``<report>.json`` beside it, which must not be the report itself."""
    rp = check_output_path(report, "--report")
    if rp.is_dir():
        raise InputError(f"--report {rp} is a directory: name a CSV file, e.g. {rp / 'results.csv'}")
    if rp.suffix.lower() == ".json":
        raise InputError(f"--report {rp}: the report is a CSV and its parameters are written to "
                         "<report>.json beside it; name it e.g. results.csv")
    ensure_dir(rp.parent if str(rp.parent) else Path("."))
    return rp


def evaluate(encoded: str | Path, maps_root: str | Path, report: str | Path, *,
             cityscapes_root: str | Path | None = None, roi_threshold: float = 0.5,
             per_frame_dir: str | Path | None = None, ffmpeg: str | None = None,
             executor: ExecutorSpec | None = None, progress: bool = True,
             skip_existing: bool = False, ssim: bool = False,
             pipeline: bool = True, sidecars: list[Path] | None = None) -> pd.DataFrame:
    """Evaluate every ok encode under ``encoded``; write ``report`` (CSV) and return it.

    The report is rewritten (atomically) as evaluations finish, so an interrupted run keeps what
    it measured; with ``skip_existing`` rows of an existing report whose ``eval_key`` still
    matches (same encode, maps and threshold) are reused instead of decoding again.
    SSIM only where asked: ``ssim=True`` computes the SSIM map (the costliest metric: twice the
    CPU time of all the others together); by default the ``ssim_*`` columns are NaN and
    ``<report>.json`` says so. ``pipeline=False`` computes each frame's metrics in the calling
    thread, one frame at a time (the same numbers, slower; for checking the pipelined path).
    ``sidecars``: evaluate these encodes of ``encoded`` only (a sweep: the ones it made), not
    every sidecar under it.
    """
    if not 0.0 <= roi_threshold <= 1.0:
        raise InputError(f"--roi-threshold must be in [0, 1], got {roi_threshold}")
    check_report_path(report)
    for stale in clean_stale_temps(Path(report).parent if str(Path(report).parent) else Path(".")):
        log.info("removed %s (left by a killed run)", stale)
    errors: list[dict] = []
    found = find_sidecars(encoded, errors)
    if sidecars is not None:
        want = {Path(p).resolve() for p in sidecars}
        found = [p for p in found if p.resolve() in want]
    sidecars = found
    if not sidecars and not errors:
        raise InputError(f"no successful encodes (sidecar JSON with status ok) under {encoded}")
    ff = find_ffmpeg(ffmpeg).path
    images = maps_images(Path(maps_root))

    def built_from(p: Path) -> tuple[tuple[str, str], ...]:
        try:
            fids = read_json(p).get("frame_ids") or []
        except InputError:
            return ()
        return tuple((f, images[f]) for f in fids if f in images)
    tasks = [EvalTask(p, Path(maps_root), Path(cityscapes_root) if cityscapes_root else None,
                      roi_threshold, Path(per_frame_dir) if per_frame_dir else None, ff,
                      ssim=ssim, pipeline=pipeline, maps_images=built_from(p))
             for p in sidecars]
    rows: list[dict] = []
    if skip_existing and Path(report).is_file():
        kept = _reusable_rows(Path(report), tasks)
        rows = [kept[str(t.sidecar)] for t in tasks if str(t.sidecar) in kept]
        tasks = [t for t in tasks if str(t.sidecar) not in kept]
        if rows:
            log.info("evaluate: %d results reused from %s, %d to measure", len(rows), report, len(tasks))
    last_flush = time.monotonic()
    finished = False
    try:
        for res in run_tasks(_safe_eval, tasks, executor or ExecutorSpec("local", 1),
                             desc="evaluate", unit="clip", progress=progress):
            (errors if "error" in res else rows).append(res)
            if time.monotonic() - last_flush > REPORT_FLUSH_S:      # stream rows as they finish
                _write_report(report, rows)
                last_flush = time.monotonic()
        finished = True
    finally:
        if not finished and rows:             # interrupted: keep what was measured
            _write_report(report, rows)
    for e in errors:
        log.warning("evaluate %s: %s", e["sidecar"], e["error"].splitlines()[0])
    df = _write_report(report, rows)
    _write_provenance(report, encoded, maps_root, roi_threshold, ff, rows, errors, ssim)
    if errors and not rows:
        raise RoiencError("every evaluation failed; first error:\n" + errors[0]["error"])
    df.attrs["errors"] = errors               # the caller decides the exit status
    return df


def _write_provenance(report: str | Path, encoded, maps_root, roi_threshold: float, ff: str,
                      rows: list[dict], errors: list[dict], ssim: bool = False) -> None:
    """``<report>.json`` beside the CSV: the parameters, tool versions and, per encode, the exact
    decode commands, so every number in the report can be reproduced."""
    commands = {}
    for row in rows:
        sc = Path(str(row["sidecar"]))
        if row.get("_commands"):
            commands[str(sc)] = row["_commands"]
            continue
        try:                                   # a row reused from an earlier report
            side = read_json(sc)
            commands[str(sc)] = [_decode_cmd(ff, sc.with_suffix(".mp4"), side["pix_fmt"]),
                                 _source_cmd(ff, side)]
        except (InputError, KeyError, TypeError):
            continue
    write_json(Path(report).with_suffix(".json"), {
        "roienc_version": __version__, "argv": sys.argv, "encoded": str(encoded),
        "maps": str(maps_root), "roi_threshold": roi_threshold, "ffmpeg": ff,
        "ffmpeg_version": find_ffmpeg(ff).version, "report": str(report), "evaluated": len(rows),
        "errors": errors, "decode_commands": commands, "ssim": ssim,
        "metrics": "PSNR pooled over each region's pixels across the clip; "
                   + ("SSIM: 7x7 uniform window map (scikit-image defaults) averaged over the "
                      "region" if ssim else "SSIM not computed (evaluate without --ssim): the "
                      "ssim_y, ssim_roi and ssim_nonroi columns are NaN")
                   + "; luma regions; psnr_yuv = (6*Y + U + V)/8",
    })


def _write_report(report: str | Path, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS + EXTRA_COLUMNS)
    df = df.sort_values(["clip", "codec", "mode", "rate_control", "rate_value"]).reset_index(drop=True)
    write_csv(report, df.itertuples(index=False), header=list(df.columns))
    return df


def _reusable_rows(report: Path, tasks: list[EvalTask]) -> dict[str, dict]:
    """Rows of an earlier report, by sidecar, whose ``eval_key`` matches the encode as it is now."""
    try:
        old = pd.read_csv(report, encoding_errors="surrogateescape")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        log.warning("evaluate: cannot reuse %s (%s); measuring everything", report, exc)
        return {}
    if not {"sidecar", "eval_key"} <= set(old.columns):
        return {}
    keys = {str(t.sidecar): eval_key(t) for t in tasks}
    # a row measured with SSIM also stands for one without: reused with its SSIM left out (the
    # report stays what its JSON says) and the key of a row without SSIM
    full = {str(t.sidecar): eval_key(replace(t, ssim=True)) for t in tasks if not t.ssim}
    out = {}
    pf = {str(t.sidecar): t.per_frame_dir is not None for t in tasks}
    for row in old.to_dict("records"):
        sc = str(row.get("sidecar"))
        if sc not in keys:
            continue
        if pf[sc] and per_frame_rows(row.get("frames_csv"), keys[sc]) is None:
            continue                      # per-frame figures asked for, not on disk for this key
        if row.get("eval_key") == keys[sc]:
            out[sc] = {c: row.get(c) for c in RESULT_COLUMNS + EXTRA_COLUMNS}
        elif sc in full and row.get("eval_key") == full[sc]:
            out[sc] = {c: row.get(c) for c in RESULT_COLUMNS + EXTRA_COLUMNS}
            out[sc].update({c: float("nan") for c in SSIM_COLUMNS}, eval_key=keys[sc])
    return out
