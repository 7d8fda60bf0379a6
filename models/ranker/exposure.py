"""Trading some accuracy for wider exposure, with the trade chosen on held-out users.

Final score of a candidate = z(ranker score)
                             + affinity x z(two-tower affinity)
                             - popularity x the item's standardised log popularity,
with z() standardising within each user's candidate list. The two-tower is
trained with log-Q correction, so its affinity carries the user's taste with
the popularity bias taken out; the penalty moves exposure further toward the
long tail.

The pair (affinity, popularity) is chosen on calibration users (P2, scored by
rankers that did not train on them), against the product's two targets: among
the settings whose NDCG@10 is at least a floor (a multiple of the best
baseline's NDCG@10 on the same users), the most accurate one whose catalog
coverage@10 reaches the coverage target; when none reaches it, the one with
the widest coverage; when no setting clears the floor, the most accurate.
The test period is never used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.evaluation import metrics

AFFINITY_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 3.0)
POPULARITY_WEIGHTS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.25, 1.5)


@dataclass(frozen=True)
class Blend:
    affinity: float = 0.0
    popularity: float = 0.0


def popularity_z(popularity: np.ndarray) -> np.ndarray:
    """Standardised log(1 + interactions) per item, over the whole catalog."""
    logs = np.log1p(popularity.astype(np.float64))
    return ((logs - logs.mean()) / (logs.std() or 1.0)).astype(np.float32)


def standardise(scores: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Scores as z-scores within each user's rows (0 where a user's scores are all equal)."""
    frame = pd.DataFrame({"user": users, "score": scores.astype(np.float64)})
    grouped = frame.groupby("user")["score"]
    spread = grouped.transform("std").fillna(1.0).replace(0.0, 1.0)
    return ((frame["score"] - grouped.transform("mean")) / spread).to_numpy()


def blend_scores(ranker: np.ndarray, affinity: np.ndarray, users: np.ndarray,
                 item_pop_z: np.ndarray, blend: Blend) -> np.ndarray:
    """`item_pop_z` is popularity_z of each row's item."""
    out = standardise(ranker, users) - blend.popularity * item_pop_z
    if blend.affinity:
        out = out + blend.affinity * standardise(affinity, users)
    return out.astype(np.float32)


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


def calibrate(users: np.ndarray, items: np.ndarray, ranker: np.ndarray, affinity: np.ndarray,
              relevant: sp.csr_matrix, pop_z: np.ndarray, floor_ndcg: float,
              coverage_target: float,
              affinity_weights: Sequence[float] = AFFINITY_WEIGHTS,
              popularity_weights: Sequence[float] = POPULARITY_WEIGHTS, k: int = 10
              ) -> tuple[Blend, pd.DataFrame]:
    """Choose the blend on calibration users; returns it and the table of every setting
    tried. `relevant` is indexed by matrix row (user index)."""
    order = np.unique(users)
    rows = []
    for a in affinity_weights:
        for w in popularity_weights:
            blend = Blend(a, w)
            lists, _ = top_lists(users, items,
                                 blend_scores(ranker, affinity, users, pop_z[items], blend),
                                 order, k)
            rows.append({"affinity": a, "popularity": w,
                         f"ndcg@{k}": metrics.ndcg_at_k(lists, relevant[order], k),
                         f"coverage@{k}": metrics.catalog_coverage(lists, relevant.shape[1])})
    table = pd.DataFrame(rows)
    ndcg = table[f"ndcg@{k}"]
    cleared = table[ndcg >= floor_ndcg]
    if cleared.empty:
        chosen = table.loc[ndcg.idxmax()]
    elif (cleared[f"coverage@{k}"] >= coverage_target).any():
        wide = cleared[cleared[f"coverage@{k}"] >= coverage_target]
        chosen = wide.loc[wide[f"ndcg@{k}"].idxmax()]
    else:
        chosen = cleared.loc[cleared[f"coverage@{k}"].idxmax()]
    table["chosen"] = (table["affinity"] == chosen["affinity"]) & (
        table["popularity"] == chosen["popularity"])
    return Blend(float(chosen["affinity"]), float(chosen["popularity"])), table
