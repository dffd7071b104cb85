"""Where per-frame and per-clip tasks run: in-process, a local process pool, or Dask.

One abstraction behind build-maps, encode, evaluate and sweep. Tasks are top-level functions of
picklable arguments that read and write paths every worker sees, with atomic, idempotent outputs,
so a retried task leaves no corruption. Results are yielded as tasks finish.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from tqdm import tqdm

from .errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class ExecutorSpec:
    """How to run tasks: ``kind`` 'local' (process pool, ``workers`` processes; 1 = in-process)
    or 'dask' (a ``dask.distributed`` scheduler at ``scheduler``, or a LocalCluster if None)."""

    kind: str = "local"
    workers: int | None = None
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("local", "dask"):
            raise InputError(f"--executor must be 'local' or 'dask', got {self.kind!r}")
        if self.workers is not None and (isinstance(self.workers, bool)
                                         or not isinstance(self.workers, int) or self.workers < 1):
            raise InputError(f"workers (--workers, --jobs) must be a whole number of at least 1, "
                             f"got {self.workers!r}; leave it out for all cores")

    def resolved_workers(self) -> int:
        return max(1, self.workers or os.cpu_count() or 1)


def interactive_progress() -> bool:
    """Redrawn progress bars only when both stdout and stderr are terminals; otherwise (CI, logs,
    ``| tee``, ``| cat``) :class:`LineProgress` prints plain lines."""
    try:
        return sys.stderr.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """tqdm's ``update``/``close`` as plain lines on stderr: one at most every ``interval``
    seconds while tasks finish, and one when the last has finished (nothing is redrawn)."""

    def __init__(self, total: int, desc: str = "", unit: str = "it", disable: bool = False,
                 interval: float = 10.0, file=None) -> None:
        self.total, self.desc, self.unit, self.disable = total, desc, unit, disable
        self.interval, self.file = interval, file
        self.n = 0
        self.t0 = self.last = time.monotonic()

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        if not self.disable and (self.n >= self.total or now - self.last >= self.interval):
            self.last = now
            el = now - self.t0
            rate = f", {self.n / el:.2f} {self.unit}/s" if el > 0 else ""
            print(f"{self.desc or 'progress'}: {self.n}/{self.total} {self.unit}s "
                  f"({100 * self.n / max(self.total, 1):.0f}%) in {el:.1f} s{rate}",
                  file=self.file or sys.stderr, flush=True)

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str = "", unit: str = "it", disable: bool = False, **tqdm_kw):
    """A tqdm bar on a terminal, else a :class:`LineProgress`."""
    if interactive_progress():
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, **tqdm_kw)
    return LineProgress(total, desc, unit, disable)


def run_tasks(fn: Callable[..., T], items: Iterable[Any], spec: ExecutorSpec = ExecutorSpec(),
              desc: str = "", progress: bool = True, unit: str = "it") -> Iterator[T]:
    """Apply ``fn`` to every item, yielding results in completion order with a progress bar."""
    items = list(items)
    bar = progress_bar(len(items), desc, unit, disable=not progress or not items,
                       dynamic_ncols=True, leave=False)
    try:
        if spec.kind == "dask":
            yield from _run_dask(fn, items, spec, bar)
        elif spec.kind != "local":
            raise InputError(f"--executor must be 'local' or 'dask', got {spec.kind!r}")
        elif spec.resolved_workers() == 1 or len(items) <= 1:
            for item in items:
                res = fn(item)
                bar.update(1)
                yield res
        else:
            yield from _run_pool(fn, items, spec.resolved_workers(), bar)
    finally:
        bar.close()


# ---- pool workers: stop with the main process
# A worker runs its task in its main thread. SIGTERM/SIGINT make the task unwind (subprocess.run
# and tools.run kill their FFmpeg/x265 child, atomic_path removes its temporary file) and the
# worker exit instead of taking the next queued task; a watchdog thread sends that SIGTERM when
# the main process is gone (kill -9), so no worker outlives it.
_IN_TASK = False
_STOPPING = False
PARENT_POLL_S = 0.5


def _worker_signal(signum, frame) -> None:
    global _STOPPING
    _STOPPING = True
    if not _IN_TASK:
        os._exit(128 + signum)
    raise KeyboardInterrupt


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)                                # the task did not unwind: leave anyway
    os._exit(143)


def _worker_init(parent: int) -> None:
    signal.signal(signal.SIGTERM, _worker_signal)
    signal.signal(signal.SIGINT, _worker_signal)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="roienc-parent-watch").start()


def _worker_call(fn: Callable[..., T], item: Any) -> T:
    global _IN_TASK
    _IN_TASK = True
    try:
        return fn(item)
    finally:
        _IN_TASK = False
        if _STOPPING:
            os._exit(143)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop every worker now (they kill their encoders), drop the queued tasks."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            proc.terminate()
        except (OSError, ValueError, AttributeError):
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def _run_pool(fn: Callable[..., T], items: list, workers: int, bar: tqdm) -> Iterator[T]:
    # Bounded submission keeps memory flat for very long task lists.
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init,
                             initargs=(os.getpid(),)) as pool:
        pending: set[Future] = set()
        it = iter(items)
        try:
            for item in it:
                pending.add(pool.submit(_worker_call, fn, item))
                if len(pending) >= 4 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        bar.update(1)
                        yield f.result()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    bar.update(1)
                    yield f.result()
        except BaseException:
            for f in pending:
                f.cancel()
            _stop_pool(pool)                  # interrupted: no queued task starts any more
            raise


def _run_dask(fn: Callable[..., T], items: list, spec: ExecutorSpec, bar: tqdm) -> Iterator[T]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InputError("--executor dask needs dask.distributed: pip install 'roienc[dask]'") from None
    cluster = None
    if spec.scheduler:
        client = Client(spec.scheduler)
    else:
        cluster = LocalCluster(n_workers=spec.resolved_workers(), threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = client.map(fn, items, pure=False, retries=2)
        for fut in as_completed(futures):
            bar.update(1)
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
