"""The synthetic generator's speed and the statistical shape of what it writes (issue 21,
step 4).

For each size in --sizes (USERSxITEMS), `models.data.synthetic.generate` runs in this
process into OUT/generator/USERSxITEMS/ and the script reports its wall time, its
peak RSS (this process's high-water mark, so run the sizes in growing order), the
events written and the shape of the output, read back from the files:

- events per user and sessions per user; the share of sessions that start with a
  search;
- the funnel: click / view, add_to_cart / click, purchase / add_to_cart, rating /
  purchase;
- popularity: the share of views that go to the top decile of items, and the
  power-law slope of views against item rank (least squares on log-log, ranks 1 to
  the median item's);
- taste: the mean percentile, in the ground truth's utility at that instant, of 2,000
  sampled views (0.5 is chance), and the drift: for views in the period's last third,
  the mean affinity to the user's taste at that instant minus the mean affinity to
  their taste at the start (positive when choices follow the drifting taste).

The figures go to OUT/generator.json. `--keep` leaves the worlds on disk.

Usage:
    python benchmarks/generator.py [--sizes 2000x1000,8000x4000] [--days 30] [--seed 11]
        [--pool 4096] [--out benchmarks/out] [--keep]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.data.synthetic import (
    DEFAULT_POOL,
    GenerateConfig,
    GroundTruth,
    generate,
)

SAMPLED_VIEWS = 2000


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def _power_law_slope(per_item: np.ndarray) -> float:
    counts = np.sort(per_item[per_item > 0])[::-1]
    ranks = np.arange(1, len(counts) + 1)
    head = max(2, len(counts) // 2)
    return float(np.polyfit(np.log(ranks[:head]), np.log(counts[:head]), 1)[0])


def _taste(data_dir: Path, views: dict[str, np.ndarray], rng: np.random.Generator
           ) -> tuple[float, float]:
    truth = GroundTruth.load(data_dir)
    world = truth.world
    user_index = {u: n for n, u in enumerate(world.user_ids)}
    item_index = {i: n for n, i in enumerate(world.item_ids)}
    pick = rng.choice(len(views["user_id"]), size=min(SAMPLED_VIEWS, len(views["user_id"])),
                      replace=False)
    t0 = world.start.value // 1000  # microseconds
    percentiles = []
    for n in pick:
        user = np.array([user_index[views["user_id"][n]]])
        t = (int(views["timestamp"][n]) - t0) / 1e6
        utility = world.utility(user, t)[0]
        released = utility[np.isfinite(utility)]
        percentiles.append(float((released < utility[item_index[views["item_id"][n]]]).mean()))
    period = world.days * 86_400.0
    t_all = (views["timestamp"].astype(np.int64) - t0) / 1e6
    late = np.flatnonzero(t_all > period * 2 / 3)
    late = late[rng.choice(len(late), size=min(SAMPLED_VIEWS, len(late)), replace=False)]
    users = np.array([user_index[u] for u in views["user_id"][late]])
    items = np.array([item_index[i] for i in views["item_id"][late]])
    now = (world.taste(users, t_all[late]) * world.item_vec[items]).sum(axis=1)
    start = (world.taste(users, 0.0) * world.item_vec[items]).sum(axis=1)
    return float(np.mean(percentiles)), float(np.mean(now - start))


def shape(data_dir: Path, seed: int = 0) -> dict[str, float]:
    """The statistical shape of a generated data directory (see the module docstring)."""
    table = pq.read_table(data_dir / "events.parquet",
                          columns=["user_id", "item_id", "event_type", "timestamp",
                                   "session_id"])
    types = table.column("event_type")
    counts = {str(row["values"]): int(row["counts"])
              for row in pc.value_counts(types).to_pylist()}
    users = pq.read_metadata(data_dir / "users.parquet").num_rows
    sessions = pc.count_distinct(table.column("session_id")).as_py()
    searches = counts.get("search", 0)
    viewed = table.filter(pc.equal(types, "view"))
    per_item = np.asarray(pc.value_counts(viewed.column("item_id")).field("counts"))
    top = np.sort(per_item)[::-1][: max(1, len(per_item) // 10)].sum() / per_item.sum()
    views = {name: viewed.column(name).to_numpy(zero_copy_only=False)
             for name in ("user_id", "item_id")}
    views["timestamp"] = viewed.column("timestamp").cast("int64").to_numpy()
    percentile, drift = _taste(data_dir, views, np.random.default_rng(seed))
    return {
        "events_per_user": table.num_rows / users,
        "sessions_per_user": sessions / users,
        "search_share": searches / sessions,
        "click_per_view": counts["click"] / counts["view"],
        "cart_per_click": counts["add_to_cart"] / counts["click"],
        "purchase_per_cart": counts["purchase"] / counts["add_to_cart"],
        "rating_per_purchase": counts["rating"] / counts["purchase"],
        "top_decile_view_share": float(top),
        "popularity_slope": _power_law_slope(per_item),
        "view_utility_percentile": percentile,
        "late_views_drift": drift,
    }


def _sizes(text: str) -> list[tuple[int, int]]:
    return [(int(u), int(i)) for u, i in (part.split("x") for part in text.split(","))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=_sizes, default=_sizes("2000x1000,8000x4000"))
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--pool", type=int, default=DEFAULT_POOL,
                        help="catalogs above this size sample from per-user pools")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    results = []
    for users, items in args.sizes:
        world = args.out / "generator" / f"{users}x{items}"
        shutil.rmtree(world, ignore_errors=True)
        config = GenerateConfig(users=users, items=items, days=args.days, seed=args.seed,
                                pool=args.pool)
        start = time.perf_counter()
        generate(world, config)
        seconds = time.perf_counter() - start
        events = pq.read_metadata(world / "events.parquet").num_rows
        row = {"users": users, "items": items, "days": args.days, "pool": args.pool,
               "events": events,
               "seconds": round(seconds, 1), "peak_rss_gb": round(_peak_rss_gb(), 2),
               **{k: round(v, 4) for k, v in shape(world, args.seed).items()}}
        results.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            shutil.rmtree(world)
        (args.out / "generator.json").write_text(json.dumps(results, indent=1))
    print("\n| figure | " + " | ".join(f"{r['users']:,} x {r['items']:,}" for r in results) + " |")
    print("|---|" + "---:|" * len(results))
    for key in results[0]:
        if key not in ("users", "items"):
            print(f"| {key} | " + " | ".join(f"{r[key]:,}" for r in results) + " |")


if __name__ == "__main__":
    main()
