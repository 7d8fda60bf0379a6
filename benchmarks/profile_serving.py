"""Where a recommendation's time goes, in one process: the graph's stages (user
features, retrieval, item features, ranking, rules) run in turn on the load test's
world, without Ray or HTTP, timed per stage; with --cprofile, the top functions.

Run benchmarks/serve_load.py once first: it builds the world and the version.

Usage:
    python benchmarks/profile_serving.py [--users 20000] [--items 10000]
        [--requests 300] [--cprofile]
"""
# ruff: noqa: E402  (the thread count must be set before numpy loads)

from __future__ import annotations

import os

# One BLAS thread, as Ray starts the graph's actors (set before numpy loads): on a
# busy 2-core box two threads make a lone matrix-vector product wait for the other core.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import cProfile
import pstats
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import ENV, OUT, world_paths

os.environ.update(ENV)

from contracts.settings import Settings
from models.timing import Timings
from serving.features import open_serving_store
from serving.recommender import Recommender
from serving.requests import RecommendRequest
from stores.registry import Registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    data, registry_dir = world_paths(OUT, args.users, args.items)
    registry = Registry(str(registry_dir))
    version = Path(registry.fetch(registry.resolve(stage="dev").version))
    recommender = Recommender(version, open_serving_store(data, Settings.from_env()))
    began = time.perf_counter()
    recommender.join.keep_fresh(recommender.bundle.item_ids)
    print(f"catalog item rows read in {time.perf_counter() - began:.1f} s")
    users = sorted(pd.read_parquet(data / "events.parquet", columns=["user_id"])["user_id"]
                   .astype(str).unique())
    rng = random.Random(3)
    requests = [RecommendRequest(user_id=rng.choice(users) if rng.random() < 0.9
                                 else f"new-{n}", k=10) for n in range(args.requests)]

    def run(request: RecommendRequest, n: int, timings: Timings) -> None:
        recommender.recommend(request, f"p-{n}", timings=timings)

    for n, request in enumerate(requests[:30]):  # warm-up: the item feature cache fills
        run(request, n, {})
    totals: dict[str, list[float]] = {}
    reads = recommender.join.item_reads
    profile = cProfile.Profile() if args.cprofile else None
    began = time.perf_counter()
    if profile is not None:
        profile.enable()
    for n, request in enumerate(requests):
        timings: Timings = {}
        run(request, n, timings)
        for name, (start, end) in timings.items():
            totals.setdefault(name, []).append((end - start) / 1e6)
    if profile is not None:
        profile.disable()
    elapsed = (time.perf_counter() - began) / len(requests) * 1000
    print(f"{len(requests)} requests, {elapsed:.2f} ms each in all; "
          f"{recommender.join.item_reads - reads} item rows read meanwhile")
    for name, values in totals.items():
        print(f"  {name:16s} mean {np.mean(values):6.2f} ms  p99 {np.percentile(values, 99):6.2f}")
    if profile is not None:
        pstats.Stats(profile).sort_stats(os.environ.get("SORT", "cumulative")).print_stats(40)


if __name__ == "__main__":
    main()
