"""Content similarity: items described by text embeddings and categories.

A user's profile is the recency-weighted mean of the vectors of items they
interacted with; an item's score is its cosine with that profile. Items need
no interactions to be scored, so new items reach users from day one.

The text embeddings are projected onto their catalog's top `text_dims` singular
directions (a truncated SVD, uncentred: it keeps inner products, which is what
cosines are made of). Serving scores every item against a profile per request, and
that product reads the whole matrix: 404 dimensions on a 10k-item catalog were
16 MB, 1.2-1.8 ms of a request from a cold cache; 128 text dimensions keep 97% of
the embeddings' energy, and 98% of a 20-item profile's top 50 (measured on the
load test's catalog). Catalogs under `project_from` items keep every dimension: their
matrix is small anyway, and a 200-item catalog has too few items for 128 directions
to hold what separates them (the test world's two-stage gt-NDCG@10 fell from 1.24x
popularity's to 1.14x).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.candidates.base import (
    HistoryScorer,
    Row,
    SourceBuild,
    TrainingData,
    UserHistory,
    closest,
    matrix_row,
)
from models.evaluation.compare import category_vectors
from models.text_embeddings import TextEmbedder, item_text
from models.two_tower.ann import AnnConfig, ItemIndex, source_index
from models.vectors import unit_rows


class ContentSimilarity(HistoryScorer):
    params = ("category_weight", "half_life_days", "text_dims", "project_from")
    fitted = ("vectors", "text_basis")
    optional = ("text_basis",)  # versions saved before it kept every text dimension
    name = "content"
    reason = "like items you interacted with"
    signal = "content"
    candidates = 35

    def __init__(self, embedder: TextEmbedder | None = None, category_weight: float = 0.5,
                 half_life_days: float = 90.0, text_dims: int | None = 128,
                 project_from: int = 2_000, ann: AnnConfig | None = None) -> None:
        """`text_dims`: None keeps the embedder's every dimension, as does a catalog of
        fewer than `project_from` items; `ann`: the item index's settings (saved with
        the index, not among `params`)."""
        self.ann = ann or AnnConfig()
        self._index: ItemIndex | None = None
        self._saved_in: Path | None = None  # a loaded version's directory
        self._search = False
        self.embedder = embedder or TextEmbedder()
        self.category_weight = category_weight
        self.half_life_days = half_life_days
        self.text_dims = text_dims
        self.project_from = project_from
        self.text_basis: np.ndarray | None = None  # (embedding dims, kept dims), from fit

    @classmethod
    def create(cls, build: SourceBuild) -> ContentSimilarity:
        return cls(build.embedder, ann=build.config.ann)

    def item_vectors(self, items: pd.DataFrame) -> np.ndarray:
        return self._vectors(self.embedder.encode(item_text(items)), items)

    def _vectors(self, text: np.ndarray, items: pd.DataFrame) -> np.ndarray:
        if self.text_basis is not None:
            text = text @ self.text_basis
        cats = unit_rows(category_vectors(items))
        return unit_rows(np.hstack([text, self.category_weight * cats])).astype(np.float32)

    def fit(self, data: TrainingData) -> ContentSimilarity:
        self._index, self._saved_in = None, None
        text = self.embedder.encode(item_text(data.items))
        self.text_basis = (None if self.text_dims is None or len(text) < self.project_from
                           else text_basis(text, self.text_dims))
        self.vectors = self._vectors(text, data.items)
        self.profiles = self._profiles(self.decayed_history(data))
        return self

    def embedding(self) -> np.ndarray:
        return self.vectors  # unit length

    def decayed_history(self, data: TrainingData) -> sp.csr_matrix:
        """(users, items) weights: each interaction counts 0.5 ** (age / half-life)."""
        events = data.events[data.events["item_id"].notna()]
        columns = pd.Index(data.items["item_id"]).get_indexer(events["item_id"])
        rows = pd.Index(data.user_ids).get_indexer(events["user_id"])
        age = (data.now - events["timestamp"]) / pd.Timedelta(days=1)
        weights = self.decay(age.to_numpy())
        keep = (columns >= 0) & (rows >= 0)
        return sp.csr_matrix((weights[keep], (rows[keep], columns[keep])),
                             shape=(len(data.user_ids), len(data.items)))

    def decay(self, age_days: np.ndarray) -> np.ndarray:
        """The weight of an interaction this many days old: 0.5 ** (age / half-life)."""
        return np.power(0.5, age_days / self.half_life_days)

    def profile_row(self, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The unit-length profile of one history row given as its columns and weights
        (see `HistoryScorer.score_row`): an ANN index's query."""
        profile = np.asarray(values, np.float64) @ self._vectors64()[columns]
        return unit_rows(profile[None]).astype(np.float32)[0]

    def _profiles(self, history: sp.csr_matrix) -> np.ndarray:
        """Unit-length weighted sums of the item vectors in each row's history."""
        profiles = np.asarray(history @ self._vectors64())
        return unit_rows(profiles).astype(np.float32)

    def _vectors64(self) -> np.ndarray:
        """The vectors in float64, converted once: a fresh copy per call was 6 ms of
        each served request on a 10k-item catalog (not saved: `fitted` lists what is)."""
        cached = getattr(self, "_cached64", None)
        if cached is None or cached[0] is not self.vectors:
            cached = (self.vectors, self.vectors.astype(np.float64))
            self._cached64 = cached
        return cached[1]

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.profiles[users] @ self.vectors.T

    def score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return self._profiles(history) @ self.vectors.T

    def catalog_size(self) -> int:
        return len(self.vectors)

    def prepare(self, training: TrainingData, search: bool) -> None:
        """Each training user's decayed weights, and the ANN index when serving searches
        (the version's, read back; built here for versions saved without one). A
        process that does not search never reads the graph (83 MB at 100k items)."""
        self._weights = self.decayed_history(training)
        self._trained_until_ns = pd.Timestamp(training.now).value
        self._search = search
        if search:
            self._graph()

    def search_index(self) -> ItemIndex | None:
        return self._index if self._search else None

    def _graph(self) -> ItemIndex:
        if self._index is None:
            self._index = source_index(self.vectors, self.ann, self._saved_in)
        return self._index

    def save(self, directory: Path) -> None:
        """The fitted arrays, and the ANN index built once here rather than in every
        serving replica at start-up (about 3 s for 10k items, 15 s for 100k:
        benchmarks/ann_recall.py)."""
        super().save(directory)
        self._graph().save(directory, vectors=False)

    @classmethod
    def load(cls, directory: Path) -> ContentSimilarity:
        loaded = super().load(directory)
        loaded._saved_in = directory
        return loaded

    def retrieve(self, user: UserHistory, n: int, seen: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray]:
        history = self._served_row(user)
        return closest(self.vectors, self.search_index(),
                       self.profile_row(history.columns, history.values), n, seen)

    def _served_row(self, user: UserHistory) -> Row:
        """Training weights aged to the request, fresh items at full weight."""
        if user.row >= 0:
            age = (user.at.value - self._trained_until_ns) / 86_400e9
            trained = matrix_row(self._weights, user.row)
            columns = trained.columns
            weights = trained.values * float(self.decay(np.array([age]))[0])
            known = user.trained.columns
        else:
            columns, weights, known = np.zeros(0, np.int32), np.zeros(0), np.zeros(0, np.int32)
        # Only items the training history lacks: the real-time view's recent items
        # overlap training, and a training item must not count twice.
        new = np.unique(np.asarray(user.fresh, np.int64))  # setdiff1d, with a table for isin
        new = new[~np.isin(new, known, kind="table")] if len(new) else new
        if not len(new):
            return Row(columns, weights)
        # A new item the content row holds adds to its weight.
        columns, where = np.unique(np.concatenate([columns, new]), return_inverse=True)
        return Row(columns, np.bincount(where, np.concatenate([weights, np.ones(len(new))]),
                                        len(columns)))

    def similar_to(self, column: int) -> np.ndarray:
        return self.vectors @ self.vectors[column]  # unit vectors: cosines

    def similar(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims = self.vectors @ self.vectors[item]
        sims[item] = -np.inf
        order = np.argsort(-sims)[:k]
        return order, sims[order]


def text_basis(text: np.ndarray, dims: int) -> np.ndarray | None:
    """The top `dims` right singular vectors of the (items, dims) text embeddings, as
    columns; None when that keeps every dimension anyway."""
    if dims >= text.shape[1]:
        return None
    _, _, directions = np.linalg.svd(np.asarray(text, np.float64), full_matrices=False)
    return directions[:dims].T.astype(np.float32)
