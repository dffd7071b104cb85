"""The content-addressed bookkeeping of every stage: file digests, artifact keys, run locks.

One reuse rule for maps, judge maps, encodes, evaluations and sweeps (docs/design.md, "Reuse"):
an artifact records the *key* it was made from, the sha256 of everything it depends on (the
digests of its input files' contents, its parameters and the roienc version), and is reused
only when the key computed now is equal, as Bazel's action cache decides. File digests are
cached by ``(device, inode, size, mtime_ns, ctime_ns)`` as git's index caches them, so an
unchanged file is not read again; a file changed within :data:`RACY_S` of its digest is read
again every time (git's "racy" rule: a same-size rewrite in the same clock tick keeps mtime).

Locks: :class:`RunLock` holds ``<folder>/.roienc.lock`` (``flock``) for a whole build-maps,
encode, evaluate or sweep; a second run into the same folder is refused naming the first.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InputError
from .fileio import clean_stale_temps, temp_tag

log = logging.getLogger(__name__)

HASH = "sha256"
RACY_S = 2.0              # a file modified this close to its digest is hashed again next time
LOCK_NAME = ".roienc.lock"
_CHUNK = 1 << 20


def _cache_path() -> Path | None:
    env = os.environ.get("ROIENC_DIGEST_CACHE")
    if env is not None:
        return Path(env) if env not in ("", "off", "0") else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "roienc" / "digests.sqlite3"


class DigestCache:
    """sha256 of files, remembered by their stat in a SQLite file (``$ROIENC_DIGEST_CACHE``,
    default ``~/.cache/roienc/digests.sqlite3``; ``off``: memory only). Shared by the processes of
    one machine; where the file cannot be written the cache lives in memory only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mem: dict[tuple, str] = {}
        self._db: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.hashed_bytes = 0          # what this process read to hash (benchmarks print it)

    def _conn(self) -> sqlite3.Connection | None:
        if self.path is None:
            return None
        if self._db is not None and self._pid == os.getpid():
            return self._db
        self._pid, self._db = os.getpid(), None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS digests (path BLOB PRIMARY KEY, stat TEXT, "
                       "digest TEXT)")
            self._db = db
        except (OSError, sqlite3.Error) as exc:
            log.debug("digest cache %s unusable (%s): memory only", self.path, exc)
            self.path = None
        return self._db

    @staticmethod
    def _stat_key(st: os.stat_result) -> tuple:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def digest(self, path: str | os.PathLike) -> str:
        """The sha256 (hex) of ``path``'s bytes; InputError naming a file that cannot be read."""
        p = os.path.abspath(path)
        try:
            st = os.stat(p)
        except OSError as exc:
            raise InputError(f"cannot read {p}: {exc.strerror}") from None
        key = self._stat_key(st)
        skey = json.dumps(key)
        with self._lock:
            hit = self._mem.get((p, key))
            if hit is not None:
                return hit
            db = self._conn()
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    row = db.execute("SELECT stat, digest FROM digests WHERE path=?",
                                     (os.fsencode(p),)).fetchone()
                    if row is not None and row[0] == skey:
                        self._mem[(p, key)] = row[1]
                        return row[1]
        h = hashlib.new(HASH)
        try:
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(_CHUNK), b""):
                    h.update(block)
        except OSError as exc:
            raise InputError(f"cannot read {p}: {exc.strerror}") from None
        digest = h.hexdigest()
        self.hashed_bytes += st.st_size
        # racy: modified within RACY_S of now, a same-size rewrite could keep every stat field
        if time.time() - st.st_mtime_ns / 1e9 > RACY_S and time.time() - st.st_ctime_ns / 1e9 > RACY_S:
            with self._lock:
                self._mem[(p, key)] = digest
                db = self._conn()
                if db is not None:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?)",
                                   (os.fsencode(p), skey, digest))
        return digest


_CACHE: tuple[Path | None, DigestCache] | None = None


