"""ANN search at catalog scale (issue 21, step 5): for a version's two indexes (the
two-tower's and content's item vectors), recall against exact search, query time,
build time and size, over hnswlib's M and ef.

    python benchmarks/ann_recall.py --version REGISTRY/versions/V
        [--m 16,32] [--ef 50,100,200,400] [--queries 500] [--seed 0]

Queries are what serving asks each index: the two-tower's are its trained users'
vectors (a random sample); content's are user profiles, the unit-length sum of a
user's item vectors, built from the version's own training events (the same
sample's last 20 items each). k is the source's pooled list length in the version
(two-tower 100, content 35 by default). Each query runs alone, as a request's
retrieval does, on one thread; "exact" is the brute-force product over every item
(what catalogs under `AnnConfig.exact_below` items use). Every graph is built here
with `AnnConfig`'s ef_construction, one thread (as training builds them), so the
build time is what a version's training pays per index.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from models.bundle import load_bundle
from models.candidates.content import ContentSimilarity
from models.two_tower.ann import AnnConfig, ItemIndex, exact_search, recall
from models.two_tower.generator import TwoTowerGenerator
from models.vectors import unit_rows

HISTORY_ITEMS = 20


def vectors_and_queries(version: Path, n: int, seed: int
                        ) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Each index's (item vectors, query vectors, k) for one sample of training users."""
    bundle = load_bundle(version)
    tower, content = bundle.generators["two_tower"], bundle.generators["content"]
    assert isinstance(tower, TwoTowerGenerator) and isinstance(content, ContentSimilarity)
    picked = np.random.default_rng(seed).permutation(len(bundle.user_ids))[:n]
    users = pd.Index(bundle.user_ids)[picked]
    events = bundle.events[bundle.events["user_id"].isin(users)
                           & bundle.events["item_id"].notna()].sort_values("timestamp")
    recent = events.groupby("user_id", sort=False)["item_id"].agg(
        lambda s: list(s.iloc[-HISTORY_ITEMS:]))
    items = pd.Index(bundle.item_ids)
    profiles = []
    for user in users:
        columns = items.get_indexer(recent.get(user, []))
        if (columns >= 0).any():
            profiles.append(content.vectors[columns[columns >= 0]].sum(axis=0))
    return {"two_tower": (tower.item_vectors, tower.user_vectors[picked],
                          bundle.per_source.get("two_tower", 100)),
            "content": (content.vectors, unit_rows(np.array(profiles)).astype(np.float32),
                        bundle.per_source.get("content", 35))}


def per_query_ms(search: object, qs: np.ndarray, k: int) -> tuple[float, float]:
    """p50 and p99 of one query at a time."""
    times = []
    for q in qs:
        began = time.perf_counter()
        search(q[None], k)  # type: ignore[operator]
        times.append((time.perf_counter() - began) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def measure(name: str, vectors: np.ndarray, qs: np.ndarray, k: int, ms: list[int],
            efs: list[int]) -> list[dict[str, float | int | str]]:
    truth, _ = exact_search(vectors, qs, k)
    exact_p50, exact_p99 = per_query_ms(lambda q, kk: exact_search(vectors, q, kk), qs, k)
    rows: list[dict[str, float | int | str]] = [
        {"index": name, "m": "exact", "ef": "-", f"recall@{k}": 1.0, "p50 ms": exact_p50,
         "p99 ms": exact_p99, "build s": 0.0, "graph MB": 0.0}]
    for m in ms:
        began = time.perf_counter()
        index = ItemIndex(vectors, AnnConfig(m=m, exact_below=0))
        build = time.perf_counter() - began
        with tempfile.TemporaryDirectory() as scratch:
            index.save(Path(scratch), vectors=False)
            size = (Path(scratch) / "items.hnsw").stat().st_size / 2**20
        for ef in efs:
            index.set_ef(ef)
            found, _ = index.search(qs, k)
            p50, p99 = per_query_ms(index.search, qs, k)
            rows.append({"index": name, "m": m, "ef": ef, f"recall@{k}": recall(found, truth),
                         "p50 ms": p50, "p99 ms": p99, "build s": build, "graph MB": size})
            print(f"  {name} m={m} ef={ef}: recall@{k} {rows[-1][f'recall@{k}']:.4f}, "
                  f"p50 {p50:.3f} ms, built in {build:.1f} s", flush=True)
    return rows


def table(rows: list[dict[str, float | int | str]]) -> str:
    keys = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = [f"{v:.4f}" if isinstance(v, float) and k.startswith("recall") else
                 f"{v:.3f}" if isinstance(v, float) and k.endswith("ms") else
                 f"{v:.1f}" if isinstance(v, float) else str(row.get(k, ""))
                 for k, v in ((k, row.get(k, "")) for k in keys)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", type=Path, required=True)
    parser.add_argument("--m", default="16,32")
    parser.add_argument("--ef", default="50,100,200,400")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ms, efs = [int(v) for v in args.m.split(",")], [int(v) for v in args.ef.split(",")]
    rows = []
    with threadpool_limits(1):  # a serving replica's one BLAS thread
        for name, (vectors, qs, k) in vectors_and_queries(args.version, args.queries,
                                                          args.seed).items():
            print(f"{name}: {len(vectors):,} items x {vectors.shape[1]} dims, "
                  f"{len(qs)} queries, k {k}", flush=True)
            rows += measure(name, vectors, qs, k, ms, efs)
    for name in ("two_tower", "content"):
        print(f"\n{name}\n\n" + table([r for r in rows if r["index"] == name]))


if __name__ == "__main__":
    main()
