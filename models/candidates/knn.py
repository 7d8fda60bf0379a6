"""Neighbourhood collaborative filtering: item-based and user-based cosine with shrinkage."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.candidates.base import CandidateGenerator, HistoryScorer, TrainingData


def cosine_neighbours(matrix: sp.csr_matrix, shrink: float, neighbours: int,
                      block: int = 1024) -> sp.csr_matrix:
    """Row-by-row cosine similarity between the rows of `matrix` with shrinkage
    (co-counts / (|a||b| + shrink)), keeping the `neighbours` best per row.

    The co-counts stay sparse: a block's cost is its rows' co-occurring pairs, not
    rows x all rows, so a catalog ten times larger with the same events costs about
    the same (a dense block made this quadratic in the catalog)."""
    matrix = matrix.tocsr().astype(np.float32)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    n = matrix.shape[0]
    keep = min(neighbours, n - 1) if n > 1 else 0
    rows, cols, vals = [], [], []
    transposed = matrix.T.tocsc()
    for start in range(0, n if keep else 0, block):
        stop = min(start + block, n)
        co = (matrix[start:stop] @ transposed).tocoo()
        row = co.row.astype(np.int64) + start
        sim = co.data / (norms[row] * norms[co.col] + shrink + 1e-9)
        useful = (sim > 0) & (row != co.col)  # no self-similarity
        row, col, sim = row[useful], co.col[useful].astype(np.int64), sim[useful]
        # Per row, best first (rows stay in order: sim is in (0, 1], so the key's
        # fraction never reaches the next row; ties keep the column order).
        order = np.argsort(row + 0.5 * (1.0 - sim.astype(np.float64)), kind="stable")
        row, col, sim = row[order], col[order], sim[order]
        first = np.searchsorted(row, row, side="left")
        best = np.arange(len(row)) - first < keep
        rows.append(row[best])
        cols.append(col[best])
        vals.append(sim[best])
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, n), dtype=np.float32)


class ItemKNN(HistoryScorer):
    """score(u, i) = sum over the user's items j of sim(j, i)."""

    name = "item_knn"
    reason = "similar to items you interacted with"
    signal = "collaborative"
    candidates = 35
    baseline = True
    params = ("shrink", "neighbours")
    fitted = ("similarity",)

    def __init__(self, shrink: float = 10.0, neighbours: int = 100) -> None:
        self.shrink = shrink
        self.neighbours = neighbours

    def fit(self, data: TrainingData) -> ItemKNN:
        self.user_items = data.matrix.tocsr()
        self.similarity = cosine_neighbours(data.matrix.T.tocsr(), self.shrink,
                                            self.neighbours)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.score_history(self.user_items[users])

    def score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return np.asarray((history @ self.similarity).todense(), dtype=np.float32)

    def score_row(self, columns: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
        """The similarity rows of the row's items, weighted and summed, read from the
        CSR arrays (a few thousand entries) rather than by a sparse product."""
        sim = self.similarity
        starts, ends = sim.indptr[columns], sim.indptr[np.asarray(columns) + 1]
        lengths = ends - starts
        entries = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(
            lengths.sum())
        weights = sim.data[entries] * np.repeat(np.asarray(values, np.float32), lengths)
        return np.bincount(sim.indices[entries], weights=weights, minlength=n).astype(
            np.float32)

    def catalog_size(self) -> int:
        return int(self.similarity.shape[0])

    def similar_to(self, column: int) -> np.ndarray:
        return np.asarray(self.similarity[column].toarray()).ravel()

    def similar_items(self, items: np.ndarray) -> sp.csr_matrix:
        return self.similarity[items]


class UserKNN(CandidateGenerator):
    """score(u, i) = sum over the user's neighbours v of sim(u, v) * x(v, i)."""

    name = "user_knn"

    def __init__(self, shrink: float = 10.0, neighbours: int = 50) -> None:
        self.shrink = shrink
        self.neighbours = neighbours

    def fit(self, data: TrainingData) -> UserKNN:
        self.user_items = data.matrix.tocsr()
        self.similarity = cosine_neighbours(self.user_items, self.shrink, self.neighbours)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self.similarity[users] @ self.user_items).todense(),
                          dtype=np.float32)
