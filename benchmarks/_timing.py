"""Timing helper shared by the benchmark scripts (run as ``python3 benchmarks/<script>.py``)."""
from __future__ import annotations

import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], n: int = 3) -> float:
    """Best wall time in seconds of ``n`` calls of ``fn`` (the least disturbed run)."""
    out = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t)
    return out
