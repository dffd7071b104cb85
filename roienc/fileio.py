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
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents); a clear InputError if it cannot be written."""
    p = Path(path)
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
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes(final: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
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
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return write_bytes(final, buf.getvalue())


def write_png(final: str | os.PathLike, array: np.ndarray, compress_level: int = 1) -> Path:
    """Write a uint8 (gray/RGB) or uint16 (gray) array as PNG, atomically."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=compress_level)
    return write_bytes(final, buf.getvalue())


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
