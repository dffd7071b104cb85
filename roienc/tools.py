"""External binaries (ffmpeg, ffprobe, x265): found once, called through one helper.

Discovery order for FFmpeg: an explicit path (``--ffmpeg``), ``$ROIENC_FFMPEG``, ``ffmpeg`` on
PATH if it has libx265, else the static binary bundled by the ``imageio-ffmpeg`` wheel (which
carries libx265 and libx264), so ``pip install roienc`` alone can encode. ``x265`` (the CLI, for
qpfile mode) comes from ``--x265``, ``$ROIENC_X265`` or PATH. ``ffprobe`` is optional: the
imageio-ffmpeg wheel has none, so roienc never needs it (packet sizes come from
``ffmpeg -f framecrc``).

Every call goes through :func:`run`, which raises :class:`roienc.errors.ToolError` carrying the
argv and the tail of stderr.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, ToolError, describe_oserror

STDERR_TAIL_LINES = 25


@dataclass(frozen=True)
class Tool:
    """A located executable and what it reported about itself."""

    name: str
    path: str
    version: str
    source: str  # where it was found: option, env, PATH, imageio-ffmpeg
    encoders: frozenset[str] = field(default_factory=frozenset)
    filters: frozenset[str] = field(default_factory=frozenset)

    @property
    def major(self) -> int | None:
        """Major version number (FFmpeg 5, 6, 7, ...), None when unknown (git builds)."""
        m = re.match(r"n?(\d+)\.", self.version)
        return int(m.group(1)) if m else None


def tail(text: str | bytes | None, lines: int = STDERR_TAIL_LINES) -> str:
    """Last ``lines`` lines of a process output, decoded leniently."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _launch_problem(path: str, exc: OSError) -> str:
    """Why ``path`` could not be started, in words (not found, a directory, not executable)."""
    p = Path(path)
    if isinstance(exc, FileNotFoundError):
        return f"{path} not found: {exc}"
    if p.is_dir():
        return f"{path} is a directory, not a program"
    if isinstance(exc, PermissionError):
        return f"{path} is not executable (permission denied); chmod +x it or point to another binary"
    return f"cannot start {path}: {exc.strerror or exc}"


def executable_problem(path: str) -> str | None:
    """Why ``path`` (a file path or a name on PATH) cannot be run, or None."""
    if os.sep not in path and shutil.which(path):
        return None
    p = Path(path)
    if not p.exists():
        return f"{path} does not exist"
    if p.is_dir():
        return f"{path} is a directory, not a program"
    if not os.access(p, os.X_OK):
        return f"{path} is not executable (chmod +x it or point to another binary)"
    return None


def write_log(path: str | os.PathLike, data: bytes) -> None:
    """A program's stderr into ``path``, atomically (no empty or cut log when the disk is full:
    an InputError naming the file and the cause instead)."""
    from .fileio import write_bytes
    try:
        write_bytes(path, data)
    except OSError as exc:
        raise InputError(f"cannot write the log {describe_oserror(exc, path)}") from None


