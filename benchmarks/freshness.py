"""Freshness: an accepted event -> the user's next recommendation reflects it
(issue 5's target: p99 <= 1 s).

Starts `recstack serve` (response cache on), `recstack collect` and
`recstack consume` on the load test's world (benchmarks/serve_load.py builds
it), then, for each trial: asks a known user's recommendations, posts a click on
their top item to the collector, and from the 202 on polls the recommender
every 10 ms until that item is gone (it is now seen: excluded, the cache
invalidated). The time from the 202 to the first answer without the item is the
freshness of that event.

The consumer appends the clicks to the world's offline history
(events_stream/); delete that directory to undo them.

Usage:
    python benchmarks/freshness.py [--trials 100] [--users 20000] [--items 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import ENV, OUT, Server, build_world

KEY = "freshness-bench-key"
POLL_S = 0.01
GIVE_UP_S = 10.0


async def _recommend(session: aiohttp.ClientSession, port: int, user: str) -> list[str]:
    body = {"instances": [{"user_id": user, "k": 10}]}
    async with session.post(f"http://127.0.0.1:{port}/v1/models/recommender:predict",
                            json=body) as response:
        answer = (await response.json())["predictions"][0]
    return [i["item_id"] for i in answer["items"]]


async def _click(session: aiohttp.ClientSession, port: int, user: str, item: str) -> None:
    event = {"event_id": f"fresh-{uuid.uuid4().hex}", "user_id": user, "item_id": item,
             "event_type": "click", "timestamp": datetime.now(UTC).isoformat()}
    async with session.post(f"http://127.0.0.1:{port}/v1/events", json=event,
                            headers={"X-API-Key": KEY}) as response:
        assert response.status == 202, (response.status, await response.text())


async def trials(serve_port: int, collect_port: int, users: list[str], n: int
                 ) -> list[float]:
    seconds: list[float] = []
    async with aiohttp.ClientSession() as session:
        for trial in range(n):
            user = users[trial % len(users)]
            before = await _recommend(session, serve_port, user)
            if not before:
                continue
            item = before[0]
            await _click(session, collect_port, user, item)
            accepted = time.perf_counter()
            while item in await _recommend(session, serve_port, user):
                if time.perf_counter() - accepted > GIVE_UP_S:
                    raise RuntimeError(f"user {user}: {item} still recommended after "
                                       f"{GIVE_UP_S:.0f} s")
                await asyncio.sleep(POLL_S)
            seconds.append(time.perf_counter() - accepted)
            if (trial + 1) % 20 == 0:
                print(f"  {trial + 1}/{n} trials, p50 so far "
                      f"{1000 * np.median(seconds):.0f} ms", flush=True)
    return seconds


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    data, registry = build_world(args.out, args.users, args.items)
    python = sys.executable
    env = {**ENV, "RECSTACK_API_KEYS": KEY}
    config = args.out / "serve-fresh.yaml"
    config.write_text("cache: {enabled: true}\nwatch_interval_s: 0\n")
    servers = [
        Server("serve", [python, "-m", "recstack", "serve", "--registry", str(registry),
                         "--stage", "dev", "--data", str(data), "--port", "8095",
                         "--config", str(config)], 8095, args.out / "fresh-serve.log", env),
        Server("collect", [python, "-m", "recstack", "collect", "--port", "8096"], 8096,
               args.out / "fresh-collect.log", env, uses_ray=False),
        Server("consume", [python, "-m", "recstack", "consume", "--data", str(data),
                           "--progress-every", "30"], 0, args.out / "fresh-consume.log", env,
               uses_ray=False),
    ]
    try:
        await servers[0].ready()
        await servers[1].ready(120, "/readyz")
        users = sorted(pd.read_parquet(data / "events.parquet", columns=["user_id"])
                       ["user_id"].astype(str).unique())
        random.Random(5).shuffle(users)
        seconds = await trials(8095, 8096, users[:args.trials], args.trials)
    finally:
        for server in reversed(servers):
            server.stop()
    ms = np.array(seconds) * 1000
    result = {"trials": len(ms), "p50_ms": float(np.percentile(ms, 50)),
              "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}
    (args.out / "freshness.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(f"freshness over {result['trials']} events: p50 {result['p50_ms']:.0f} ms, "
          f"p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms")
    print(f"{'met' if result['p99_ms'] <= 1000 else 'NOT MET'}: p99 <= 1 s")


if __name__ == "__main__":
    main()
