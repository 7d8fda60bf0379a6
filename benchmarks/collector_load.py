"""Collector load test: events/s accepted by one `recstack collect` process (issue 5's
target: >= 5,000/s with batched posts), beside floors measured in the same run.

- `collector`: `recstack collect` (one uvicorn process, API key on) driven over HTTP by
  several concurrent aiohttp clients in this process, each posting batches of synthetic
  events (no `event_id`: the collector derives it, the costlier path) for `--seconds`.
  Latency is per batch: request sent to 202 received.
- `lua script`: the collector's own Redis step (one Lua script per batch: `SET NX EX`
  per event, `XADD` for the new ones) from one plain redis-py client, no HTTP.
- `XADD floor`: pipelined `XADD` of the same payloads, one pipeline per batch, from
  one plain redis-py client: no dedupe, no HTTP, no validation.

The floors replay exactly the JSON the collector wrote (read back from its stream).
Redis: RECSTACK_BENCH_REDIS (default db 15 of localhost); only this benchmark's keys
(project `recstack_bench_collector`) are touched, and deleted at the end.

Usage:
    python benchmarks/collector_load.py [--seconds 10] [--clients 4] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import Server

from recstack.processes import free_port
from serving.events.stream import APPEND_UNSEEN, seen_key, stream_key
from stores.redis_address import RedisAddress

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
REDIS = os.environ.get("RECSTACK_BENCH_REDIS", "localhost:6379,db=15")
PROJECT = "recstack_bench_collector"
LUA_PROJECT = f"{PROJECT}_lua"  # the Lua replay's own seen-keys: nothing is a duplicate
FLOOR_STREAM = f"recstack:{PROJECT}:floor"
API_KEY = "bench-key"
TARGET = 5000.0
TYPES = ["impression"] * 30 + ["view"] * 35 + ["click"] * 15 + ["add_to_cart"] * 6 + \
    ["purchase"] * 3 + ["rating"] * 4 + ["search"] * 7


def synthetic_batches(count: int, size: int, seed: int = 0) -> list[bytes]:
    """`count` request bodies `{"events": [...]}`, every event distinct (its own instant)."""
    rng = random.Random(seed)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    bodies, n = [], 0
    for _ in range(count):
        events = []
        for _ in range(size):
            kind = rng.choice(TYPES)
            event: dict[str, Any] = {
                "user_id": f"u{rng.randrange(20000)}", "event_type": kind,
                "timestamp": (start + timedelta(microseconds=n)).isoformat(),
                "session_id": f"s{rng.randrange(100000)}",
                "context": {"device": rng.choice(["ios", "android", "web"]),
                            "page": rng.choice(["home", "search", "item", "cart"])}}
            if kind == "search":
                event["query"] = rng.choice(["red shoes", "laptop", "coffee", "lamp"])
            else:
                event["item_id"] = f"i{rng.randrange(10000)}"
            if kind in ("view", "rating", "purchase"):
                event["value"] = round(rng.uniform(0, 5 if kind == "rating" else 120), 1)
            if kind in ("impression", "click"):
                event["request_id"] = f"r{rng.randrange(10**9)}"
            events.append(event)
            n += 1
        bodies.append(json.dumps({"events": events}).encode())
    return bodies


def unlink_matching(client: redis.Redis, patterns: list[str]) -> None:
    """UNLINK every key matching any of the patterns, 10,000 at a time."""
    for pattern in patterns:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=10000):
            batch.append(key)
            if len(batch) >= 10000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)


def delete_bench_keys(client: redis.Redis) -> None:
    unlink_matching(client, [f"recstack:{PROJECT}:*", f"recstack:{LUA_PROJECT}:*"])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux), to see what one request costs."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(port: int, bodies: list[bytes], clients: int, seconds: float
                ) -> dict[str, Any]:
    """Post bodies from `clients` concurrent clients until `seconds` pass (or bodies run
    out); per-batch latency and the accepted count from each 202."""
    url = f"http://127.0.0.1:{port}/v1/events"
    headers = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}
    queue = list(reversed(bodies))
    latencies: list[float] = []
    accepted = errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal accepted, errors
            while queue and time.perf_counter() < deadline:
                body = queue.pop()
                began = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    answer = await response.json()
                latencies.append(time.perf_counter() - began)
                if response.status == 202 and not answer["rejected"]:
                    accepted += answer["accepted"]
                else:
                    errors += 1
        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {"events": accepted, "batches": len(latencies), "errors": errors,
            "seconds": elapsed, "events_per_s": accepted / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "ran_out_of_bodies": not queue}


def replay(client: redis.Redis, payloads: list[bytes], size: int, lua: bool
           ) -> dict[str, Any]:
    """The same payloads, batch by batch, from one plain client: the Lua script or a
    pipelined XADD."""
    script = client.register_script(APPEND_UNSEEN)
    batches = [payloads[i:i + size] for i in range(0, len(payloads), size)]
    keys = [[seen_key(LUA_PROJECT, json.loads(p)["event_id"]) for p in batch]
            for batch in batches] if lua else []
    latencies = []
    began = time.perf_counter()
    for i, batch in enumerate(batches):
        t = time.perf_counter()
        if lua:
            script(keys=[stream_key(LUA_PROJECT), *keys[i]], args=[3600, *batch])
        else:
            pipe = client.pipeline(transaction=False)
            for payload in batch:
                pipe.xadd(FLOOR_STREAM, {"event": payload})
            pipe.execute()
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {"events": len(payloads), "batches": len(batches), "errors": 0,
            "seconds": elapsed, "events_per_s": len(payloads) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def stream_payloads(client: redis.Redis, key: str) -> list[bytes]:
    out: list[bytes] = []
    start = "-"
    while True:
        entries = client.xrange(key, min=start, count=10000)
        out += [fields[b"event"] for _, fields in entries]
        if len(entries) < 10000:
            return out
        start = "(" + entries[-1][0].decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--pool", type=int, default=800,
                        help="Distinct batches generated up front (the run stops early "
                        "if it sends them all).")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    address = RedisAddress.parse(REDIS)
    client = address.client(timeout=30)
    delete_bench_keys(client)
    print(f"generating {args.pool} batches of {args.batch} events", flush=True)
    bodies = synthetic_batches(args.pool, args.batch)
    warmup, bodies = bodies[:args.clients * 2], bodies[args.clients * 2:]

    port, log = free_port(), args.out / "collector_load.log"
    os.environ.pop("RECSTACK_API_KEYS_FILE", None)  # the key below is the only one
    command = [sys.executable, "-m", "recstack", "collect", "--port", str(port)]
    print("$", " ".join(command[1:]), flush=True)
    server = Server("recstack collect", command, port, log, {
        "RECSTACK_REDIS": REDIS, "RECSTACK_FEAST_PROJECT": PROJECT,
        "RECSTACK_API_KEYS": API_KEY}, uses_ray=False)
    try:
        asyncio.run(server.ready(120, "/readyz"))
        asyncio.run(drive(port, warmup, args.clients, 60))
        measured_from = client.xlen(stream_key(PROJECT))
        cpu_before = cpu_seconds(server.process.pid)
        collector = asyncio.run(drive(port, bodies, args.clients, args.seconds))
        cpu_after = cpu_seconds(server.process.pid)
    finally:
        server.stop(30)
    if cpu_before is not None and cpu_after is not None:
        collector["collector_cpu_share"] = (cpu_after - cpu_before) / collector["seconds"]

    payloads = stream_payloads(client, stream_key(PROJECT))
    exactly_once = len(payloads) - measured_from == collector["events"]
    measured = payloads[measured_from:]
    lua = replay(client, measured, args.batch, lua=True)
    floor = replay(client, measured, args.batch, lua=False)
    delete_bench_keys(client)

    rows = [(f"collector over HTTP ({args.clients} clients)", collector),
            ("Lua dedupe script, one client", lua),
            ("pipelined XADD floor, one client", floor)]
    print(f"\nbatches of {args.batch} events; collector run {collector['seconds']:.1f} s\n")
    print("| path | events | events/s | batch p50 ms | batch p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['events']:,} | {r['events_per_s']:,.0f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} |")
    print(f"\ncollector / floor: {collector['events_per_s'] / floor['events_per_s']:.2f}; "
          f"collector CPU: {collector.get('collector_cpu_share', float('nan')):.0%} of one "
          f"core; failed batches: {collector['errors']}; stream entries = accepted: "
          f"{exactly_once}")
    if collector["ran_out_of_bodies"]:
        print(f"note: all {len(bodies)} batches were sent before {args.seconds} s; "
              "raise --pool")
    met = collector["events_per_s"] >= TARGET and exactly_once and not collector["errors"]
    print(f"target >= {TARGET:,.0f} events/s accepted by one collector process: "
          f"{'met' if met else 'NOT met'}")
    result = {"batch": args.batch, "clients": args.clients, "collector": collector,
              "lua_script": lua, "xadd_floor": floor, "exactly_once": exactly_once}
    (args.out / "collector_load.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
