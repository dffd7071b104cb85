"""Atomic file output: write to a temporary name in the target folder, then rename.

An interrupted run never leaves a half-written file under a final name, so ``--skip-existing``
can trust whatever exists.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import secrets
import shutil
import socket
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents); a clear InputError if it cannot be written (or is too long
    a path for the files roienc writes under it)."""
    from .names import check_output_path
    p = check_output_path(path, "output folder", folder=True)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {p}: {exc.strerror}. "
                         "Choose a writable --out.") from None
    if not os.access(p, os.W_OK):
        raise InputError(f"output folder {p} is not writable. Choose a writable --out.")
    return p


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"
_TAG_RE = re.compile(r"\.(\d+)@([A-Za-z0-9-]+)\.")
_LEGACY_TMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]*)?$")
LEGACY_TMP_AGE_S = 3600.0


def temp_tag() -> str:
    """``<pid>@<host>``: in every temporary name, so a later run can tell a leftover of a dead
    process (removed by :func:`clean_stale_temps`) from the work of a live one."""
    return f"{os.getpid()}@{_HOST}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                       # alive, another user's
    except (OverflowError, ValueError):
        return False                      # not a possible pid
    return True


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove temporary files and folders in ``folder`` left by a process that was killed hard
    (``kill -9``, power loss): those tagged with a pid of this host that no longer runs, and
    untagged ones of older versions not touched for an hour. Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        if not e.name.startswith(".") or not (".tmp" in e.name or ".2pass." in e.name):
            continue
        m = _TAG_RE.search(e.name)
        try:
            if m:
                stale = m.group(2) == _HOST and not _pid_alive(int(m.group(1)))
            else:
                stale = (_LEGACY_TMP_RE.match(e.name) is not None
                         and now - e.stat(follow_symlinks=False).st_mtime > LEGACY_TMP_AGE_S)
            if not stale:
                continue
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            continue
    return removed


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` if the block succeeds.

    The temporary name keeps the final suffix (tools like FFmpeg pick formats by extension).
    """
    final = Path(final)
    ensure_dir(final.parent)
    sfx = suffix if suffix is not None else final.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.{temp_tag()}.", suffix=f".tmp{sfx}",
                               dir=final.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())   # mkstemp makes 0600: give what open() would
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    with _replace_or_remove(tmp_path, final):
        yield tmp_path


@contextlib.contextmanager
def _replace_or_remove(tmp: Path, final: Path) -> Iterator[None]:
    """The body writes ``tmp``; then ``tmp`` replaces ``final``, or is removed if anything fails."""
    try:
        yield
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def _atomic_file(final: str | os.PathLike) -> Iterator[io.BufferedWriter]:
    """:func:`atomic_path` as an open binary file: the temporary (same name pattern) is created
    with ``O_EXCL`` and mode 0o666 less the umask, as ``open()`` makes files, and written through
    the one descriptor (no mkstemp, chmod, reopen or umask lookup: 0.2 instead of 0.4 ms a file,
    and build-maps writes ten a frame)."""
    final = Path(final)
    folder, tag = final.parent, temp_tag()
    while True:
        tmp = folder / f".{final.stem}.{tag}.{secrets.token_hex(4)}.tmp{final.suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            break
        except FileExistsError:
            continue
        except OSError:
            ensure_dir(folder)     # a clear InputError for a folder that cannot be written
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            break
    with _replace_or_remove(tmp, final), open(fd, "wb") as f:
        yield f


def write_bytes(final: str | os.PathLike, data: bytes) -> Path:
    with _atomic_file(final) as f:
        f.write(data)
    return Path(final)


def write_text(final: str | os.PathLike, text: str) -> Path:
    """UTF-8; file names that are not UTF-8 (undecodable bytes, as Python's surrogate escapes)
    are written back as their original bytes rather than failing after the work is done."""
    return write_bytes(final, text.encode("utf-8", "surrogateescape"))


def write_json(final: str | os.PathLike, obj: Any) -> Path:
    return write_text(final, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_npy(final: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` format, atomically; the array goes from its own memory to the file (no
    in-memory copy of an 8 MB importance map on the way)."""
    with _atomic_file(final) as f:
        np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
    return Path(final)


def write_npz(final: str | os.PathLike, array: np.ndarray, name: str, level: int = 1) -> Path:
    """One array as ``<name>.npy`` in a deflated ``.npz`` (``np.load(final)[name]`` reads it),
    atomically. Lossless: a 2048x1024 float32 importance map (a few dozen distinct values) takes
    20-60 KB at level 1 instead of 8.4 MB, in 20-45 ms."""
    with _atomic_file(final) as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
            a = np.ascontiguousarray(array)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))  # same bytes
            info.compress_type = zipfile.ZIP_DEFLATED                               # every run
            for attr in ("compress_level", "_compresslevel"):      # its name by Python version
                if attr in zipfile.ZipInfo.__slots__:
                    setattr(info, attr, level)
            with zf.open(info, "w", force_zip64=a.nbytes > (1 << 31) - 1024) as m:
                np.lib.format.write_array(m, a, allow_pickle=False)
    return Path(final)


def read_npz_member(path: str | os.PathLike, name: str, header_only: bool = False):
    """The array ``name`` of an ``.npz`` (or with ``header_only`` its ``(shape, dtype)``,
    without inflating the data). Raises OSError/ValueError/KeyError/zipfile.BadZipFile for a
    damaged or foreign file (the caller names it)."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as m:
        version = np.lib.format.read_magic(m)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(m)
        if header_only:
            return shape, dtype
        if dtype.hasobject:
            raise ValueError("object arrays are not read")
        count = int(np.prod(shape)) if shape else 1
        data = m.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise ValueError(f"{name}.npy holds {len(data)} of {count * dtype.itemsize} bytes")
        arr = np.frombuffer(data, dtype).copy()
        return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


