"""Crash test: the consumer SIGKILLed mid-stream N times while the collector takes
events, restarted each time; then accepted = persisted, exactly (issue 5's target).

Builds consumer_lag.py's world (2k users, 1k items, project `recstack_bench_lag`,
Redis db 15), starts `recstack collect`, posts `--events` synthetic events (each with
its own event_id) at `--rate` events/s, and meanwhile kills `recstack consume`
`--kills` times, each after it acknowledged another 300 to 3,000 entries (a random
number; never during its start-up); every other restart
takes a new consumer name, so that the dead one's pending entries are claimed
(XAUTOCLAIM after 1 s). After the last post a final consumer drains the stream.
Then it checks, from the files on disk and the online store:
- offline: the day-partitioned part files hold every accepted event_id once: no row
  missing, none extra, none written twice (raw rows, before any de-duplication);
- online: for `--sample` users, the real-time row equals what the offline build
  (models/features/build.py) computes over their whole history.

Usage:
    python benchmarks/consumer_crash.py [--events 60000] [--rate 2000] [--kills 5]
        [--sample 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collector_load import REDIS, synthetic_batches
from consumer_lag import ENV, POST_BATCH, PROJECT, build_world, lag, post_paced
from serve_load import OUT, Server

from contracts.settings import Settings
from models.data.dataset import read_dataset
from models.data.event_log import stream_parts
from models.features.build import user_realtime
from serving.events.consumer import group_progress
from stores.feature_store import online_features, open_store
from stores.redis_address import RedisAddress

REALTIME = ("recent_items", "session_id", "session_event_count", "last_event_type",
            "last_event_ts")


def with_ids(bodies: list[bytes]) -> tuple[list[bytes], list[str], list[str]]:
    """The bodies with an event_id on every event, those ids, and the users."""
    out, ids, users = [], [], set()
    for b, body in enumerate(bodies):
        events = json.loads(body)["events"]
        for e, event in enumerate(events):
            event["event_id"] = f"crash-{b}-{e}"
            ids.append(event["event_id"])
            users.add(event["user_id"])
        out.append(json.dumps({"events": events}).encode())
    return out, ids, sorted(users)


def consumer(world: Path, name: str, log: Path) -> Server:
    cli = [sys.executable, "-m", "recstack", "consume", "--data", str(world), "--name", name,
           "--batch", "500", "--claim-idle", "1", "--progress-every", "2"]
    return Server(f"consume-{name}", cli, 0, log, ENV, uses_ray=False)


def acked(client: Any) -> int:
    """Entries the consumer group has acknowledged so far (0 before it exists)."""
    progress = group_progress(client, PROJECT)
    return 0 if progress is None else progress.acked


async def kill_repeatedly(world: Path, out: Path, kills: int, client: Any,
                          rng: random.Random) -> tuple[Server, list[str], list[int]]:
    """Start the consumer, let it acknowledge a few hundred to a few thousand more
    entries (so that each kill lands mid-batch-stream, not during start-up), SIGKILL
    it, restart; `kills` times. Returns the last one, left running, the names used and
    the group's acknowledged count at each kill."""
    names: list[str] = []
    at_kill: list[int] = []
    for n in range(kills + 1):
        name = f"crash-{n // 2}"  # every other restart under a new name
        names.append(name)
        current = consumer(world, name, out / f"crash-consume-{n}.log")
        if n == kills:
            return current, names, at_kill
        bar = (acked(client) if n else 0) + rng.randrange(300, 3000)
        while acked(client) < bar:
            if current.process.poll() is not None:
                raise RuntimeError(f"the consumer exited; see {current.log.name}")
            await asyncio.sleep(0.005)
        current.process.send_signal(signal.SIGKILL)
        current.stop()  # reaped, its log closed
        at_kill.append(acked(client))
    raise AssertionError("unreachable")


