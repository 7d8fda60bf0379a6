"""Long-running `recstack` commands started as child processes (the demo's services,
the benchmarks' servers) and stopped cleanly.

Each runs in a process group of its own, so that stopping it reaches what it started
(uvicorn workers, KServe's processes); output goes to a log file, never a pipe (a pipe
nobody reads fills up and blocks the child's logging). A process that started Ray
(`recstack serve`) leaves Ray's own daemons behind when it is killed: `stop` runs
`ray stop --force` for it, which stops every Ray process on the machine.

Standard library only: the CLI, the tests and the benchmarks all use it.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


class ServiceExited(RuntimeError):
    """The process ended while it was expected to run."""


def free_port() -> int:
    """A TCP port nothing listens on now, below the kernel's ephemeral range: a port
    the kernel hands out (to Ray's workers, to every outgoing connection) can be taken
    between this call and the server's bind, a minute later for `recstack serve`."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, low) if low > 21000 else rng.randrange(1024, low)
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # everything tried was taken: any port at all
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_stop() -> None:
    """`ray stop --force`: every Ray process on the machine."""
    subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"],
                   capture_output=True, check=False)


class Service:
    """A command started now in its own process group, its output in `log`."""

    def __init__(self, name: str, command: Sequence[str], log: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 uses_ray: bool = False) -> None:
        self.name, self.log, self.uses_ray = name, log, uses_ray
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            list(command), stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})}, start_new_session=True, cwd=cwd)

    def check(self) -> None:
        """Raise ServiceExited if the process has ended."""
        code = self.process.poll()
        if code is not None:
            raise ServiceExited(f"{self.name} exited with code {code}; its log: {self.log}\n"
                                + self.log_tail())

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM to the process group, SIGKILL after `timeout` s; then, for a process
        that used Ray, `ray stop --force`. Returns the exit code (None if killed)."""
        code: int | None = None
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            code = self.process.wait(timeout=timeout)
        except ProcessLookupError:  # the group is gone already
            code = self.process.poll()
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        finally:
            self._log.close()
        if self.uses_ray:  # a stopped or killed server can leave Ray's processes behind
            ray_stop()
        return code