# PNG: rows filtered with 'Up' (numpy), deflated by zlib at level 1 with the Z_RLE strategy.
# Measured on 2048x1024 frames (CPU ms, size): camera picture 46 ms / 2.0 MB against 115 ms /
# 1.9 MB for Pillow level 1 (its per-row filter choice) and 89 ms for cv2.imencode (level 1,
# PNG_STRATEGY_RLE); importance map 8 ms / 11 KB against 9 ms / 22 KB. Level 0 (stored) takes
# 7 ms but 6.5 MB for a picture.
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}          # channels -> PNG colour type (gray, RGB, RGBA)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF))


def png_idat(array: np.ndarray, compress_level: int = 1) -> bytes:
    """The compressed image data (IDAT payload) of a uint8 HxW or HxWxC array: every row filtered
    with PNG filter 2 ('Up'), deflated with Z_RLE (runs of equal bytes are what filtered maps and
    pictures are made of). Shared by images of the same bytes in other colour types (a gray map
    and its paletted colour rendering)."""
    a = np.ascontiguousarray(array)
    h = a.shape[0]
    rows = a.reshape(h, -1)
    filtered = np.empty((h, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    c = zlib.compressobj(compress_level, zlib.DEFLATED, 15, 9,
                         zlib.Z_RLE if compress_level > 0 else zlib.Z_DEFAULT_STRATEGY)
    return c.compress(filtered) + c.flush()


def png_from_idat(width: int, height: int, idat: bytes, channels: int = 1,
                  palette: np.ndarray | None = None, bits: int = 8) -> bytes:
    """A complete PNG around ``idat`` (from :func:`png_idat`): 8-bit gray/RGB/RGBA by
    ``channels``, or with ``palette`` ((n<=256, 3) uint8 RGB) an indexed-colour ('P') image whose
    bytes are palette indices; ``bits=1``: 1-bit gray (rows of ``np.packbits``)."""
    if bits not in (1, 8) or (bits == 1 and (channels != 1 or palette is not None)):
        raise ValueError(f"bits={bits}: 8, or 1 for a gray image without palette")
    if palette is not None:
        pal = np.ascontiguousarray(palette, dtype=np.uint8)
        if channels != 1 or pal.ndim != 2 or pal.shape[1] != 3 or not 1 <= len(pal) <= 256:
            raise ValueError(f"a palette is (1..256, 3) uint8 for 1-channel indices, got {pal.shape}")
        colour, extra = 3, [_png_chunk(b"PLTE", pal.tobytes())]
    else:
        colour, extra = _COLOUR_TYPE[channels], []
    ihdr = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0)
    return b"".join([_PNG_SIG, _png_chunk(b"IHDR", ihdr), *extra, _png_chunk(b"IDAT", idat),
                     _png_chunk(b"IEND", b"")])


def encode_png(array: np.ndarray, compress_level: int = 1,
               palette: np.ndarray | None = None) -> bytes:
    """PNG bytes of a uint8 gray (HxW), RGB or RGBA (HxWx3/4) array, or with ``palette`` of a
    uint8 index array (decodes to ``palette[array]``); a bool HxW array as a 1-bit gray PNG
    (Pillow reads it as mode '1', ``convert('L')`` and cv2 as 0/255; 8x fewer bytes to deflate).
    Other arrays (uint16 gray, ...) through Pillow."""
    a = np.asarray(array)
    if a.dtype == bool and a.ndim == 2 and a.size and palette is None:
        return png_from_idat(a.shape[1], a.shape[0], png_idat(np.packbits(a, axis=1), compress_level),
                             bits=1)
    if a.dtype == np.uint8 and a.size and (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))):
        ch = 1 if a.ndim == 2 else a.shape[2]
        if palette is not None and int(a.max()) >= len(palette):
            raise ValueError(f"index {int(a.max())} outside a palette of {len(palette)} colours")
        return png_from_idat(a.shape[1], a.shape[0], png_idat(a, compress_level), ch, palette)
    if palette is not None:
        raise ValueError(f"paletted PNG needs uint8 indices, got {a.dtype} {a.shape}")
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def write_png(final: str | os.PathLike, array: np.ndarray, compress_level: int = 1,
              palette: np.ndarray | None = None) -> Path:
    """Write a uint8 (gray/RGB/RGBA, or palette indices with ``palette``), bool (1-bit) or
    uint16 (gray) array as PNG, atomically (see :func:`encode_png`)."""
    return write_bytes(final, encode_png(array, compress_level, palette))


