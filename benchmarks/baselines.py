"""Baselines side by side on the per-user temporal split, each tuned on a validation
split carved from its training side (never on the test period).

Usage:
    python benchmarks/baselines.py [--data DIR] [--out benchmarks/out]

Without --data it runs on ../shared/datasets/ml-latest-small (imported to
OUT/ml-latest-small first) when present. Writes OUT/baselines.json and
OUT/baselines.png, and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from models.candidates.als import ALS
from models.candidates.base import CandidateGenerator
from models.candidates.content import ContentSimilarity
from models.candidates.ease import EASE
from models.candidates.knn import ItemKNN, UserKNN
from models.candidates.popularity import CategoryPopularity, Popularity
from models.data.dataset import Dataset, read_dataset
from models.evaluation.compare import compare
from models.evaluation.split import per_user_temporal
from models.evaluation.tuning import tune
from models.text_embeddings import TextEmbedder

SHARED_ML = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ml-latest-small"
SPACES: dict[str, tuple[Any, dict[str, list[Any]]]] = {
    "item_knn": (ItemKNN, {"shrink": [0.0, 10.0, 50.0], "neighbours": [50, 200]}),
    "user_knn": (UserKNN, {"shrink": [0.0, 10.0], "neighbours": [25, 100]}),
    "ease": (EASE, {"l2": [100.0, 300.0, 1000.0, 3000.0]}),
    "als": (ALS, {"factors": [32, 64, 128], "regularization": [0.01, 0.1]}),
}
SHOWN = ["ndcg@10", "recall@20", "precision@10", "map@10", "hit_rate@10", "coverage@10",
         "diversity@10", "novelty@10", "long_tail_share@10", "gini@10", "seconds"]


def load(data: Path | None, out: Path) -> tuple[str, Dataset]:
    if data is not None:
        return data.name, read_dataset(data)
    target = out / "ml-latest-small"
    if not (target / "events.parquet").exists():
        from models.data.dataset import complete_catalogs, write_dataset
        from models.data.movielens import read_movielens

        events, items, users = read_movielens(SHARED_ML)
        item_frame, user_frame = complete_catalogs(events.frame, items.frame, users.frame)
        write_dataset(target, events.frame, item_frame, user_frame, overwrite=True)
    return "ml-latest-small", read_dataset(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    name, dataset = load(args.data, args.out)
    split = per_user_temporal(dataset.events, dataset.items["item_id"])
    print(f"{name}: {len(split.train_events):,} training events, "
          f"{len(split.test_pairs):,} held-out positives for {len(split.test_users())} users",
          flush=True)

    generators: list[CandidateGenerator] = [Popularity(), Popularity(half_life_days=30.0),
                                            CategoryPopularity()]
    tuned: dict[str, dict[str, Any]] = {}
    for key, (factory, space) in SPACES.items():
        began = time.perf_counter()
        result = tune(factory, space, split, dataset.items)
        tuned[key] = result.params
        print(f"tuned {key} on validation in {time.perf_counter() - began:.1f} s: "
              f"{result.params}", flush=True)
        generators.append(factory(**result.params))
    generators.append(ContentSimilarity(TextEmbedder(cache_dir=args.out / "cache")))
    table = compare(split, dataset.items, generators,
                    on_model=lambda n, s: print(f"  {n}: {s:.1f} s", flush=True))

    (args.out / "baselines.json").write_text(json.dumps(
        {"dataset": name, "tuned": tuned, "metrics": table.to_dict(orient="index")},
        indent=1, default=float))
    plot(table, name, args.out / "baselines.png")
    print(table[SHOWN].to_markdown(floatfmt=".4f"))


def plot(table: Any, name: str, path: Path) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for ax, metric in zip(axes, ["ndcg@10", "recall@20", "coverage@10", "long_tail_share@10"],
                          strict=True):
        ordered = table[metric].sort_values()
        ax.barh(ordered.index, ordered.to_numpy(), color="#4C72B0")
        ax.set_title(metric)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"Baselines on {name}, per-user temporal split (last 20% held out)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
