"""What keeping a catalog's item features fresh costs a serving replica (issue 21,
step 5): the first read of every item (start-up), a renewal round with nothing
changed (each row's stamp compared, nothing decoded), and one with a share of the
rows rewritten by a newer Feast write; each against the old way, every row read and
decoded again.

    python benchmarks/item_refresh.py --data DATA_DIR [--changed 0.01] [--rounds 3]

DATA_DIR is a world whose features `recstack features apply` materialized (e.g.
benchmarks/scale.py's OUT/scale/USERSxITEMS/data, Feast project recstack_scale, Redis
db 15: RECSTACK_REDIS and RECSTACK_FEAST_PROJECT as that benchmark sets them). The
changed share is rewritten through `write_to_online_store` with a newer timestamp
(`interactions_total` + 1), in this project only. Times are wall seconds in this
process, one thread, as the Ranker's background thread runs; the CPU share is a
round's time over the interval a round must fit in (half the staleness bound,
300 s by default).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
from feast import FeatureStore
from scale import ENV as SCALE_ENV

from contracts.settings import Settings
from serving.config import ITEM_STALENESS_S
from serving.features import OnlineFeatureJoin, open_serving_store


def world_store(data: Path) -> FeatureStore:
    """The serving store of a world benchmarks/scale.py materialized: its Redis and
    Feast project, unless the environment names others."""
    return open_serving_store(data, Settings.from_env({**SCALE_ENV, **os.environ}))


def timed(join: OnlineFeatureJoin, items: list[str], now: list[float], at: float
          ) -> tuple[float, int, int]:
    """Seconds of one `renew` of every item at clock `at`, and how many rows it decoded
    and checked."""
    now[0] = at
    reads, checks = join.item_reads, join.item_checks
    began = time.perf_counter()
    join.renew(items)
    return time.perf_counter() - began, join.item_reads - reads, join.item_checks - checks


def rewrite(store: object, items: list[str]) -> None:
    """Newer `item_popularity` rows for these items (interactions_total + 1)."""
    names = [f"item_popularity:{f.name}"
             for f in store.get_feature_view("item_popularity").features]  # type: ignore[attr-defined]
    rows = store.get_online_features(  # type: ignore[attr-defined]
        features=names, entity_rows=[{"item_id": i} for i in items]).to_df()
    rows["interactions_total"] = rows["interactions_total"].fillna(0) + 1
    rows["event_timestamp"] = rows["created"] = pd.Timestamp.now(tz="UTC")
    store.write_to_online_store("item_popularity", rows)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    store = world_store(args.data)
    items = list(pd.read_parquet(args.data / "items.parquet")["item_id"].astype(str))
    bound = ITEM_STALENESS_S
    now = [0.0]
    join = OnlineFeatureJoin(store, clock=lambda: now[0])
    first, reads, _ = timed(join, items, now, 0.0)
    print(f"{len(items):,} items; first read (start-up): {first:.1f} s, {reads:,} rows, "
          f"{first / len(items) * 1e6:.0f} us a row", flush=True)
    results = []
    for round_ in range(1, args.rounds + 1):
        changed = items[(round_ - 1) * int(len(items) * args.changed):][
            :int(len(items) * args.changed)]
        if changed:
            rewrite(store, changed)
        seconds, reads, checks = timed(join, items, now, round_ * bound)
        results.append((seconds, reads, checks, len(changed)))
        print(f"round {round_}: {len(changed):,} rows rewritten; renewal {seconds:.2f} s "
              f"({checks:,} stamps compared, {reads:,} rows decoded)", flush=True)
    began = time.perf_counter()
    join._read_items(items)  # what a round cost before: every row decoded again
    full = time.perf_counter() - began
    median = sorted(r[0] for r in results)[len(results) // 2]
    print(f"\n| round | seconds | rows decoded | stamps compared | share of a core "
          f"(a round per {bound / 2:.0f} s) |\n|---|---:|---:|---:|---:|")
    print(f"| start-up: every row read | {first:.1f} | {len(items):,} | 0 | |")
    print(f"| every row decoded again (before) | {full:.1f} | {len(items):,} | 0 | "
          f"{full / (bound / 2):.1%} |")
    print(f"| stamps, {args.changed:.0%} changed (median of {len(results)}) | {median:.2f} | "
          f"{results[0][1]:,} | {results[0][2]:,} | {median / (bound / 2):.2%} |")


if __name__ == "__main__":
    main()
