"""Two-tower training throughput: in process, and on Ray Train with 1 and 2 workers.

Usage:
    python benchmarks/two_tower_throughput.py [--data DIR] [--epochs 3]

Default data: benchmarks/out/ml-latest-small (run benchmarks/baselines.py once to
import it). Throughput is examples per second over the training epochs, as
measured inside the training loop (Ray's start-up is reported separately as the
wall time around it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from models.candidates.base import TrainingData
from models.data.dataset import read_dataset
from models.evaluation.compare import aligned_items
from models.evaluation.split import per_user_temporal
from models.text_embeddings import TextEmbedder
from models.two_tower.generator import TwoTowerGenerator
from models.two_tower.train import TwoTowerConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("benchmarks/out/ml-latest-small"))
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    dataset = read_dataset(args.data)
    split = per_user_temporal(dataset.events, dataset.items["item_id"])
    data = TrainingData(split.train_matrix(), split.train_events,
                        aligned_items(split, dataset.items), split.users.ids)
    embedder = TextEmbedder(cache_dir=args.data / "cache")
    rows = []
    for workers in (0, 1, 2):
        began = time.perf_counter()
        model = TwoTowerGenerator(TwoTowerConfig(epochs=args.epochs), workers=workers,
                                  embedder=embedder).fit(data)
        wall = time.perf_counter() - began
        m = model.metrics
        rows.append((workers, m["examples"], m["examples_per_s"], m["seconds"], wall))
        print(f"workers={workers}: {m['examples_per_s']:,.0f} examples/s, training "
              f"{m['seconds']:.1f} s, wall {wall:.1f} s", flush=True)
    print("\n| setup | examples | examples/s | training s | wall s (incl. start-up) |")
    print("|---|---|---|---|---|")
    for workers, examples, rate, seconds, wall in rows:
        setup = "in process" if workers == 0 else f"Ray Train, {workers} worker(s)"
        print(f"| {setup} | {examples:,} | {rate:,.0f} | {seconds:.1f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
