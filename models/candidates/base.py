"""What every candidate generator offers, what a served one (a `CandidateSource`)
adds, and top-k selection with seen items excluded.

Training scores its own users (`score`, `recommend`); serving asks a source for one
user at a time (`retrieve`, on a `UserHistory`), and a batch of users is that, user
by user (models/served.py). models/sources.py registers the sources a version trains
and serves; models/README.md says how to add one."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    from models.two_tower.ann import ItemIndex

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


@dataclass(frozen=True)
class Row:
    """One user's history over the catalog's columns: distinct columns, ascending, and
    their weights. Served requests score one row at a time, and scipy's per-matrix
    checks cost more than the arithmetic on a row of a few dozen items."""

    columns: np.ndarray
    values: np.ndarray

    def seen(self) -> np.ndarray:
        """The columns that count as interacted with: stored and nonzero, as `exclude`
        reads a matrix."""
        return self.columns[self.values != 0]


def matrix_row(matrix: sp.csr_matrix, row: int) -> Row:
    """One row of a canonical CSR matrix (sorted, distinct columns)."""
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    return Row(matrix.indices[start:end], matrix.data[start:end])


@dataclass(frozen=True)
class UserHistory:
    """One user as a served request sees them."""

    row: int  # the user's row in the version's training users; -1 for anyone else
    trained: Row  # their training positives (empty for row -1)
    fresh: list[int]  # item columns of their interactions newer than training, newest first
    history: Row  # trained and fresh together: every item counts 1 once fresh ones exist
    at: pd.Timestamp  # the time of the request
    vector: np.ndarray  # their two-tower vector: the affinity every source's pool shares


@dataclass(frozen=True)
class SourceBuild:
    """What the pipeline hands a source's `create`: its config (models.pipeline's
    PipelineConfig, whose fields a source may read) and the shared text embedder."""

    config: Any
    embedder: Any  # models.text_embeddings.TextEmbedder
    on_epoch: Callable[[int, float], None] | None = None


class CandidateSource(CandidateGenerator):
    """A candidate generator that versions train, save and serve: the ranker pools the
    `candidates` best items of every registered source, with each one's score and rank
    as features, and a served item carries the `reason` of the sources that found it."""

    reason: str = "recommended for you"
    signal: str | None = None  # its similar-items signal (serving/similar.py), if it has one
    candidates: int = 20  # default list length pooled per user (PipelineConfig.per_source)
    baseline: bool = False  # also one of the baselines the two-stage model must beat

    def fit_metrics(self) -> dict[str, float]:
        """What fitting measured, for the version's manifest; most sources measure
        nothing."""
        return {}

    @classmethod
    def create(cls, build: SourceBuild) -> Self:
        """A new, unfitted source, configured from the pipeline's build."""
        return cls()

    @abstractmethod
    def save(self, directory: Path) -> None:
        """What scoring needs, as plain files (no pickles)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Self:
        """`save`'s inverse."""

    def prepare(self, training: TrainingData, search: bool) -> None:
        """Ready a loaded source to serve, once per version: `training` holds the version's
        training users (rows in the bundle's user order, positives, events). `search`:
        build the nearest-neighbour indexes one-user retrieval reads (a Ranker-only
        process does not retrieve)."""

    @abstractmethod
    def retrieve(self, user: UserHistory, n: int, seen: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """One user's n best item columns and their scores, best first, `seen` columns
        left out, -1 pads; after `prepare`."""

    def search_index(self) -> ItemIndex | None:
        """The ANN index this source retrieves with after `prepare(..., search=True)`;
        None for sources that search none (or when retrieval is exact)."""
        return None

    def similar_to(self, column: int) -> np.ndarray:
        """(items,) every item's similarity to this one, for sources with a `signal`
        (after `prepare`)."""
        raise NotImplementedError(f"the {self.name} source gives no similar-items signal")


def closest(vectors: np.ndarray, index: ItemIndex | None, query: np.ndarray, n: int,
            seen: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The n items of largest inner product with the query: from the ANN index when
    there is one, else exactly."""
    if index is not None and not index.exact:
        return nearest(index, query, n, seen)
    return top_k_row(vectors @ query, n, seen)


def nearest(index: ItemIndex, query: np.ndarray, n: int, seen: np.ndarray | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` of the query's inner products, from an ANN index: (n,) item columns and
    scores, best first, `seen` columns left out (the index is asked for as many more),
    -1 pads where the index returned fewer."""
    found, values = index.search(query[None], n + (0 if seen is None else len(seen)))
    found, values = found[0], values[0]
    if seen is not None and len(seen):
        keep = ~np.isin(found, seen, kind="table")  # a lookup over item columns: no sort
        found, values = found[keep], values[keep]
    ids = np.full(n, -1, np.int64)
    scores = np.full(n, -np.inf, np.float32)
    ids[:min(n, len(found))], scores[:min(n, len(found))] = found[:n], values[:n]
    return ids, scores


class HistoryScorer(CandidateSource):
    """A source that scores anyone from their interactions alone, as a sparse (n, items)
    history matrix over the training catalog's columns whose values weigh each
    interaction (1 for a plain interaction): what serving needs for fresh events, new
    sessions and new users.

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

    def retrieve(self, user: UserHistory, n: int, seen: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray]:
        return self.recommend_row(user.history.columns, user.history.values,
                                  self.catalog_size(), n, seen)

    @abstractmethod
    def catalog_size(self) -> int:
        """The number of catalog columns this source scores."""

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
