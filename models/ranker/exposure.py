"""Trading a little accuracy for wider exposure, with the trade chosen on held-out users.

Final score = the ranker's score standardised within each user's list minus
`weight` x the item's standardised log popularity. The weight is the largest
one whose NDCG@10 on calibration users (P2 users the ranker did not train on)
stays within `tolerance` of the best weight's; the test period is never used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.evaluation import metrics

WEIGHTS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5)


def popularity_z(popularity: np.ndarray) -> np.ndarray:
    """Standardised log(1 + interactions) per item, over the whole catalog."""
    logs = np.log1p(popularity.astype(np.float64))
    return ((logs - logs.mean()) / (logs.std() or 1.0)).astype(np.float32)


def adjust(scores: np.ndarray, users: np.ndarray, items: np.ndarray,
           pop_z: np.ndarray, weight: float) -> np.ndarray:
    frame = pd.DataFrame({"user": users, "score": scores})
    grouped = frame.groupby("user")["score"]
    spread = grouped.transform("std").fillna(1.0).replace(0.0, 1.0)
    z = (frame["score"] - grouped.transform("mean")) / spread
    return (z.to_numpy() - weight * pop_z[items]).astype(np.float32)


def top_lists(users: np.ndarray, items: np.ndarray, scores: np.ndarray, order: np.ndarray,
              k: int) -> tuple[np.ndarray, np.ndarray]:
    """(len(order), k) item indices and their scores, best first, for the users in
    `order`; -1 / -inf pad users with fewer than k candidates."""
    frame = pd.DataFrame({"user": users, "item": items, "score": scores})
    frame = frame.sort_values(["user", "score"], ascending=[True, False])
    frame = frame.groupby("user").head(k)
    ids = np.full((len(order), k), -1, dtype=np.int64)
    values = np.full((len(order), k), -np.inf, dtype=np.float32)
    row_of = {u: n for n, u in enumerate(order)}
    rows = frame["user"].map(row_of).to_numpy()
    cols = frame.groupby("user").cumcount().to_numpy()
    ids[rows, cols] = frame["item"].to_numpy()
    values[rows, cols] = frame["score"].to_numpy()
    return ids, values


def calibrate(users: np.ndarray, items: np.ndarray, scores: np.ndarray,
              relevant: sp.csr_matrix, pop_z: np.ndarray, tolerance: float,
              weights: Sequence[float] = WEIGHTS, k: int = 10) -> tuple[float, pd.DataFrame]:
    """Pick the exposure weight on calibration users; returns it and the table tried.
    `relevant` is indexed by matrix row (user index)."""
    order = np.unique(users)
    rows = []
    for weight in weights:
        lists, _ = top_lists(users, items, adjust(scores, users, items, pop_z, weight),
                             order, k)
        rows.append({"weight": weight,
                     "ndcg@10": metrics.ndcg_at_k(lists, relevant[order], k),
                     "coverage@10": metrics.catalog_coverage(lists, relevant.shape[1])})
    table = pd.DataFrame(rows)
    good = table[table["ndcg@10"] >= (1.0 - tolerance) * table["ndcg@10"].max()]
    return float(good["weight"].max()), table
