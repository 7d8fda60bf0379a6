"""Where the stream consumer's time goes: cProfile over `StreamConsumer.run` draining
realistic batches (collector_load's synthetic events: 20k users, every event type).

Builds the consumer-lag world (2k users, 1k items, 7 days) under OUT/profile_world
with its Feast repo applied to project `recstack_bench_profile`, appends `--events`
events to that project's stream as the collector would (`Event.to_json`), then runs
the real consumer (`build_consumer`) until idle under cProfile and prints events/s
and the top functions by cumulative and by own time. The world is rebuilt each run.
Redis: RECSTACK_BENCH_REDIS (default db 15 of localhost); only this project's keys.

Usage:
    python benchmarks/profile_consumer.py [--events 20000] [--batch 1000] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import shutil
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collector_load import REDIS, synthetic_batches

from contracts.settings import Settings
from models.data.synthetic import GenerateConfig, generate
from models.features.build import build_features
from serving.events.consumer import ConsumerConfig, build_consumer
from serving.events.event import parse_events
from serving.events.stream import stream_key
from stores.feature_store import RedisAddress, apply_definitions, materialize_all, open_store

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
PROJECT = "recstack_bench_profile"
POST_BATCH = 500


def build_world(out: Path, settings: Settings) -> Path:
    world = out / "profile_world"
    shutil.rmtree(world, ignore_errors=True)
    generate(world, GenerateConfig(users=2000, items=1000, days=7, seed=3))
    build_features(world)
    store = open_store(world, settings, announce=lambda _: None)
    materialize_all(store, apply_definitions(store, world), engine="direct")
    return world


def clear_project(client: redis.Redis) -> None:
    for key in client.scan_iter(match=f"*{PROJECT}*".encode(), count=10000):
        client.delete(key)


def fill_stream(client: redis.Redis, events: int) -> None:
    """The events as the collector appends them: one `event` field, `Event.to_json()`."""
    for body in synthetic_batches(events // POST_BATCH + 1, POST_BATCH)[:events // POST_BATCH]:
        valid, _ = parse_events(json.loads(body)["events"])
        pipe = client.pipeline(transaction=False)
        for event in valid:
            pipe.xadd(stream_key(PROJECT), {"event": event.to_json()})
        pipe.execute()


# The steps of a batch, by (file suffix, function): cumulative seconds each.
STEPS = [
    ("read (XREADGROUP)", "consumer.py", "read"),
    ("parse entries", "stream_entries.py", "parse_entry"),
    ("offline: events table", "stream_entries.py", "events_table"),
    ("offline: append parquet", "event_log.py", "append"),
    ("online: apply, all", "realtime_sink.py", "apply"),
    ("online: current rows", "realtime_sink.py", "current_rows"),
    ("online: recompute, history read", "event_log.py", "read_history"),
    ("online: recompute, fold", "realtime_sink.py", "state_from_history"),
    ("online: Feast write", "realtime_sink.py", "write"),
    ("online: invalidate cache", "cache.py", "invalidate_many"),
    ("acknowledge (XACK)", "core.py", "xack"),
]


def breakdown(stats: pstats.Stats, elapsed: float, events: int) -> str:
    """Cumulative time of each step, per 1,000 events and as a share of the run."""
    table = stats.stats  # type: ignore[attr-defined]
    lines = ["| step | ms per 1,000 events | share |", "|---|---:|---:|"]
    for label, suffix, name in STEPS:
        seconds = sum(row[3] for (path, _, func), row in table.items()
                      if func == name and path.endswith(suffix))
        if seconds:
            lines.append(f"| {label} | {seconds / events * 1e6:,.0f} | "
                         f"{seconds / elapsed:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=1000, help="consumer batch size")
    parser.add_argument("--max-batch", type=int, default=5000,
                        help="what reads grow to while behind (= --batch: fixed size)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-profile", action="store_true",
                        help="only time the run (cProfile slows Python code down)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = Settings(redis=REDIS, online_store="redis", feast_project=PROJECT)
    client = RedisAddress.parse(REDIS).client(timeout=30)
    clear_project(client)
    world = build_world(args.out, settings)
    fill_stream(client, args.events)
    consumer = build_consumer(world, ConsumerConfig(name="profile", batch=args.batch,
                                                    max_batch=args.max_batch,
                                                    compact_every_s=0),
                              settings, announce=lambda _: None)
    profile = cProfile.Profile()
    began, cpu_began = time.perf_counter(), time.process_time()
    if not args.no_profile:
        profile.enable()
    done = consumer.run(until_idle=True)
    profile.disable()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    # Events per CPU-second of this process: what a shared machine disturbs least.
    print(f"{done.consumed:,} events in {elapsed:.1f} s: {done.consumed / elapsed:,.0f} "
          f"events/s{'' if args.no_profile else ' under cProfile'}, "
          f"{done.consumed / cpu:,.0f} per CPU-second; {done.users:,} user "
          f"states pushed, {consumer.online.recomputed:,} recomputed from history")
    if args.no_profile:
        clear_project(client)
        return
    print(breakdown(pstats.Stats(profile), elapsed, done.consumed))
    for order in ("cumulative", "tottime"):
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats(order).print_stats(args.top)
        print(text.getvalue())
    profile.dump_stats(args.out / "profile_consumer.prof")
    clear_project(client)


if __name__ == "__main__":
    main()
