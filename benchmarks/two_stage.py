"""Issue 3's targets for the two-stage model, measured as a new user runs it.

Usage:
    python benchmarks/two_stage.py [--movielens DIR] [--samples] [--plot OUT.png]
        [--config PIPELINE.yaml]

Imports MovieLens into a fresh directory (no features, empty embedding cache),
times `recstack data import` + `recstack train` end to end, and reads the
figures back from the registry manifest: NDCG@10 against the best baseline's in
the same run (target >= 1.05x), coverage@10 (target >= 0.25), recall@20, and
wall time (target <= 3 minutes).

With --samples it also trains on three samples of the same file that the
settings were never chosen on (each user's hash parity, and ratings before
2010), as a check that the calibration generalises. Coverage@10 there is not
held to 0.25: with half the users there are half the slots to cover the same
catalog with.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from models.ranker.exposure import user_hash
from stores.registry import Registry

OUT = Path("benchmarks/out/two_stage")
RECSTACK = str(Path(sys.executable).with_name("recstack"))
BASELINES = ("ease", "item_knn", "als", "popularity")  # the sources are not baselines


def _run(*args: str) -> float:
    began = time.perf_counter()
    subprocess.run([RECSTACK, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def _samples(source: Path) -> dict[str, Path]:
    """MovieLens-format copies of `source` holding part of its ratings."""
    ratings = pd.read_csv(source / "ratings.csv")
    tags = pd.read_csv(source / "tags.csv")
    parity = user_hash(ratings["userId"].to_numpy()) % 2
    parts = {"users with even id hash": ratings[parity == 0],
             "users with odd id hash": ratings[parity == 1],
             "ratings before 2010": ratings[ratings["timestamp"]
                                            < pd.Timestamp("2010-01-01").timestamp()]}
    out = {}
    for name, part in parts.items():
        folder = OUT / "samples" / name.replace(" ", "-")
        folder.mkdir(parents=True, exist_ok=True)
        part.to_csv(folder / "ratings.csv", index=False)
        tags[tags["userId"].isin(part["userId"])].to_csv(folder / "tags.csv", index=False)
        for name_ in ("movies.csv", "links.csv"):
            if (source / name_).exists():
                shutil.copy(source / name_, folder)
        out[name] = folder
    return out


def measure(name: str, source: Path, config: Path | None = None) -> dict[str, object]:
    data, registry = OUT / "data" / name.replace(" ", "-"), OUT / "registry"
    shutil.rmtree(data, ignore_errors=True)
    print(f"{name}: import and train ...", flush=True)
    wall = _run("data", "import", "movielens", str(source), "--out", str(data))
    wall += _run("train", "--data", str(data), "--registry", str(registry),
                 *(["--config", str(config)] if config else []))
    metrics = Registry(str(registry)).resolve().metrics  # the latest version
    best = max(BASELINES, key=lambda m: metrics["baselines"][m]["ndcg@10"])
    test = metrics["test"]
    row = {"data": name, "users": len(pd.read_parquet(data / "events.parquet",
                                                       columns=["user_id"])["user_id"].unique()),
           "ndcg@10": test["ndcg@10"], "best baseline": best,
           "baseline ndcg@10": metrics["baselines"][best]["ndcg@10"],
           "ratio": test["ndcg@10"] / metrics["baselines"][best]["ndcg@10"],
           "coverage@10": test["coverage@10"], "recall@20": test["recall@20"],
           "wall s": wall}
    print("  " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in row.items()), flush=True)
    return row


def plot(table: pd.DataFrame, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.barh(table["data"], table["ratio"], color="tab:blue")
    left.axvline(1.05, linestyle="--", color="grey", label="target 1.05x")
    left.set_xlabel("NDCG@10 / best baseline's (same run)")
    left.legend(fontsize=8)
    right.barh(table["data"], table["coverage@10"], color="tab:green")
    right.axvline(0.25, linestyle="--", color="grey", label="target 0.25 (full file)")
    right.set_xlabel("catalog coverage@10")
    right.set_yticks([])
    right.legend(fontsize=8)
    fig.suptitle("Two-stage model against issue 3's targets")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--movielens", type=Path,
                        default=Path("../shared/datasets/ml-latest-small"))
    parser.add_argument("--samples", action="store_true",
                        help="Also train on three samples of the file.")
    parser.add_argument("--plot", type=Path, default=OUT / "two-stage-targets.png")
    parser.add_argument("--config", type=Path, default=None,
                        help="`recstack train --config`: a PipelineConfig file to compare")
    args = parser.parse_args()
    sources = {"ml-latest-small": args.movielens}
    if args.samples:
        sources |= _samples(args.movielens)
    table = pd.DataFrame([measure(name, source, args.config)
                          for name, source in sources.items()])
    print(table.to_markdown(index=False, floatfmt=".4f"))
    plot(table, args.plot)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