# JPEG for the camera-picture annotation: libjpeg-turbo through cv2 at quality 90 with full-
# resolution chroma (4:4:4, so 2-px coloured outlines stay crisp). Measured on a real 2048x1050
# annotation: 8 ms / 0.44 MB, 43 dB PSNR against the lossless picture, where the PNG writer
# above takes 46 ms / 2.0 MB and cv2's PNG 85-95 ms; 4:2:0 takes 5 ms but washes the outlines
# out (35 dB).
JPEG_QUALITY = 90


def encode_jpeg(array: np.ndarray, quality: int = JPEG_QUALITY, bgr: bool = False) -> bytes:
    """JPEG bytes of a uint8 gray (HxW) or colour (HxWx3, RGB; ``bgr``: BGR as cv2 holds it)
    array, 4:4:4 chroma."""
    import cv2

    a = np.asarray(array)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or not a.size:
        raise ValueError(f"JPEG needs a non-empty uint8 HxW or HxWx3 array, got {a.dtype} {a.shape}")
    if a.ndim == 3 and not bgr:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, buf = cv2.imencode(".jpg", a, params)
    if not ok:
        raise ValueError(f"cv2 could not encode a {a.shape} array as JPEG")
    return buf.tobytes()


def write_jpeg(final: str | os.PathLike, array: np.ndarray, quality: int = JPEG_QUALITY,
               bgr: bool = False) -> Path:
    """Write :func:`encode_jpeg`'s bytes atomically."""
    return write_bytes(final, encode_jpeg(array, quality, bgr))


def write_csv(final: str | os.PathLike, rows: Iterable[Sequence[Any]],
              header: Sequence[str] | None = None) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header is not None:
        w.writerow(header)
    w.writerows(rows)
    return write_text(final, buf.getvalue())


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON; InputError naming the file on absence or malformed content."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8", errors="surrogateescape"))
    except FileNotFoundError:
        raise InputError(f"{p}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: malformed JSON ({exc})") from None


try:                                   # libspng: 1.2-1.8x libpng (cv2, Pillow) on Cityscapes PNGs
    import pyspng as _spng
except ImportError:                    # pragma: no cover - a dependency; Pillow reads everything
    _spng = None


def _spng_decode(data: bytes, rgb: bool) -> np.ndarray | None:
    """``data`` decoded by libspng when it is a plain (non-interlaced) 8/16-bit grey or 8-bit RGB
    PNG, as stored: HxW grey, HxWx3 RGB; None for any other PNG or a decoding error (the caller
    falls back to Pillow, which also words the errors)."""
    if _spng is None or len(data) < 33 or data[:8] != _PNG_SIG or data[12:16] != b"IHDR":
        return None
    depth, ctype, interlace = data[24], data[25], data[28]
    if interlace or not ((ctype == 0 and depth in (8, 16) and not rgb)
                         or (ctype == 2 and depth == 8)):
        return None
    try:
        a = _spng.load(data)
    except Exception:
        return None
    if ctype == 0 and a.ndim == 3:      # 16-bit grey comes back as grey + alpha
        a = np.ascontiguousarray(a[..., 0])
    elif ctype == 2 and a.shape[2] == 4:  # RGB with a tRNS colour
        a = np.ascontiguousarray(a[..., :3])
    return a


def read_png(path: str | os.PathLike, what: str, rgb: bool = False) -> np.ndarray:
    """The samples of an image file, ``rgb``: as HxWx3 uint8 RGB, else as stored (HxW for grey,
    palette indices for a paletted file). Plain grey and RGB PNGs (every Cityscapes file) are
    decoded by libspng, the rest by Pillow. An InputError naming the file and ``what`` it should
    hold when it is absent or unreadable."""
    from PIL import Image

    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{p}: {what} file not found") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read {what} file ({exc.strerror})") from None
    a = _spng_decode(data, rgb)
    if a is not None:
        return a
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB") if rgb else im)
    except Exception as exc:  # PIL raises many types for corrupt files
        raise InputError(f"{p}: unreadable {what} image ({exc})") from None
