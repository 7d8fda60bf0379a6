"""One request's two-stage scoring with numpy arrays: models/scoring.py's steps, minus
the per-request DataFrames.

Loaded once per model version: each known user's positives and content weights
(built from the bundle's training events by the generators' own code), the
popularity z-scores, and where each ranker feature comes from. Per request it adds
the user's fresh items (real-time features, the session) to their history,
retrieves from every source, pools, fills the ranker's feature matrix from the
user's online row and the cached item rows, ranks and blends.
`tests/serving/test_online_scoring.py` checks it against `Scorer`, the reference.

The two sources that score the whole catalog from one vector (two-tower, content)
search an ANN index instead (models/two_tower/ann.py) on catalogs of 2,000 items or
more: the exact products read 8.4 MB of vectors per request on the 10k-item load
test, and that traffic slows the other processes on the box, not only this one.
The reference stays exact; `nearest` is tested against exact search.

One user at a time, unique slots have nobody to share with, so the list is the
blended score's order; serving-wide exposure budgets are a separate rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.bundle import Bundle
from models.candidates.base import HistoryScorer, exclude, top_k
from models.candidates.content import ContentSimilarity
from models.ranker.candidates import AFFINITY, MISSING_RANK
from models.ranker.exposure import blend_scores
from models.ranker.features import crosses
from models.scoring import Scorer
from models.two_tower.ann import ItemIndex
from models.two_tower.data import HISTORY
from serving.features import OnlineFeatureJoin
from serving.item_table import ItemRows, number
from serving.timing import Timings, stage

ITEM_VIEWS = ("item_popularity", "item_content")


@dataclass(frozen=True)
class Retrieved:
    """Each source's (item columns, scores) top list, and the user's two-tower vector;
    no lists when nothing is known about the user."""

    lists: dict[str, tuple[np.ndarray, np.ndarray]]
    vector: np.ndarray


@dataclass(frozen=True)
class Scored:
    items: np.ndarray  # item columns, best first
    scores: np.ndarray  # blended scores, same order
    sources: list[list[str]]  # the sources that retrieved each item
    degraded: bool = False  # some item features could not be read
    rows: ItemRows | None = None  # the items' feature rows, same order, for the rules


class OnlineScorer:
    def __init__(self, bundle: Bundle, retrieves: bool = True) -> None:
        """`retrieves` False: a scorer that only ranks what another retrieved (the split
        graph's Ranker), so no ANN index is built for it; retrieval still works, exact."""
        self.bundle = bundle
        assert bundle.ranker.booster is not None
        # One thread per prediction: a request ranks a few hundred rows, and with torch
        # loaded (the two-tower) XGBoost's default threading costs ~3 ms a call, 0.4 ms
        # with one thread (measured on the 10k-item benchmark version).
        bundle.ranker.booster.set_param({"nthread": 1})
        self.reference = Scorer(bundle)
        self.tower = self.reference.tower
        history = self.reference.history(bundle.events, list(bundle.user_ids))
        self.positives = history.matrix
        self.content = {name: g.decayed_history(history)
                        for name, g in bundle.generators.items()
                        if isinstance(g, ContentSimilarity)}
        # ANN indexes, by source (none: exact search): the two-tower's, saved with it;
        # content's, built here (about 3 s for 10k items), as versions carry none.
        self.indexes: dict[str, ItemIndex] = {}
        if retrieves:
            indexes = {name: ItemIndex(g.vectors)  # type: ignore[attr-defined]
                       for name, g in bundle.generators.items() if name in self.content}
            indexes[self.tower.name] = self.tower.index
            self.indexes = {name: ix for name, ix in indexes.items() if not ix.exact}
        self.trained_until = history.now
        self.users = pd.Index(bundle.user_ids)
        self.items = pd.Index(bundle.item_ids)
        # Dicts for a request's few ids: pandas' get_indexer costs ~0.3 ms a call.
        self._user_rows = {u: n for n, u in enumerate(self.users)}
        self._item_columns = {i: n for n, i in enumerate(self.items)}
        self.features = list(bundle.ranker.features)
        self.item_features = tuple(dict.fromkeys(
            [n for n in self.features if n.split("__")[0] in ITEM_VIEWS]
            + ["item_content__price", "item_content__created_ts"]))

    def score(self, user_id: str, fresh_items: Sequence[str], user_features: dict[str, Any],
              join: OnlineFeatureJoin, at: pd.Timestamp, k: int,
              include_seen: bool = False) -> Scored:
        """`fresh_items`: item ids newer than training, newest first. `user_features`:
        the user's `user_online` row (`view__feature` names)."""
        retrieved = self.retrieve(user_id, fresh_items, at, include_seen)
        return self.rank(retrieved, user_features, join, at, k)

    def retrieve(self, user_id: str, fresh_items: Sequence[str], at: pd.Timestamp,
                 include_seen: bool = False) -> Retrieved:
        """The first stage: every source's top list for this user's history."""
        row = self._user_rows.get(user_id, -1)
        fresh = [c for c in map(self._item_columns.get, fresh_items) if c is not None]
        history = self._history(row, fresh)
        if row < 0 and not history.nnz:
            return Retrieved({}, np.zeros(self.tower.item_vectors.shape[1], np.float32))
        vector = (self.tower.user_vectors[row] if row >= 0
                  else self.tower.embed_history(fresh[:HISTORY]))
        seen = None if include_seen else history
        return Retrieved(self._retrieve(row, fresh, history, vector, seen, at), vector)

    def rank(self, retrieved: Retrieved, user_features: dict[str, Any],
             join: OnlineFeatureJoin, at: pd.Timestamp, k: int,
             timings: Timings | None = None, only: np.ndarray | None = None) -> Scored:
        """The second stage: pool, features, ranker, blend; the best k. `only`: return
        just these item columns (a caller's candidates), scored alongside the retrieved
        pool so that their scores are what they would be in a recommendation."""
        pooled = [ids[ids >= 0] for ids, _ in retrieved.lists.values()]
        if only is not None:
            pooled.append(np.asarray(only, np.int64))
        if not pooled or not sum(len(p) for p in pooled):
            return Scored(np.zeros(0, np.int64), np.zeros(0, np.float32), [])
        lists, items = retrieved.lists, np.unique(np.concatenate(pooled))
        with stage(timings, "features.items"):
            rows = join.lookup(self.items[items])
        with stage(timings, "rank"):
            x, retrieved_by = self._matrix(items, lists, retrieved.vector, user_features,
                                           rows, at)
            raw = self.bundle.ranker.predict(x)
            scores = blend_scores(raw, x[:, self.features.index(AFFINITY)],
                                  np.zeros(len(items), np.int64),
                                  self.reference.pop_z[items], self.bundle.blend)
            best = np.argsort(-scores, kind="stable")
            if only is not None:
                best = best[np.isin(items[best], only)]
            best = best[:k]
        return Scored(items[best], scores[best], [retrieved_by[i] for i in best],
                      degraded=not rows.complete,
                      rows=ItemRows(rows.table, rows.slots[best], rows.complete))

    def _history(self, row: int, fresh: list[int]) -> sp.csr_matrix:
        n = len(self.items)
        base = (_row(self.positives, row) if row >= 0
                else sp.csr_matrix((1, n), dtype=np.float32))
        if not fresh:
            return base
        columns = np.union1d(base.indices, fresh)
        return _one_row(np.ones(len(columns), np.float32), columns, n)

    def _retrieve(self, row: int, fresh: list[int], history: sp.csr_matrix,
                  vector: np.ndarray, seen: sp.csr_matrix | None, at: pd.Timestamp
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        lists = {}
        for name, generator in self.bundle.generators.items():
            n = self.bundle.per_source[name]
            index = self.indexes.get(name)  # None: exact search
            if generator is self.tower:
                if index is not None:
                    ids, values = nearest(index, vector, n, seen)
                else:
                    scores = (self.tower.item_vectors @ vector)[None]
                    if seen is not None:
                        exclude(scores, seen)
                    ids, values = top_k(scores, n)
            elif name in self.content:
                assert isinstance(generator, ContentSimilarity)
                content_row = self._content_row(name, generator, row, fresh, at)
                if index is not None:
                    ids, values = nearest(index, generator.profile_of(content_row)[0], n,
                                          seen)
                else:
                    ids, values = generator.recommend_history(content_row, n, seen=seen)
            else:
                assert isinstance(generator, HistoryScorer)
                ids, values = generator.recommend_history(history, n, seen=seen)
            lists[name] = (ids[0], values[0])
        return lists

    def _content_row(self, name: str, generator: ContentSimilarity, row: int,
                     fresh: list[int], at: pd.Timestamp) -> sp.csr_matrix:
        """Training weights aged to `at`, fresh items at full weight."""
        n = len(self.items)
        if row >= 0:
            age = (at - self.trained_until) / pd.Timedelta(days=1)
            trained = _row(self.content[name], row)
            columns = trained.indices
            weights = trained.data * float(generator.decay(np.array([age]))[0])
            known = _row(self.positives, row).indices
        else:
            columns, weights, known = np.zeros(0, np.int32), np.zeros(0), np.zeros(0, np.int32)
        # Only items the training history lacks: the real-time view's recent items
        # overlap training, and a training item must not count twice.
        new = np.setdiff1d(np.asarray(fresh, np.int64), known)
        if len(new):  # a new item the content row holds adds to its weight
            columns = np.concatenate([columns, new])
            weights = np.concatenate([weights, np.ones(len(new))])
        return _one_row(weights, columns, n)

    def _matrix(self, items: np.ndarray, lists: dict[str, tuple[np.ndarray, np.ndarray]],
                vector: np.ndarray, user: dict[str, Any], rows: ItemRows,
                at: pd.Timestamp) -> tuple[np.ndarray, list[list[str]]]:
        """The ranker's feature matrix for the pooled items, in the ranker's column order,
        and the sources behind each item."""
        columns: dict[str, np.ndarray] = {}
        found = np.zeros(len(items), np.float32)
        retrieved_by: list[list[str]] = [[] for _ in items]
        for name, (ids, values) in lists.items():
            score = np.full(len(items), np.nan, np.float32)
            rank = np.full(len(items), MISSING_RANK, np.float32)
            keep = ids >= 0  # every listed id is pooled (-1 pads are not items)
            where = np.searchsorted(items, ids[keep])
            score[where] = values[keep]
            rank[where] = np.flatnonzero(keep) + 1
            columns[f"{name}_score"], columns[f"{name}_rank"] = score, rank
            found += rank < MISSING_RANK
            for position in where:
                retrieved_by[position].append(name)
        columns["n_sources"] = found
        columns[AFFINITY] = self.tower.item_vectors[items] @ vector
        values = rows.values(self.item_features)
        for n, name in enumerate(self.item_features):
            columns[name] = values[:, n]
        columns |= crosses(
            at.timestamp(), rows.field("item_content__category"),
            user.get("user_profile__top_categories"),
            user.get("user_profile__category_affinity"),
            columns["item_content__price"], number(user.get("user_profile__avg_purchase_price")),
            columns["item_content__created_ts"], one_user=True)
        x = np.empty((len(items), len(self.features)), dtype=np.float32)
        for n, name in enumerate(self.features):
            x[:, n] = columns[name] if name in columns else number(user.get(name))
        return x, retrieved_by


def nearest(index: ItemIndex, query: np.ndarray, n: int, seen: sp.csr_matrix | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` of the query's inner products, from an ANN index: (1, n) item columns
    and scores, best first, seen items left out (the index is asked for as many more),
    -1 pads where the index returned fewer."""
    skip = (seen.indices[seen.data != 0] if seen is not None and seen.nnz
            else np.zeros(0, np.int32))
    found, values = index.search(query[None], n + len(skip))
    keep = ~np.isin(found[0], skip) if len(skip) else np.ones(found.shape[1], bool)
    ids = np.full((1, n), -1, np.int64)
    scores = np.full((1, n), -np.inf, np.float32)
    kept = found[0][keep][:n]
    ids[0, :len(kept)], scores[0, :len(kept)] = kept, values[0][keep][:n]
    return ids, scores


def _row(matrix: sp.csr_matrix, row: int) -> sp.csr_matrix:
    """One row, sliced from the CSR arrays (scipy's indexing costs ~0.4 ms a row)."""
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    return sp.csr_matrix((matrix.data[start:end], matrix.indices[start:end],
                          np.array([0, end - start])), shape=(1, matrix.shape[1]))


def _one_row(values: np.ndarray, columns: np.ndarray, n: int) -> sp.csr_matrix:
    """A 1 x n CSR row; repeated columns are summed, as scipy's addition would."""
    row = sp.csr_matrix((values, np.asarray(columns, np.int32), np.array([0, len(columns)])),
                        shape=(1, n))
    row.sum_duplicates()
    return row
