"""How often `recstack rollout check` promotes, waits or rolls back a canary, on
simulated traffic with known click rates (models/evaluation/canary.py's simulator,
the one tests/evaluation/test_canary.py uses), with promotion.yaml's defaults
(min_impressions 2,000 per arm, margin 5%).

Usage:
    python benchmarks/canary_decisions.py [--seeds 100] [--shares 0.5,0.1]
        [--windows 2000,6000,12000,24000] [--lifts=-0.2,-0.1,0,0.1,0.2]
        [--control-ctr 0.05] [--rate 600] [--workers N]

For each canary share of the users, relative CTR lift of the canary, and window
(impressions in the smaller arm, the canary's at a share under one half), `--seeds`
seeded runs of that much traffic (seeds of each row's own) and one check at its end.
The right answer: roll back when the canary is worse than the margin allows (lift
below -5%), promote otherwise. Minutes are those the window takes at `--rate`
requests a minute of 10 items each. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

from models.evaluation.canary import Traffic, check, simulate_traffic
from recstack.promotion import Canary

POLICY = Canary()


def decide(traffic: Traffic, window: int, seed: int) -> str:
    events = simulate_traffic(traffic, traffic.requests_for(window), seed)
    return check(events, traffic.control, traffic.canary, POLICY, None).action


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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--shares", default="0.5,0.1")
    parser.add_argument("--windows", default="2000,6000,12000,24000")
    parser.add_argument("--lifts", default="-0.2,-0.1,0,0.1,0.2")
    parser.add_argument("--control-ctr", type=float, default=0.05)
    parser.add_argument("--rate", type=float, default=600.0, help="requests a minute")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    windows = [int(n) for n in args.windows.split(",")]
    print(f"{args.seeds} seeded runs per row; control CTR {args.control_ctr:.1%}; "
          f"{args.rate:g} requests a minute, 10 impressions each\n")
    print("| canary share | lift | window (smaller arm) | control impressions | minutes | "
          "promote | wait | rollback | right answer | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    rows = 0
    with ProcessPoolExecutor(args.workers) as pool:
        for share in (float(s) for s in args.shares.split(",")):
            for lift in (float(x) for x in args.lifts.split(",")):
                traffic = Traffic(control_ctr=args.control_ctr,
                                  canary_ctr=args.control_ctr * (1 + lift),
                                  canary_share=share, requests_per_minute=args.rate)
                for window in windows:
                    # Seeds of their own: rows sharing seeds share their random draws,
                    # and their counts would be off from the truth together.
                    seeds = range(rows * args.seeds, (rows + 1) * args.seeds)
                    print(row(traffic, lift, window, seeds, pool), flush=True)
                    rows += 1


if __name__ == "__main__":
    main()
