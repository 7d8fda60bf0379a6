"""What every candidate generator offers, and top-k selection with seen items excluded."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

SCORE_CHUNK = 1024  # users scored per dense block: 1024 x 10k items x 4 B = 40 MB


@dataclass(frozen=True)
class TrainingData:
    """What a generator may learn from: the interaction matrix (users x items, on the
    split's index), the training events, the catalog aligned with the columns and the
    user ids of the rows."""

    matrix: sp.csr_matrix
    events: pd.DataFrame
    items: pd.DataFrame  # one row per column of `matrix`, in order
    user_ids: np.ndarray  # one id per row of `matrix`, in order

    @property
    def now(self) -> pd.Timestamp:
        return pd.Timestamp(self.events["timestamp"].max())


class CandidateGenerator(ABC):
    name: str = "generator"

    @abstractmethod
    def fit(self, data: TrainingData) -> CandidateGenerator:
        """Learn from `data`; returns self."""

    @abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """Dense (len(users), items) float32 scores; higher is better."""

    def embedding(self) -> np.ndarray | None:
        """(items, d) item vectors in the catalog's column order, where the source has
        them (two-tower, content similarity): similar items, diversity and ANN indexes
        use them. None for the others."""
        return None

    def recommend(self, users: np.ndarray, k: int, seen: sp.csr_matrix | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores per user, excluding `seen` items."""
        ids, scores = [], []
        for block in chunks(users):
            block_scores = self.score(block)
            if seen is not None:
                exclude(block_scores, seen[block])
            top_ids, top_scores = top_k(block_scores, k)
            ids.append(top_ids)
            scores.append(top_scores)
        return np.vstack(ids), np.vstack(scores)


def embedding_of(generator: CandidateGenerator) -> np.ndarray:
    """The item vectors of a source that must have them."""
    vectors = generator.embedding()
    if vectors is None:
        raise TypeError(f"the {generator.name} source has no item vectors")
    return vectors


class HistoryScorer(ABC):
    """A generator that can score someone it has not seen in training, from their
    interactions alone: what serving needs for fresh events, new sessions and new users.
    `history` is a sparse (n, items) matrix over the training catalog's columns whose
    values weigh each interaction (1 for a plain interaction).

    It saves what scoring needs as plain files (`.npy`, `.npz`, `params.json`), no
    pickles: `params` are its constructor arguments, `fitted` the arrays, sparse
    matrices and numbers that `fit` learned. A loaded one scores histories; methods
    that take training-user rows need the training matrix, which is not saved."""

    params: tuple[str, ...] = ()
    fitted: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()  # fitted names that versions saved before them lack

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        numbers = {}
        for name in self.fitted:
            value = getattr(self, name)
            if sp.issparse(value):
                sp.save_npz(directory / f"{name}.npz", value.tocsr())
            elif isinstance(value, np.ndarray):
                np.save(directory / f"{name}.npy", value)
            else:
                numbers[name] = value
        (directory / "params.json").write_text(json.dumps({
            "class": type(self).__name__,
            "params": {name: getattr(self, name) for name in self.params},
            "fitted": numbers}))

    @classmethod
    def load(cls, directory: Path) -> Self:
        meta = json.loads((directory / "params.json").read_text())
        if meta["class"] != cls.__name__:
            raise ValueError(f"{directory} holds a {meta['class']}, not a {cls.__name__}")
        loaded = cls(**meta["params"])
        for name in cls.fitted:
            if name in meta["fitted"]:
                setattr(loaded, name, meta["fitted"][name])
            elif (directory / f"{name}.npz").exists():
                setattr(loaded, name, sp.load_npz(directory / f"{name}.npz").tocsr())
            elif name in cls.optional and not (directory / f"{name}.npy").exists():
                setattr(loaded, name, None)
            else:
                setattr(loaded, name, np.load(directory / f"{name}.npy"))
        return loaded

    @abstractmethod
    def score_history(self, history: sp.csr_matrix) -> np.ndarray:
        """Dense (n, items) float32 scores; higher is better."""

    def recommend_history(self, history: sp.csr_matrix, k: int,
                          seen: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores per row of `history`, excluding `seen` items
        (rows aligned with `history`), as `recommend` does for training users."""
        scores = self.score_history(history)
        if seen is not None:
            exclude(scores, seen)
        return top_k(scores, k)

    def score_row(self, columns: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
        """(n,) float32 scores of one history row, given as its distinct item columns
        (ascending) and their values: `score_history` of that row. A served request
        scores one row, where building a scipy matrix costs more than the arithmetic,
        so generators override this where a direct form is cheap."""
        row = sp.csr_matrix((values, columns, np.array([0, len(columns)])), shape=(1, n))
        return self.score_history(row)[0]

    def recommend_row(self, columns: np.ndarray, values: np.ndarray, n: int, k: int,
                      seen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`recommend_history` of one row (see `score_row`): (k,) item columns and
        scores, best first, `seen` columns left out, -1 pads."""
        return top_k_row(self.score_row(columns, values, n), k, seen)


def chunks(users: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(users), SCORE_CHUNK):
        yield users[start:start + SCORE_CHUNK]


def exclude(scores: np.ndarray, seen: sp.csr_matrix) -> None:
    """Set the scores of seen items to -inf, in place."""
    if sp.isspmatrix_csr(seen):  # CSR's own arrays: no COO copy (served one row a time)
        rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
        stored = seen.data != 0  # as nonzero(): explicit zeros are not seen
        scores[rows[stored], seen.indices[stored]] = -np.inf
        return
    rows, cols = seen.nonzero()
    scores[rows, cols] = -np.inf


def top_k_row(scores: np.ndarray, k: int, seen: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` of one (n,) score vector, the `seen` columns left out (set to -inf in
    place): (k,) columns and scores."""
    if seen is not None:
        scores[seen] = -np.inf
    ids, values = top_k(scores[None], k)
    return ids[0], values[0]


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k best scores per row, best first; -1 where fewer
    than k items have a finite score."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1)
    values = np.take_along_axis(part_scores, order, axis=1)
    ids = np.where(np.isfinite(values), ids, -1)
    return ids, values
