"""Feature store benchmark: materialize 10k users + 5k items into Redis, read one user online.

Both materialization engines are timed (`feast`, the default, and `direct`).
Beside each Feast figure, the same run's floor from plain redis-py:
- writes: the exact hashes Feast wrote, re-written with pipelined HSET;
- reads: one HGETALL of the same user key Feast reads.

Usage:
    python benchmarks/feature_store.py [--users 10000] [--items 5000] [--reads 2000]
        [--repeats 3] [--out benchmarks/out]

Redis comes from RECSTACK_BENCH_REDIS (default localhost:6379,db=15); that db is
flushed. Results: printed as a Markdown table and saved to OUT/feature_store.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from contracts.settings import Settings
from models.data.synthetic import GenerateConfig, generate
from models.features.build import build_features
from stores.feature_store import (
    MATERIALIZE_ENGINES,
    RedisAddress,
    apply_definitions,
    latest_rows,
    materialize_all,
    open_store,
)


@dataclass
class Result:
    users: int
    items: int
    events: int
    build_features_s: float
    materialize_s: dict[str, list[float]]
    materialize_entities: int
    floor_write_s: list[float]
    floor_write_keys: int
    read_feast_ms: dict[str, float]
    read_floor_ms: dict[str, float]
    read_item_feast_ms: dict[str, float]


def percentiles(samples: list[float]) -> dict[str, float]:
    arr = np.array(samples) * 1000.0
    return {"p50": float(np.percentile(arr, 50)), "p90": float(np.percentile(arr, 90)),
            "p99": float(np.percentile(arr, 99)), "mean": float(arr.mean()), "n": len(arr)}


def dump_hashes(client: Any) -> dict[bytes, dict[bytes, bytes]]:
    keys = list(client.scan_iter(count=5000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    return dict(zip(keys, pipe.execute(), strict=True))


def floor_write(client: Any, hashes: dict[bytes, dict[bytes, bytes]], batch: int = 500
                ) -> float:
    """Seconds to write the same hashes with pipelined HSET (to a separate key space)."""
    began = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for n, (key, mapping) in enumerate(hashes.items(), start=1):
        pipe.hset(b"floor:" + key, mapping=mapping)
        if n % batch == 0:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()

    world = args.out / f"world-{args.users}u-{args.items}i-{args.days}d"
    if not (world / "events.parquet").exists():
        print(f"generating {args.users} users x {args.items} items ...", flush=True)
        generate(world, GenerateConfig(users=args.users, items=args.items, days=args.days))
    began = time.perf_counter()
    build_features(world)
    build_s = time.perf_counter() - began
    print(f"features built in {build_s:.1f} s", flush=True)

    redis_conn = os.environ.get("RECSTACK_BENCH_REDIS", "localhost:6379,db=15")
    settings = Settings(redis=redis_conn, online_store="redis", feast_project="bench")
    client = RedisAddress.parse(redis_conn).client(timeout=30)
    store = open_store(world, settings)
    definitions = apply_definitions(store, world)

    entities = sum(len(latest_rows(view, definitions.join_keys(view),
                                   datetime.now(UTC) + timedelta(days=1)))
                   for view in definitions.views.values())
    times: dict[str, list[float]] = {engine: [] for engine in MATERIALIZE_ENGINES}
    floor_times: list[float] = []
    hashes: dict[bytes, dict[bytes, bytes]] = {}
    for repeat in range(args.repeats):
        for engine in MATERIALIZE_ENGINES:
            client.flushdb()
            apply_definitions(store, world)
            began = time.perf_counter()
            materialize_all(store, definitions, engine=engine)
            times[engine].append(time.perf_counter() - began)
        hashes = dump_hashes(client)
        floor_times.append(floor_write(client, hashes))
        client.delete(*[b"floor:" + k for k in hashes])
        print(f"repeat {repeat + 1}: " + ", ".join(
            f"{engine} engine {t[-1]:.2f} s" for engine, t in times.items())
            + f"; redis-py floor {floor_times[-1]:.2f} s for {len(hashes)} keys", flush=True)

    # Reads: one user per call through the Feast SDK, as serving will do.
    user_ids = sorted({k for k in _entity_ids(world, "user_activity", "user_id")})
    item_ids = sorted({k for k in _entity_ids(world, "item_popularity", "item_id")})
    rng = random.Random(0)
    service = store.get_feature_service("user_online")
    item_service = store.get_feature_service("item_online")
    for _ in range(50):  # warm up caches and connections
        store.get_online_features(features=service, entity_rows=[{"user_id": user_ids[0]}])
    feast_reads, item_reads, floor_reads = [], [], []
    user_key = _user_key(store, user_ids[0])
    for _ in range(args.reads):
        user = rng.choice(user_ids)
        began = time.perf_counter()
        store.get_online_features(features=service, entity_rows=[{"user_id": user}]).to_dict()
        feast_reads.append(time.perf_counter() - began)
        item = rng.choice(item_ids)
        began = time.perf_counter()
        store.get_online_features(features=item_service,
                                  entity_rows=[{"item_id": item}]).to_dict()
        item_reads.append(time.perf_counter() - began)
        key = _user_key(store, user)
        began = time.perf_counter()
        client.hgetall(key)
        floor_reads.append(time.perf_counter() - began)
    assert client.hgetall(user_key), "the floor must read the keys Feast wrote"

    events = int(_row_count(world / "events.parquet"))
    result = Result(
        users=args.users, items=args.items, events=events, build_features_s=build_s,
        materialize_s=times, materialize_entities=entities, floor_write_s=floor_times,
        floor_write_keys=len(hashes), read_feast_ms=percentiles(feast_reads),
        read_floor_ms=percentiles(floor_reads), read_item_feast_ms=percentiles(item_reads))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "feature_store.json").write_text(json.dumps(asdict(result), indent=1))
    print(render(result))


def _entity_ids(world: Path, table: str, key: str) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_table(world / "features" / f"{table}.parquet",
                              columns=[key]).column(key).to_pylist())


def _row_count(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.read_metadata(path).num_rows)


def _user_key(store: Any, user_id: str) -> bytes:
    """The Redis key Feast uses for a user (same helper Feast's Redis store calls)."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user_id)])
    return bytes(_redis_key(store.project, key,
                            store.config.entity_key_serialization_version))


def render(r: Result) -> str:
    floor = statistics.median(r.floor_write_s)
    repeats = len(r.floor_write_s)
    lines = [
        f"Synthetic world: {r.users:,} users, {r.items:,} items, {r.events:,} events; "
        f"feature tables built in {r.build_features_s:.1f} s. Medians of {repeats} runs.",
        "",
        "| measure | Feast | redis-py floor | ratio |",
        "|---|---|---|---|",
    ]
    for engine, label in (("feast", "`FeatureStore.materialize` (default)"),
                          ("direct", "`--engine direct`")):
        mat = statistics.median(r.materialize_s[engine])
        lines.append(
            f"| materialize {r.materialize_entities:,} entity rows, 5 views, {label} | "
            f"{mat:.2f} s | {floor:.2f} s ({r.floor_write_keys:,} hashes, pipelined HSET) | "
            f"{mat / floor:.1f}x |")
    lines += [
        f"| one user's online features (`user_online`, 3 views) p50 | "
        f"{r.read_feast_ms['p50']:.2f} ms | {r.read_floor_ms['p50']:.3f} ms (HGETALL) | "
        f"{r.read_feast_ms['p50'] / r.read_floor_ms['p50']:.1f}x |",
        f"| same, p99 | {r.read_feast_ms['p99']:.2f} ms | {r.read_floor_ms['p99']:.3f} ms | "
        f"{r.read_feast_ms['p99'] / r.read_floor_ms['p99']:.1f}x |",
        f"| one item's online features (`item_online`, 2 views) p50 / p99 | "
        f"{r.read_item_feast_ms['p50']:.2f} / {r.read_item_feast_ms['p99']:.2f} ms | | |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