def run(cmd: Sequence[str], *, input: bytes | None = None, timeout: float | None = None,
        cwd: str | os.PathLike | None = None, log_path: str | os.PathLike | None = None,
        capture_stdout: bool = True,
        on_stderr: Callable[[bytes], None] | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` (an argv list, never a shell string); raise ToolError on failure.

    stderr is always captured; when ``log_path`` is given it is also written there (whole).
    ``on_stderr`` receives stderr chunks as they arrive (e.g. FFmpeg's ``frame=`` stats, for a
    progress bar); it needs ``capture_stdout=False`` and no ``input``/``timeout``.
    """
    argv = [str(c) for c in cmd]
    if on_stderr is not None:
        if capture_stdout or input is not None or timeout is not None:
            raise ValueError("run(on_stderr=...) streams stderr only: capture_stdout=False, no input/timeout")
        return _run_streaming(argv, cwd, log_path, on_stderr)
    try:
        proc = subprocess.run(argv, input=input, timeout=timeout, cwd=cwd,
                              stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    except OSError as exc:
        raise ToolError(_launch_problem(argv[0], exc), argv) from None
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{Path(argv[0]).name} timed out after {timeout} s", argv,
                        stderr_tail=tail(exc.stderr)) from None
    if log_path is not None:
        write_log(log_path, proc.stderr or b"")
    if proc.returncode != 0:
        raise ToolError(f"{Path(argv[0]).name} failed", argv, proc.returncode, tail(proc.stderr))
    return proc


def _run_streaming(argv: list[str], cwd, log_path, on_stderr: Callable[[bytes], None]
                   ) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        raise ToolError(_launch_problem(argv[0], exc), argv) from None
    chunks = []
    try:
        while True:
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                break
            chunks.append(chunk)
            on_stderr(chunk)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stderr.close()
    rc = proc.wait()
    err = b"".join(chunks)
    if log_path is not None:
        write_log(log_path, err)
    if rc != 0:
        raise ToolError(f"{Path(argv[0]).name} failed", argv, rc, tail(err))
    return subprocess.CompletedProcess(argv, rc, None, err)


def _probe_ffmpeg(path: str, source: str) -> Tool:
    out = run([path, "-hide_banner", "-version"]).stdout.decode("utf-8", "replace")
    m = re.search(r"ffmpeg version (\S+)", out)
    version = m.group(1) if m else "unknown"
    enc = run([path, "-hide_banner", "-encoders"]).stdout.decode("utf-8", "replace")
    encoders = frozenset(re.findall(r"^\s*V\S*\s+(\S+)", enc, flags=re.M))
    flt = run([path, "-hide_banner", "-filters"]).stdout.decode("utf-8", "replace")
    filters = frozenset(re.findall(r"^\s*\S+\s+(\w+)\s+\S+->\S+", flt, flags=re.M))
    return Tool("ffmpeg", path, version, source, encoders, filters)


def _bundled_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # wheel missing or binary not present for this platform
        return None


@functools.cache
def find_ffmpeg(explicit: str | None = None) -> Tool:
    """Locate FFmpeg (see module docstring for the order). Raises ToolError if none works."""
    candidates: list[tuple[str, str]] = []
    if explicit:
        candidates.append((explicit, "--ffmpeg"))
    elif os.environ.get("ROIENC_FFMPEG"):
        candidates.append((os.environ["ROIENC_FFMPEG"], "ROIENC_FFMPEG"))
    else:
        on_path = shutil.which("ffmpeg")
        if on_path:
            candidates.append((on_path, "PATH"))
        bundled = _bundled_ffmpeg()
        if bundled:
            candidates.append((bundled, "imageio-ffmpeg"))
    problems = []
    for path, source in candidates:
        why = executable_problem(path)
        if why is not None:
            problems.append(f"{path} ({source}): {why}")
            continue
        try:
            tool = _probe_ffmpeg(path, source)
        except ToolError as exc:
            problems.append(f"{path} ({source}): {exc}")
            continue
        if source in ("--ffmpeg", "ROIENC_FFMPEG") or "libx265" in tool.encoders:
            return tool
        problems.append(f"{path} ({source}): built without libx265")
    raise ToolError(
        "no usable FFmpeg with libx265 found. Install one (Debian: apt-get install ffmpeg), "
        "or `pip install imageio-ffmpeg` for a bundled build, or point ROIENC_FFMPEG / --ffmpeg "
        "at a binary." + ("\n" + "\n".join(problems) if problems else ""))


@functools.cache
def find_ffprobe(ffmpeg_path: str | None = None) -> str | None:
    """ffprobe next to the chosen ffmpeg, else on PATH; None if absent (it is optional)."""
    if ffmpeg_path:
        sibling = Path(ffmpeg_path).with_name("ffprobe")
        if sibling.exists():
            return str(sibling)
    return shutil.which("ffprobe")


@functools.cache
def find_x265(explicit: str | None = None) -> Tool:
    """Locate the x265 CLI (needed for qpfile mode only)."""
    path = explicit or os.environ.get("ROIENC_X265") or shutil.which("x265")
    source = "--x265" if explicit else ("ROIENC_X265" if os.environ.get("ROIENC_X265") else "PATH")
    if not path:
        raise ToolError("the x265 command-line encoder is not installed; qpfile mode needs it "
                        "(FFmpeg's libx265 wrapper rejects qpfile). Install it "
                        "(Debian: apt-get install x265) or set ROIENC_X265 / --x265.")
    why = executable_problem(path)
    if why is not None:
        raise ToolError(f"x265 CLI {path} ({source}): {why}; qpfile mode needs it. Install "
                        "it (Debian: apt-get install x265) or fix ROIENC_X265 / --x265.")
    try:
        proc = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise ToolError(f"x265 CLI ({source}): {_launch_problem(path, exc)}", [path, "--version"]) from None
    text = proc.stdout.decode("utf-8", "replace")
    m = re.search(r"version (\S+)", text)
    if not m:
        raise ToolError(f"{path} does not look like x265", [path, "--version"],
                        proc.returncode, tail(text))
    return Tool("x265", path, m.group(1), source)
