"""Where the load test's CPU goes: CPU milliseconds per request in every process on
the machine (the KServe fronts, each Ray Serve replica, Ray's own daemons, Redis),
for noop-graph and recstack running side by side as in benchmarks/serve_load.py.

Each server in turn gets `--requests` requests at concurrency 1 while the other
idles; a process's CPU time (/proc/PID/stat, user + system) over the phase, divided
by the requests, is its cost per request. On a 2-core machine the sum exceeds the
latency: the cores are busy, so every process's CPU is on the request's path.
Linux only. Run benchmarks/serve_load.py once first (it builds the world).

Usage:
    python benchmarks/serve_cpu.py [--requests 500] [--repeats 2]
        [--users 20000] [--items 10000] [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from serve_load import OUT, drive, request_bodies, side_by_side, specs, world_paths

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """Every process's command line (shortened) and CPU seconds so far."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "(comm)", which may hold spaces
        found[int(pid)] = (command[:80] or stat[:stat.index(")") + 1],
                           (int(fields[11]) + int(fields[12])) / TICK)
    return found


async def main_async(args: argparse.Namespace) -> None:
    data, registry = world_paths(args.out, args.users, args.items)
    if not registry.exists():
        raise SystemExit(f"{registry}: no benchmark version; run benchmarks/serve_load.py")
    args.cached = args.fused = False
    pair = specs(args, data, registry)[1:3]
    async with side_by_side(pair, data, args.out, 0) as servers:
        for repeat in range(args.repeats):
            for server in servers:
                bodies = request_bodies(data, args.requests, repeat)
                before, began = cpu_seconds(), time.perf_counter()
                figures = await drive(server.port, bodies, 1)
                wall, after = time.perf_counter() - began, cpu_seconds()
                rows = sorted(((cpu - before[pid][1]) / args.requests * 1000, command)
                              for pid, (command, cpu) in after.items() if pid in before)
                total = sum(ms for ms, _ in rows)
                print(f"== {server.name} (repeat {repeat + 1}): p50 "
                      f"{figures['p50_ms']:.1f} ms, {wall / args.requests * 1000:.1f} ms "
                      f"wall and {total:.1f} ms CPU per request")
                for ms, command in reversed(rows[-12:]):
                    print(f"  {ms:6.2f} ms  {command}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--out", type=Path, default=OUT)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