def cache() -> DigestCache:
    """The process's digest cache (made again when ``$ROIENC_DIGEST_CACHE`` changes)."""
    global _CACHE
    where = _cache_path()
    if _CACHE is None or _CACHE[0] != where:
        _CACHE = (where, DigestCache(where))
    return _CACHE[1]


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (through the stat-keyed cache)."""
    return cache().digest(path)


def files_digest(paths: Iterable[str | os.PathLike | None]) -> list[str | None]:
    """:func:`file_digest` of each path (None stays None: an input that does not exist)."""
    return [None if p is None else file_digest(p) for p in paths]


def _canonical(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and callable(obj.item):       # numpy scalars
        return obj.item()
    return obj


def key_of(kind: str, **parts: Any) -> str:
    """The key of an artifact of ``kind``: sha256 over its canonical JSON parts (input digests,
    parameters) and the roienc version. Equal keys: the artifact would come out the same."""
    doc = {"kind": kind, "roienc": __version__, **_canonical(parts)}
    return hashlib.new(HASH, json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


class FolderBusy(InputError):
    """Another run holds the folder's lock."""


class RunLock:
    """An exclusive ``flock`` on ``<folder>/.roienc.lock`` for the whole of a run; released when
    the process ends, however it ends (nothing to clean after ``kill -9``). A second run into the
    same folder (another process or thread) is refused (``FolderBusy``) naming the command that
    holds it, or with ``wait`` waits for it to finish (runs that add to one folder: build-maps of
    other cities, encodes of other modes). Re-entrant within a thread."""

    _held: dict[tuple[str, int], int] = {}

    def __init__(self, folder: str | os.PathLike, what: str, wait: bool = False) -> None:
        self.folder = Path(folder)
        self.what = what
        self.wait = wait
        self._fh = None

    def _key(self) -> tuple[str, int]:
        return os.path.realpath(self.folder), threading.get_ident()

    def __enter__(self) -> "RunLock":
        key = self._key()
        if RunLock._held.get(key):
            RunLock._held[key] += 1
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_NAME
        fh = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another roienc run"
            if not self.wait:
                fh.close()
                raise FolderBusy(f"{self.folder} is in use by {holder}; two runs writing one "
                                 "folder would replace each other's files. Wait for it to finish, "
                                 "or use another output folder.") from None
            log.warning("%s is in use by %s: waiting for it to finish", self.folder, holder)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX)
            except BaseException:
                fh.close()
                raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"{self.what} (pid {temp_tag()}, started {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        fh.flush()
        self._fh = fh
        RunLock._held[key] = 1
        return self

    def __exit__(self, *exc: object) -> None:
        key = self._key()
        RunLock._held[key] -= 1
        if RunLock._held[key] == 0 and self._fh is not None:
            del RunLock._held[key]
            with contextlib.suppress(OSError):
                self._fh.seek(0)
                self._fh.truncate()
                fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def clean_tree_temps(folder: str | os.PathLike, max_depth: int = 4) -> list[Path]:
    """:func:`roienc.fileio.clean_stale_temps` in ``folder`` and its sub-folders (to
    ``max_depth``): the temporaries of killed runs anywhere in an output tree."""
    removed: list[Path] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    stack = [(root, 0)]
    while stack:
        d, depth = stack.pop()
        removed += clean_stale_temps(d)
        if depth < max_depth:
            with contextlib.suppress(OSError):
                stack += [(Path(e.path), depth + 1) for e in os.scandir(d)
                          if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
    return removed


@contextlib.contextmanager
def locked_run(folder: str | os.PathLike, what: str, wait: bool = False) -> Iterator[RunLock]:
    """``with locked_run(out, "build-maps"):`` the whole run holds ``out`` (:class:`RunLock`)
    and starts by removing the temporaries killed runs left anywhere under it."""
    with RunLock(folder, what, wait) as lock:
        for stale in clean_tree_temps(folder):
            log.info("removed %s (left by a killed run)", stale)
        yield lock
