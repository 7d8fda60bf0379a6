"""Peak resident memory of a process tree: the process and all its descendants (Ray's
daemons and workers included, when the process started its own Ray), sampled with
psutil in a thread.

RSS counts shared pages once per process that maps them (shared libraries, Ray's
object store in /dev/shm), so the tree's sum over-states what the tree takes from the
machine; the largest single process is kept beside it.

    with TreeSampler(process.pid) as peak:
        process.wait()
    peak.total_bytes, peak.largest()
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

import psutil

GB = 1024**3
GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


def process_name(process: psutil.Process) -> str:
    """A short, telling name: a Ray worker's title (`ray::RayTrainWorker`), else the
    executable and its first arguments."""
    try:
        command = process.cmdline()
    except GONE:
        return "?"
    if command and command[0].startswith("ray::"):
        return " ".join(command).strip()[:80]
    words = [w.rsplit("/", 1)[-1] for w in command[:4]]
    return " ".join(words)[:80] or process.name()


@dataclass
class TreePeak:
    """What the samples saw: the largest sum over the tree at one instant, the most
    processes alive at once, and each process's own peak (pid -> name, bytes)."""

    total_bytes: int = 0
    processes: int = 0
    samples: int = 0
    per_process: dict[int, tuple[str, int]] = field(default_factory=dict)

    def largest(self, n: int = 5) -> list[tuple[str, int]]:
        """The `n` processes with the highest peaks, highest first."""
        return sorted(self.per_process.values(), key=lambda row: -row[1])[:n]

    def as_json(self) -> dict[str, object]:
        largest = self.largest()
        return {"tree_peak_gb": self.total_bytes / GB,
                "largest_process_gb": largest[0][1] / GB if largest else 0.0,
                "largest_processes": [{"name": name, "peak_gb": rss / GB}
                                      for name, rss in largest],
                "processes_at_most": self.processes, "samples": self.samples}


class TreeSampler:
    """Samples `pid` and its descendants every `interval` s until the block ends."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.peak = TreePeak()
        self.seen: dict[int, psutil.Process] = {}  # every process sampled, for end_tree
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rss")

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self.peak

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def tree(self) -> list[psutil.Process]:
        """The process and its descendants now ([] once it is gone)."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except GONE:
            return []

    def sample(self) -> None:
        total, alive = 0, 0
        for process in self.tree():
            try:
                rss = process.memory_info().rss
            except GONE:
                continue
            total, alive = total + rss, alive + 1
            self.seen.setdefault(process.pid, process)
            _, best = self.peak.per_process.get(process.pid, ("", -1))
            if rss > best:  # the name too: a Ray worker's title changes as it works
                self.peak.per_process[process.pid] = (process_name(process), rss)
        peak = self.peak
        peak.total_bytes, peak.processes = max(peak.total_bytes, total), max(peak.processes,
                                                                               alive)
        peak.samples += 1


def end_tree(processes: Iterable[psutil.Process], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after `timeout` s, to those of `processes` still alive: what
    a stopped process left behind (its Ray daemons). psutil checks each one's start time
    first, so a pid the kernel has since given to another process is left alone."""
    alive = []
    for process in processes:
        with contextlib.suppress(*GONE):
            process.terminate()
            alive.append(process)
    _, left = psutil.wait_procs(alive, timeout=timeout)
    for process in left:
        with contextlib.suppress(*GONE):
            process.kill()
    if left:
        time.sleep(0.5)
