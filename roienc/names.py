"""Names that become parts of paths (cities, splits, snippet and frame ids, file names): checked
before any work, so nothing is written outside the folder the user named and no run fails at its
end on a name the file system refuses."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import InputError

NAME_MAX = 255            # bytes of one path component (ext4, xfs, tmpfs, ...)
PATH_MAX = 4096           # bytes of a whole path (Linux)
# roienc adds at most this much to a name it writes (".<stem>.<pid>@<host>.<hex>.tmp<suffix>")
TEMP_OVERHEAD = 64
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def check_component(value: str, what: str) -> str:
    """``value`` as one path component named by the user (a city, a split): letters, digits and
    ``_.+-``, not starting with a dot, no ``/``; InputError naming the option otherwise."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be a name (a string), got {type(value).__name__} {value!r}")
    if not _SAFE.match(value) or value in (".", ".."):
        raise InputError(f"{what} {value!r} is not a plain name: use letters, digits, '_', '-', "
                         "'.' or '+' (no '/', no leading '.'), e.g. 'lindau'")
    if len(os.fsencode(value)) > NAME_MAX - TEMP_OVERHEAD:
        raise InputError(f"{what} {value[:40]!r}... is {len(value)} characters: at most "
                         f"{NAME_MAX - TEMP_OVERHEAD}")
    return value


def check_names(values, what: str) -> list[str] | None:
    """A list of names (None stays None); a single string is refused (it would be iterated
    letter by letter), so is an empty list."""
    if values is None:
        return None
    if isinstance(values, (str, bytes)):
        raise InputError(f"{what} takes a list of names, got the string {values!r}; "
                         f"pass [{values!r}]")
    out = [check_component(v, what) for v in values]
    if not out:
        raise InputError(f"{what} is empty: give at least one name, or leave it out for all")
    return out


def check_output_path(path: str | os.PathLike, what: str, folder: bool = False) -> Path:
    """A file (or ``folder``) the run will write: a file's name must leave room for roienc's
    temporary names, a folder's names fit the file system, and the whole path must leave room
    for the files written under it; InputError before any work."""
    p = Path(path)
    name = os.fsencode(p.name)
    if folder:
        long = [c for c in p.parts if len(os.fsencode(c)) > NAME_MAX]
        if long:
            raise InputError(f"{what} {str(p)[:60]}...: the name {long[0][:30]}... is "
                             f"{len(os.fsencode(long[0]))} bytes, more than the {NAME_MAX} a "
                             "file system allows: choose a shorter name")
    elif len(name) > NAME_MAX - TEMP_OVERHEAD:
        raise InputError(f"{what} {str(p)[:60]}...: its name is {len(name)} bytes; roienc writes "
                         f"it under a temporary name first, so at most {NAME_MAX - TEMP_OVERHEAD} "
                         "bytes: choose a shorter name")
    if len(os.fsencode(os.path.abspath(p))) > PATH_MAX - 512:
        raise InputError(f"{what} {str(p)[:60]}... is a path of {len(os.fsencode(os.path.abspath(p)))} "
                         f"bytes; the files roienc writes under it would pass the system's limit "
                         f"of {PATH_MAX}: choose a shorter path")
    return p
