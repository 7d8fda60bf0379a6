"""Where a serving replica's memory goes (issue 21, step 5), and what of it grows with
the users and what with the catalog.

    python benchmarks/replica_memory.py --version REGISTRY/versions/V [--data DATA_DIR]

In this process, one step at a time, the resident set after each: imports; the
bundle loaded (`load_bundle`); a retrieving `ServedModel` (what a Retriever replica
builds: the training matrix, each source's serving state, the ANN indexes); the
training events released (`Bundle.release_events`, as the replicas do); with
--data (a materialized world, as benchmarks/item_refresh.py reads it) every item's
feature row read into the in-process table (what a Ranker replica holds). Then the
arrays each part holds, by name, with their bytes, so the table says what is per
user (user vectors, histories) and what per item (vectors, graphs, neighbours).
Frames are pandas' deep count, which counts a repeated string every time it occurs:
an upper bound (the training events' 154 MB on the 20k x 100k world are 75 MB of
RSS, their strings shared).
"""

from __future__ import annotations

import argparse
import gc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import scipy.sparse as sp

MB = 2**20


def rss() -> float:
    return psutil.Process().memory_info().rss / MB


def nbytes(value: Any, seen: set[int] | None = None, depth: int = 0) -> int:
    """Bytes of the arrays, sparse matrices and frames reachable from `value` through
    attributes, dicts and lists (each object once)."""
    seen = set() if seen is None else seen
    if id(value) in seen or depth > 6:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return int(value.nbytes) if value.base is None else 0
    if sp.issparse(value):
        return sum(int(getattr(value, a).nbytes) for a in ("data", "indices", "indptr")
                   if hasattr(value, a))
    if isinstance(value, pd.DataFrame | pd.Series | pd.Index):
        usage = value.memory_usage(deep=True)
        return int(usage.sum() if hasattr(usage, "sum") else usage)
    state = getattr(value, "state_dict", None)
    if callable(state) and hasattr(value, "parameters"):  # a torch module
        return sum(t.numel() * t.element_size() for t in state().values())
    if isinstance(value, dict):
        return sum(nbytes(v, seen, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(nbytes(v, seen, depth + 1) for v in value[:10_000])
    if hasattr(value, "get_current_count"):  # an hnswlib graph: its vector copies, links
        return int(value.get_current_count() * (value.dim * 4 + value.M * 2 * 4 + 16))
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return sum(nbytes(v, seen, depth + 1) for v in vars(value).values())
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    steps = [("python", rss())]
    from models.bundle import load_bundle
    from models.served import ServedModel
    steps.append(("imports", rss()))
    bundle = load_bundle(args.version)
    steps.append(("load_bundle", rss()))
    served = ServedModel(bundle)
    gc.collect()
    steps.append(("ServedModel (retrieving)", rss()))
    parts = {f"source {name}": nbytes(source) for name, source in bundle.generators.items()}
    parts["ranker"] = nbytes(bundle.ranker)
    parts["training events (bundle.events)"] = nbytes(bundle.events)
    parts["training positives"] = nbytes(served.positives)
    events = len(bundle.events)
    bundle.release_events()  # as serving's replicas do
    gc.collect()
    steps.append(("training events released", rss()))
    if args.data is not None:
        from item_refresh import world_store

        from serving.features import OnlineFeatureJoin

        join = OnlineFeatureJoin(world_store(args.data))
        join.renew([str(i) for i in bundle.item_ids])
        gc.collect()
        steps.append(("every item's feature row (Ranker)", rss()))
        parts["item feature table"] = nbytes(join._table)
    users, items = len(bundle.user_ids), len(bundle.item_ids)
    print(f"{users:,} users, {items:,} items, {events:,} training events\n")
    print("| step | RSS MB | added MB |\n|---|---:|---:|")
    for (name, value), (_, before) in zip(steps, [("", steps[0][1]), *steps], strict=False):
        print(f"| {name} | {value:,.0f} | {value - before:+,.0f} |")
    print("\n| part | MB |\n|---|---:|")
    for name, size in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {size / MB:,.1f} |")


if __name__ == "__main__":
    main()
