"""The user x item interaction matrix that candidate generators train on.

String IDs map to internal row/column indices here and only here; every
public result is translated back to the verbatim IDs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from contracts.event_types import TASTE_TYPES


@dataclass(frozen=True)
class Index:
    """A fixed, sorted vocabulary of IDs with O(1) lookups both ways."""

    ids: np.ndarray

    @classmethod
    def of(cls, ids: pd.Series | np.ndarray | list[str]) -> Index:
        return cls(np.array(sorted(set(map(str, ids))), dtype=object))

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, ids: pd.Series | np.ndarray) -> np.ndarray:
        """Index of each ID, -1 for IDs outside the vocabulary."""
        lookup = pd.Index(self.ids)
        return lookup.get_indexer(pd.Index(np.asarray(ids, dtype=object)))


def positive_pairs(events: pd.DataFrame) -> pd.DataFrame:
    """Distinct (user_id, item_id) positives with the time of the first interaction; a
    positive is an event of a type that says something about taste
    (contracts/event_types.py)."""
    acted = events[events["event_type"].isin(TASTE_TYPES) & events["item_id"].notna()]
    return (acted.groupby(["user_id", "item_id"], sort=False)["timestamp"].min()
            .reset_index())


def to_matrix(pairs: pd.DataFrame, users: Index, items: Index) -> sp.csr_matrix:
    """Binary CSR (users x items) from (user_id, item_id) pairs; unknown IDs are dropped."""
    rows = users.positions(pairs["user_id"])
    cols = items.positions(pairs["item_id"])
    keep = (rows >= 0) & (cols >= 0)
    data = np.ones(int(keep.sum()), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows[keep], cols[keep])), shape=(len(users), len(items)))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix
