"""The project's error types: one base class, caught once by the CLI.

The library never calls ``sys.exit``; it raises these and ``roienc.cli`` turns them into
one-line messages and exit status 2.
"""
from __future__ import annotations

from collections.abc import Sequence


class RoiencError(Exception):
    """Base class of every error roienc raises on purpose."""


class InputError(RoiencError):
    """Bad input: a missing or malformed file, an impossible parameter. The message names
    the file (or option) and says how to fix it."""


class MissingInput(InputError):
    """An input the dataset does not have (no vehicle JSON, no camera JSON, no labels), with an
    option or file that supplies it named in the message: build-maps skips the frame and may exit
    0. Anything else wrong with an input (corrupt, malformed, of another size) is a failure."""


def describe_oserror(exc: OSError, path: object = None) -> str:
    """One line for a file-system error: the path, the cause in plain words and what to do (no
    space left, permission, read-only, name too long), with the free space where it matters."""
    import errno
    import os
    import shutil

    where = path if path is not None else (exc.filename or "")
    cause = exc.strerror or str(exc)
    hint = ""
    partial = "requested and" in str(exc) and "written" in str(exc)     # numpy's short write
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or partial:
        cause = "no space left on the device" + (" (a write was cut short)" if partial else "")
        try:
            probe = str(where) or "."
            while probe and not os.path.exists(probe):
                probe = os.path.dirname(probe)
            free = shutil.disk_usage(probe or ".").free
            hint = f" ({free / 1e6:.1f} MB free there): free some space, then rerun the same command"
        except OSError:
            hint = ": free some space, then rerun the same command"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = ": check the permissions, or choose another output folder"
    elif exc.errno == errno.EROFS:
        hint = ": the file system is read-only; choose another output folder"
    elif exc.errno == errno.ENAMETOOLONG:
        hint = ": choose a shorter name or folder"
    return f"{where}: {cause}{hint}" if where else f"{cause}{hint}"


class ToolError(RoiencError):
    """An external program (ffmpeg, ffprobe, x265) failed or is missing.

    Carries the exact argv and the tail of its stderr so the failure can be reproduced.
    """

    def __init__(self, message: str, cmd: Sequence[str] | None = None,
                 returncode: int | None = None, stderr_tail: str = "") -> None:
        self.cmd = list(cmd) if cmd is not None else None
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        parts = [message]
        if self.cmd is not None:
            from shlex import join
            parts.append(f"command: {join(self.cmd)}")
        if returncode is not None:
            parts.append(f"exit status: {returncode}")
        if stderr_tail:
            parts.append("stderr (tail):\n" + stderr_tail)
        super().__init__("\n".join(parts))
