"""Consumer lag: does `recstack consume` keep up with the collector at a given rate?
(issue 5: >= 5,000 events/s accepted, "with the consumer keeping up (report its lag)").

Builds a small world (2k users, 1k items, 7 days) under OUT/lag_world with its
Feast repo applied to project `recstack_bench_lag` (Redis db 15), starts
`recstack collect` and `recstack consume --data` on it, posts the collector
load test's synthetic batches (20k users, 10k items, every event type) paced at
`--rate` events/s for `--seconds`, samples the consumer group's lag (entries not
yet delivered, XINFO GROUPS) twice a second, and after the last post times how
long the consumer takes to drain. The consumer writes the events into the
world's history (events_stream/): the world is rebuilt by each run.

Usage:
    python benchmarks/consumer_lag.py [--rate 5000] [--seconds 20] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collector_load import API_KEY, REDIS, synthetic_batches, unlink_matching
from serve_load import OUT, Server, _run

from serving.events.consumer import group_progress
from stores.redis_address import RedisAddress

PROJECT = "recstack_bench_lag"
ENV = {"RECSTACK_REDIS": REDIS, "RECSTACK_FEAST_PROJECT": PROJECT,
       "RECSTACK_ONLINE_STORE": "redis", "RECSTACK_API_KEYS": API_KEY}
POST_BATCH = 500


def lag(client: Any) -> int | None:
    """Events accepted and not yet consumed (undelivered + pending); None before the
    consumer made its group."""
    progress = group_progress(client, PROJECT)
    return None if progress is None else progress.left


def clear_project_keys(client: Any) -> None:
    """The stream, the collector's seen-marks (an hour's TTL: a rerun within the hour
    would post only duplicates), the response cache's marks, and Feast's online rows
    (keys ending in the project's name): a row left by an earlier run would be folded
    onto as if it held this world's history."""
    unlink_matching(client, [f"recstack:{PROJECT}:*", f"*{PROJECT}"])


def build_world(out: Path, client: Any) -> Path:
    """A fresh small world with its Feast repo applied (the consumer writes into it),
    the project's keys cleared first."""
    clear_project_keys(client)
    world = out / "lag_world"
    shutil.rmtree(world, ignore_errors=True)
    cli = [sys.executable, "-m", "recstack"]
    _run([*cli, "data", "generate", "--out", str(world), "--users", "2000", "--items", "1000",
          "--days", "7", "--seed", "3"], ENV)
    _run([*cli, "features", "apply", "--data", str(world)], ENV)
    return world


async def post_paced(port: int, bodies: list[bytes], rate: float, seconds: float,
                     samples: list[tuple[float, int | None]], client: Any) -> dict[str, Any]:
    """One batch every POST_BATCH / rate seconds (on schedule, not after the answer),
    lag sampled every 0.5 s meanwhile."""
    url = f"http://127.0.0.1:{port}/v1/events"
    headers = {"content-type": "application/json", "x-api-key": API_KEY}
    accepted = errors = 0
    interval = POST_BATCH / rate
    began = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession() as session:
        async def post(body: bytes) -> None:
            nonlocal accepted, errors
            async with session.post(url, data=body, headers=headers) as response:
                answer = await response.json()
            if response.status == 202:
                accepted += answer["accepted"]
            else:
                errors += 1

        async def sample() -> None:
            while True:
                samples.append((time.perf_counter() - began, lag(client)))
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        for n, body in enumerate(bodies):
            due = began + n * interval
            if due - began >= seconds:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(post(body))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        posted_for = time.perf_counter() - began
        sampler.cancel()
    return {"accepted": accepted, "errors": errors, "post_seconds": posted_for,
            "accepted_per_s": accepted / posted_for}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    client = RedisAddress.parse(REDIS).client()
    world = build_world(args.out, client)
    cli = [sys.executable, "-m", "recstack"]
    bodies = synthetic_batches(int(args.rate * args.seconds / POST_BATCH) + 1, POST_BATCH)
    collector = Server("collect", [*cli, "collect", "--port", "8097"], 8097,
                       args.out / "lag-collect.log", ENV, uses_ray=False)
    consumer = Server("consume", [*cli, "consume", "--data", str(world), "--batch",
                                  str(args.batch), "--progress-every", "5"], 0,
                      args.out / "lag-consume.log", ENV, uses_ray=False)
    samples: list[tuple[float, int | None]] = []
    try:
        await collector.ready(120, "/readyz")
        deadline = time.monotonic() + 120
        while lag(client) is None:  # the consumer has created its group
            if time.monotonic() > deadline:
                raise TimeoutError("the consumer never created its group")
            await asyncio.sleep(0.5)
        result = await post_paced(8097, bodies, args.rate, args.seconds, samples, client)
        stopped = time.perf_counter()
        while (lag(client) or 0) > 0:
            if time.perf_counter() - stopped > args.drain_timeout:
                break
            await asyncio.sleep(0.2)
        drain = time.perf_counter() - stopped
    finally:
        consumer.stop()
        collector.stop()
    lags = [v for _, v in samples if v is not None]
    result["lag_trend_per_s"] = lag_trend(samples, result["post_seconds"])
    result |= {"rate_target": args.rate, "consumer_batch": args.batch,
               "max_lag": max(lags, default=0), "lag_at_last_post": lags[-1] if lags else None,
               "drain_seconds": drain, "drained": (lag(client) or 0) == 0,
               "consumer_per_s": result["accepted"] / (result["post_seconds"] + drain)}
    (args.out / "consumer_lag.json").write_text(json.dumps(
        result | {"samples": samples}, indent=1))
    plot(samples, args.out / "consumer_lag.png", args.rate)
    return result


def lag_trend(samples: list[tuple[float, int | None]], posted_for: float) -> float | None:
    """How fast the lag grows over the second half of the posting (events/s, least
    squares): about 0 for a consumer that keeps up, however deep its batches make
    the lag; the rate it falls short by for one that does not."""
    half = [(t, v) for t, v in samples if v is not None and posted_for / 2 <= t <= posted_for]
    if len(half) < 4:
        return None
    t, v = np.array(half, dtype=float).T
    return float(np.polyfit(t, v, 1)[0])


def kept_up(result: dict[str, Any], rate: float) -> bool:
    """Kept up: the lag did not grow by more than 5% of the rate a second over the
    second half of the posting, and it drained within 5 s of the last post."""
    trend = result["lag_trend_per_s"]
    return trend is not None and trend < 0.05 * rate and result["drain_seconds"] < 5.0


def plot(samples: list[tuple[float, int | None]], path: Path, rate: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = np.array([(t, v) for t, v in samples if v is not None], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if len(points):
        ax.plot(points[:, 0], points[:, 1])
    ax.set_xlabel("seconds since the first post")
    ax.set_ylabel("events not yet consumed")
    ax.set_title(f"consumer lag while the collector takes {rate:,.0f} events/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--batch", type=int, default=1000, help="consumer batch size")
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=1))
    print(f"{'met' if result['accepted_per_s'] >= 5000 else 'NOT MET'}: >= 5,000 events/s "
          "accepted")
    trend = result["lag_trend_per_s"]
    print(f"{'met' if kept_up(result, args.rate) else 'NOT MET'}: the consumer keeps up (lag "
          f"trend over the second half {'?' if trend is None else f'{trend:+,.0f}'} events/s, "
          f"max lag {result['max_lag']:,} events = {result['max_lag'] / args.rate:.1f} s of "
          f"posts, drained in {result['drain_seconds']:.1f} s after the last post)")


if __name__ == "__main__":
    main()
