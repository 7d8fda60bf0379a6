"""How often the off-policy estimate's 95% interval covers the candidate's true CTR,
in the simulated world of models/evaluation/simulate_clicks.py (the test's, with
more seeds and several traffic sizes).

Usage:
    python benchmarks/off_policy_coverage.py [--seeds 500] [--impressions 300,1000,3000,10000]

Two worlds: the default (the candidate lists 30 items a user, so it nearly always
ranks some of the 20-item pool) and short lists (4 items: a third of the
impressions fall back to the uniform draw, so the weights are unequal). For each
traffic size, the share of seeded runs whose interval holds the truth, the mean
interval width and matched impressions, and, for comparison, the coverage of the
delta method's normal interval alone (value +- 1.96 standard errors). Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from models.evaluation.off_policy import target_probabilities, weighted_ctr
from models.evaluation.online import Z95
from models.evaluation.simulate_clicks import World, simulate

WORLDS = {"default": World(), "short lists": World(listed=4)}


def run(world: World, impressions: int, seeds: int) -> dict[str, float]:
    covered = normal_covered = 0
    widths, matched, reached_share = [], [], []
    for seed in range(seeds):
        sim = simulate(impressions, seed, world)
        pi1, reached = target_probabilities(sim.log, sim.target_lists)
        weights = pi1 / sim.log["propensity"].to_numpy(dtype=float)
        clicked = sim.log["clicked"].to_numpy(dtype=float)
        found = weighted_ctr(weights, clicked, int(reached.sum()))
        covered += found.low <= sim.truth <= found.high
        low, high = _normal_interval(weights, clicked, found.value)
        normal_covered += low <= sim.truth <= high
        widths.append(found.high - found.low)
        matched.append(found.matched)
        reached_share.append(reached.mean())
    return {"covered": covered, "normal_covered": normal_covered,
            "width": float(np.mean(widths)), "matched": float(np.mean(matched)),
            "reached": float(np.mean(reached_share))}


def _normal_interval(weights: np.ndarray, clicked: np.ndarray, value: float
                     ) -> tuple[float, float]:
    """The delta method's normal interval of SNIPS, the comparison."""
    half = Z95 * math.sqrt(float((weights**2) @ (clicked - value) ** 2)) / weights.sum()
    return value - half, value + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=500)
    parser.add_argument("--impressions", default="300,1000,3000,10000")
    args = parser.parse_args()
    sizes = [int(n) for n in args.impressions.split(",")]
    print(f"{args.seeds} seeded runs per row; the interval should cover the truth in "
          "about 95% of them\n")
    print("| world | exploration impressions | covered | mean width | mean matched | "
          "pools ranked | normal interval covered | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, world in WORLDS.items():
        for size in sizes:
            began = time.perf_counter()
            row = run(world, size, args.seeds)
            print(f"| {name} | {size} | {row['covered']}/{args.seeds} "
                  f"({row['covered'] / args.seeds:.1%}) | {row['width']:.4f} | "
                  f"{row['matched']:.0f} | {row['reached']:.0%} | "
                  f"{row['normal_covered']}/{args.seeds} "
                  f"({row['normal_covered'] / args.seeds:.1%}) | "
                  f"{time.perf_counter() - began:.0f} |", flush=True)


if __name__ == "__main__":
    main()
