"""Training examples for the two-tower model, built without looking ahead.

Each positive (user, item, time) becomes one example whose user side is the
user's history *before* that time, so the model learns to predict the next
item from the past, exactly as it is used at serving time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.evaluation.compare import category_vectors
from models.interactions import positive_pairs

HISTORY = 20
PAD = 0  # item and user index 0 mean "none/unknown"; real ids start at 1


@dataclass(frozen=True)
class Examples:
    users: np.ndarray  # (n,) user index (1-based, 0 = unknown)
    history: np.ndarray  # (n, HISTORY) item indices before the positive, newest first
    items: np.ndarray  # (n,) the positive item index (1-based)

    def __len__(self) -> int:
        return len(self.items)


def histories(pairs: pd.DataFrame, item_pos: pd.Index, user_pos: pd.Index
              ) -> tuple[Examples, dict[str, np.ndarray]]:
    """Examples from time-ordered (user_id, item_id, timestamp) positives, and each
    user's final history (for computing their embedding after training)."""
    ordered = pairs.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    items = item_pos.get_indexer(ordered["item_id"]) + 1
    users = user_pos.get_indexer(ordered["user_id"]) + 1
    history = np.zeros((len(ordered), HISTORY), dtype=np.int64)
    final: dict[str, np.ndarray] = {}
    recent: list[int] = []
    last_user: object = None
    for row, (user_id, item) in enumerate(zip(ordered["user_id"], items, strict=True)):
        if user_id != last_user:
            if last_user is not None:
                final[str(last_user)] = np.array(recent[:HISTORY], dtype=np.int64)
            recent, last_user = [], user_id
        history[row, : min(len(recent), HISTORY)] = recent[:HISTORY]
        recent.insert(0, int(item))
    if last_user is not None:
        final[str(last_user)] = np.array(recent[:HISTORY], dtype=np.int64)
    return Examples(users.astype(np.int64), history, items.astype(np.int64)), final


def pad_history(history: np.ndarray) -> np.ndarray:
    out = np.zeros(HISTORY, dtype=np.int64)
    out[: len(history)] = history[:HISTORY]
    return out


def item_features(items: pd.DataFrame, text: np.ndarray | None) -> np.ndarray:
    """(items + 1, features): category multi-hot, log price, scaled year and the text
    embedding; row 0 is the padding item (all zeros)."""
    cats = category_vectors(items)
    price = np.log1p(items["price"].fillna(0.0).to_numpy(dtype=np.float32))[:, None]
    year = items["year"].astype("Float64").fillna(2000.0).to_numpy(dtype=np.float32)
    year = ((year - 2000.0) / 20.0)[:, None]
    parts = [cats, price / max(float(price.max()), 1.0), year]
    if text is not None:
        parts.append(text.astype(np.float32))
    features = np.hstack(parts).astype(np.float32)
    return np.vstack([np.zeros((1, features.shape[1]), np.float32), features])


def training_examples(events: pd.DataFrame, items: pd.DataFrame, user_ids: np.ndarray
                      ) -> tuple[Examples, dict[str, np.ndarray], np.ndarray]:
    """Examples, final histories, and each item's share of positives (for log-Q)."""
    pairs = positive_pairs(events)
    item_pos = pd.Index(items["item_id"])
    examples, final = histories(pairs, item_pos, pd.Index(user_ids))
    counts = np.bincount(examples.items, minlength=len(items) + 1).astype(np.float64)
    sampling = (counts + 1.0) / (counts + 1.0).sum()
    return examples, final, sampling.astype(np.float32)
