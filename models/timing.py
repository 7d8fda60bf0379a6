"""Per-request stage timings, measured where the work runs and reported where the
telemetry lives.

A stage is timed in wall-clock nanoseconds, so that the KServe front (the one
process that exports traces and metrics) can place each stage's span on the
request's trace even when the stage ran in another Ray worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

Timings = dict[str, tuple[int, int]]  # stage -> (start, end), time.time_ns()


@contextmanager
def stage(timings: Timings | None, name: str) -> Iterator[None]:
    start = time.time_ns()
    try:
        yield
    finally:
        if timings is not None:
            timings[name] = (start, time.time_ns())
