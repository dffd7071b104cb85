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