def offline_counts(world: Path) -> Counter[str]:
    """How many raw rows each event_id has in the stream's part files."""
    counts: Counter[str] = Counter()
    for part in stream_parts(world):
        counts.update(pq.read_table(part, columns=["event_id"])["event_id"].to_pylist())
    return counts


def online_mismatches(world: Path, users: list[str]) -> list[str]:
    """The users whose real-time row differs from the offline build over their history."""
    rows = user_realtime(read_dataset(world).events)
    last = rows.groupby("user_id").tail(1).set_index("user_id")
    store = open_store(world, Settings.from_env({**os.environ, **ENV}), announce=lambda _: None)
    online = online_features(store, "user_online", [{"user_id": u} for u in users])
    wrong = []
    for n, user in enumerate(users):
        got = {name: online[name][n] for name in REALTIME}
        if user not in last.index:  # only impressions: no real-time row, here or there
            if any(v is not None for v in got.values()):
                wrong.append(user)
            continue
        expected = {name: last.loc[user, name] for name in REALTIME}
        if list(got["recent_items"] or []) != list(expected["recent_items"]) or any(
                got[k] != expected[k] for k in REALTIME if k != "recent_items"):
            wrong.append(user)
    return wrong


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    client = RedisAddress.parse(REDIS).client()
    world = build_world(args.out, client)
    bodies, ids, users = with_ids(synthetic_batches(-(-args.events // POST_BATCH), POST_BATCH,
                                             seed=args.seed))
    collector = Server("collect", [sys.executable, "-m", "recstack", "collect", "--port",
                                   "8098"], 8098, args.out / "crash-collect.log", ENV,
                       uses_ray=False)
    rng = random.Random(args.seed)
    samples: list[tuple[float, int | None]] = []
    last: Server | None = None
    try:
        await collector.ready(120, "/readyz")
        killer = asyncio.create_task(kill_repeatedly(world, args.out, args.kills, client,
                                                     rng))
        posted = await post_paced(8098, bodies, args.rate, args.events / args.rate + 1,
                                  samples, client)
        last, names, at_kill = await killer
        began = time.monotonic()
        while (lag(client) is None or (lag(client) or 0) > 0) \
                and time.monotonic() - began < args.drain_timeout:
            await asyncio.sleep(0.5)
    finally:
        if last is not None:
            last.stop()
        collector.stop()
    counts = offline_counts(world)
    # Every id is new, so a 202 for all of them means each was accepted.
    everything = posted["accepted"] == len(ids) and posted["errors"] == 0
    accepted = set(ids) if everything else set()
    sample = random.Random(1).sample(users, min(args.sample, len(users)))
    return {
        "posted": len(ids), "accepted": posted["accepted"], "post_errors": posted["errors"],
        "kills": args.kills, "acked_at_each_kill": at_kill, "consumer_names": sorted(set(names)),
        "persisted_ids": len(counts), "persisted_rows": sum(counts.values()),
        "missing": len(accepted - set(counts)), "extra": len(set(counts) - accepted),
        "written_twice": sum(1 for c in counts.values() if c > 1),
        "online_users_checked": len(sample),
        "online_mismatches": online_mismatches(world, sample),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=60000)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--sample", type=int, default=200, help="users checked online")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=1))
    exact = (result["post_errors"] == 0 and result["accepted"] == result["posted"]
             and result["missing"] == result["extra"] == 0 and result["written_twice"] == 0
             and result["persisted_ids"] == result["accepted"])
    print(f"{'met' if exact else 'NOT MET'}: {result['kills']} kills, accepted "
          f"{result['accepted']:,} = persisted {result['persisted_ids']:,} "
          f"({result['persisted_rows']:,} rows); online rows wrong: "
          f"{len(result['online_mismatches'])} of {result['online_users_checked']}")
    if result["accepted"] != result["posted"]:
        print("  (not every event was accepted: which were is unknown, so nothing is compared)")


if __name__ == "__main__":
    main()
