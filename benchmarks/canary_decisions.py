"""How often `recstack rollout check` promotes, waits or rolls back a canary, on
simulated traffic with known click rates (models/evaluation/canary.py's simulator,
the one tests/evaluation/test_canary.py uses), with promotion.yaml's defaults
(min_impressions 2,000 per arm, margin 5%).

Usage:
    python benchmarks/canary_decisions.py [--seeds 100] [--shares 0.5,0.1]
        [--windows 2000,6000,12000,24000] [--lifts=-0.2,-0.1,0,0.1,0.2]
        [--control-ctr 0.05] [--rate 600] [--workers N] [--sequential]

For each canary share of the users, relative CTR lift of the canary, and window
(impressions in the smaller arm, the canary's at a share under one half), `--seeds`
seeded runs of that much traffic (seeds of each row's own) and one check at its end.
The right answer: roll back when the canary is worse than the margin allows (lift
below -5%), promote otherwise. Minutes are those the window takes at `--rate`
requests a minute of 10 items each. Prints a Markdown table.

With --sequential, what `rollout check --until-decided` does: one stream of traffic
per seed, looked at as it grows, at each window in turn (the events logged by then,
late clicks not yet in), stopping at the first look that decides; a canary still
undecided at the last window is rolled back (the `--timeout` rule). The table then
gives the decisions and the mean window at which they were taken, so the cost of
repeated looks (a chance crossing of a bound at one of them) is measured, not guessed.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

from contracts.promotion import Canary
from models.evaluation.canary import Traffic, check, simulate_traffic, timed_out

POLICY = Canary()


def decide(traffic: Traffic, window: int, seed: int) -> str:
    events = simulate_traffic(traffic, traffic.requests_for(window), seed)
    return check(events, traffic.control, traffic.canary, POLICY, None).action


def decide_looking(traffic: Traffic, windows: list[int], seed: int) -> tuple[str, int]:
    """The decision of the first deciding look, and the window it came at."""
    events = simulate_traffic(traffic, traffic.requests_for(windows[-1]), seed)
    times = pd.to_datetime(events["timestamp"], utc=True)
    starts = times[events["event_type"] == "impression"].drop_duplicates().reset_index(drop=True)
    for window in windows:
        cut = starts.iloc[min(traffic.requests_for(window), len(starts)) - 1]
        decision = check(events[times <= cut], traffic.control, traffic.canary, POLICY,
                         None)
        if decision.action != "wait":
            return decision.action, window
    return timed_out(decision, "the last look").action, windows[-1]


def expected(lift: float) -> str:
    return "rollback" if lift < -POLICY.margin else "promote"


def row(traffic: Traffic, lift: float, window: int, seeds: range,
        pool: ProcessPoolExecutor) -> str:
    began = time.perf_counter()
    counts = Counter(pool.map(decide, [traffic] * len(seeds), [window] * len(seeds), seeds))
    right = expected(lift)
    control_impressions = round(window * (1 - traffic.canary_share)
                                / min(traffic.canary_share, 1 - traffic.canary_share))
    return (f"| {traffic.canary_share:.0%} | {lift:+.0%} | {window:,} | "
            f"{control_impressions:,} | {traffic.minutes_for(window):.1f} | "
            f"{counts['promote']} | {counts['wait']} | {counts['rollback']} | {right} "
            f"{counts[right] / len(seeds):.0%} | {time.perf_counter() - began:.0f} |")


def sequential_row(traffic: Traffic, lift: float, windows: list[int], seeds: range,
                   pool: ProcessPoolExecutor) -> str:
    began = time.perf_counter()
    runs = list(pool.map(decide_looking, [traffic] * len(seeds),
                         [windows] * len(seeds), seeds))
    counts = Counter(action for action, _ in runs)
    right = expected(lift)
    mean_window = sum(window for _, window in runs) / len(runs)
    return (f"| {traffic.canary_share:.0%} | {lift:+.0%} | {len(windows)} up to "
            f"{windows[-1]:,} | {mean_window:,.0f} | "
            f"{traffic.minutes_for(round(mean_window)):.1f} | {counts['promote']} | "
            f"{counts['rollback']} | {right} {counts[right] / len(seeds):.0%} | "
            f"{time.perf_counter() - began:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--shares", default="0.5,0.1")
    parser.add_argument("--windows", default="2000,6000,12000,24000")
    parser.add_argument("--lifts", default="-0.2,-0.1,0,0.1,0.2")
    parser.add_argument("--control-ctr", type=float, default=0.05)
    parser.add_argument("--rate", type=float, default=600.0, help="requests a minute")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sequential", action="store_true",
                        help="look at each window in turn until one decides")
    args = parser.parse_args()
    windows = [int(n) for n in args.windows.split(",")]
    print(f"{args.seeds} seeded runs per row; control CTR {args.control_ctr:.1%}; "
          f"{args.rate:g} requests a minute, 10 impressions each\n")
    if args.sequential:
        sequential(args, windows)
        return
    print("| canary share | lift | window (smaller arm) | control impressions | minutes | "
          "promote | wait | rollback | right answer | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    rows = 0
    with ProcessPoolExecutor(args.workers) as pool:
        for traffic, lift in traffics(args):
            for window in windows:
                print(row(traffic, lift, window, seeds_of(rows, args.seeds), pool),
                      flush=True)
                rows += 1


def traffics(args: argparse.Namespace) -> Iterator[tuple[Traffic, float]]:
    """Each row group's simulated traffic and the canary's lift, shares outermost."""
    for share in (float(s) for s in args.shares.split(",")):
        for lift in (float(x) for x in args.lifts.split(",")):
            yield Traffic(control_ctr=args.control_ctr,
                          canary_ctr=args.control_ctr * (1 + lift),
                          canary_share=share, requests_per_minute=args.rate), lift


def seeds_of(row_number: int, per_row: int) -> range:
    """Seeds of the row's own: rows sharing seeds share their random draws, and their
    counts would be off from the truth together."""
    return range(row_number * per_row, (row_number + 1) * per_row)


def sequential(args: argparse.Namespace, windows: list[int]) -> None:
    print("| canary share | lift | looks | mean window at the decision | minutes | "
          "promote | rollback | right answer | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    with ProcessPoolExecutor(args.workers) as pool:
        for rows, (traffic, lift) in enumerate(traffics(args)):
            print(sequential_row(traffic, lift, windows, seeds_of(rows, args.seeds), pool),
                  flush=True)


if __name__ == "__main__":
    main()
