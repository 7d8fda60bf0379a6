"""EASE (Steck, 2019): a closed-form linear item-item model, a strong baseline.

B = I - P / diag(P) with P = (X^T X + lambda I)^-1 and zero diagonal. The
inverse is cubic in the number of items, so the model is fitted on the
`max_items` most popular items; the rest score 0 (they can still come from
other generators).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from models.candidates.base import HistoryScorer, SourceBuild, TrainingData


class EASE(HistoryScorer):
    params = ("l2", "max_items")
    fitted = ("columns", "weights", "n_items")
    name = "ease"
    reason = "often chosen with items you like"
    candidates = 70
    baseline = True

    def __init__(self, l2: float = 500.0, max_items: int = 4000) -> None:
        self.l2 = l2
        self.max_items = max_items

    @classmethod
    def create(cls, build: SourceBuild) -> EASE:
        return cls(l2=build.config.ease_l2)

    def catalog_size(self) -> int:
        return int(self.n_items)

    def fit(self, data: TrainingData) -> EASE:
        counts = np.asarray(data.matrix.sum(axis=0)).ravel()
        ranked = np.argsort(-counts, kind="stable")
        self.columns = np.sort(ranked[: min(self.max_items, int((counts > 0).sum()))])
        x = data.matrix[:, self.columns].astype(np.float64)
        gram = (x.T @ x).toarray()
        gram[np.diag_indices_from(gram)] += self.l2
        p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        b = p / (-np.diag(p))
        b[np.diag_indices_from(b)] = 0.0
        self.weights = b.astype(np.float32)
        self.user_items = data.matrix.tocsr()
        self.n_items = data.matrix.shape[1]
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.score_history(self.user_items[users])

    def score_history(self, history: sp.csr_matrix) -> np.ndarray:
        if not self.weights.flags.c_contiguous:
            # scipy's sparse @ dense copies a Fortran-ordered right side on every call
            # (64 MB at 4,000 items, ~20 ms per one-user request); once is enough.
            self.weights = np.ascontiguousarray(self.weights)
        out = np.zeros((history.shape[0], self.n_items), dtype=np.float32)
        out[:, self.columns] = history[:, self.columns] @ self.weights
        return out

    def score_row(self, columns: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
        """The weights' rows of the row's fitted items, summed: no sparse slicing."""
        at = np.searchsorted(self.columns, columns)
        fitted = at < len(self.columns)
        fitted[fitted] = self.columns[at[fitted]] == columns[fitted]
        out = np.zeros(n, dtype=np.float32)
        out[self.columns] = np.asarray(values, np.float32)[fitted] @ self.weights[at[fitted]]
        return out
