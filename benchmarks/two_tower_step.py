"""The two-tower's cost per training step as the world grows, with one Adam over every
parameter (the default) and with `TwoTowerConfig.sparse_ids` (lazy Adam on the id
rows a batch reads; models/two_tower/train.py `optimizers`).

    python benchmarks/two_tower_step.py [--sizes 16000x8000,160000x50000] [--steps 30]

Random batches of 512 (users, 20 history items, positives) through the real model,
loss, backward and optimizer steps; prints ms per step for each size and mode. A
dense step touches every user's and item's row, so it grows with the world; a sparse
one only with the batch.
"""

from __future__ import annotations

import argparse
import time

import torch

from models.two_tower.data import HISTORY
from models.two_tower.model import TwoTower
from models.two_tower.train import TwoTowerConfig, optimizers

BATCH = 512
TEXT_FEATURES = 400  # about the item features' width: 384 text dimensions + categories


def ms_per_step(users: int, items: int, sparse: bool, steps: int) -> float:
    torch.manual_seed(0)
    config = TwoTowerConfig(sparse_ids=sparse)
    model = TwoTower(users, items, TEXT_FEATURES, sparse_ids=sparse)
    updates = optimizers(model, config)
    log_q = torch.zeros(items + 1)
    for step in range(steps + 3):  # three to warm up
        if step == 3:
            started = time.perf_counter()
        loss = model(torch.randint(1, users + 1, (BATCH,)),
                     torch.randint(0, items + 1, (BATCH, HISTORY)),
                     torch.randint(1, items + 1, (BATCH,)), log_q)
        for update in updates:
            update.zero_grad()
        loss.backward()
        for update in updates:
            update.step()
    return (time.perf_counter() - started) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="16000x8000,160000x50000,1000000x100000")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    print("| users x items | dense Adam ms/step | sparse ms/step |\n|---|---:|---:|")
    for size in args.sizes.split(","):
        users, items = (int(n) for n in size.split("x"))
        dense, sparse = (ms_per_step(users, items, mode, args.steps) for mode in (False, True))
        print(f"| {users:,} x {items:,} | {dense:.1f} | {sparse:.1f} |", flush=True)


if __name__ == "__main__":
    main()
