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
from models.candidates.base import HistoryScorer, embedding_of, top_k_row
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

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as bytes: the split graph sends this from the Retriever to the Ranker,
        and Ray's pickler runs a Python hook for every array (11 arrays cost ~0.2 ms to
        serialize and as much to load, against ~0.05 ms as bytes)."""
        return _unpack_retrieved, (
            tuple((name, ids.tobytes(), ids.dtype.str, scores.tobytes(), scores.dtype.str)
                  for name, (ids, scores) in self.lists.items()),
            self.vector.tobytes(), self.vector.dtype.str)


def _unpack_retrieved(lists: tuple[tuple[str, bytes, str, bytes, str], ...], vector: bytes,
                      vector_dtype: str) -> Retrieved:
    """`Retrieved.__reduce__`'s inverse (read-only arrays over the bytes)."""
    return Retrieved({name: (np.frombuffer(ids, ids_dtype), np.frombuffer(scores, dtype))
                      for name, ids, ids_dtype, scores, dtype in lists},
                     np.frombuffer(vector, vector_dtype))


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
            indexes = {name: ItemIndex(embedding_of(g))
                       for name, g in bundle.generators.items() if name in self.content}
            indexes[self.tower.name] = self.tower.index
            self.indexes = {name: ix for name, ix in indexes.items() if not ix.exact}
        self._trained_until_ns = pd.Timestamp(history.now).value
        self.users = pd.Index(bundle.user_ids)
        self.items = pd.Index(bundle.item_ids)
        # Dicts for a request's few ids: pandas' get_indexer costs ~0.3 ms a call.
        self._user_rows = {u: n for n, u in enumerate(self.users)}
        self._item_columns = {i: n for n, i in enumerate(self.items)}
        self.features = list(bundle.ranker.features)
        self.item_features = tuple(dict.fromkeys(
            [n for n in self.features if n.split("__")[0] in ITEM_VIEWS]
            + ["item_content__price", "item_content__created_ts"]))
        # Where the ranker's columns come from: (its columns, the item rows' columns) for
        # item features, its columns for the user's online row, and the rest.
        view = [name.split("__")[0] if "__" in name else None for name in self.features]
        item = [n for n, v in enumerate(view) if v in ITEM_VIEWS]
        self._item_block = (np.array(item, np.int64), np.array(
            [self.item_features.index(self.features[n]) for n in item], np.int64))
        self._user_block = np.array([n for n, v in enumerate(view)
                                     if v is not None and v not in ITEM_VIEWS], np.int64)
        self._computed = [n for n, v in enumerate(view) if v is None]

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
        if row < 0 and not len(history.columns):
            return Retrieved({}, np.zeros(self.tower.item_vectors.shape[1], np.float32))
        vector = (self.tower.user_vectors[row] if row >= 0
                  else self.tower.embed_history(fresh[:HISTORY]))
        seen = None if include_seen else history.seen()
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
            rows = join.lookup(self.bundle.item_ids[items])  # numpy, not the pandas Index
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

    def _history(self, row: int, fresh: list[int]) -> Row:
        """The user's training positives, with the fresh items added (then every item
        counts 1, as the reference's fresh history does)."""
        base = (_slice(self.positives, row) if row >= 0
                else Row(np.zeros(0, np.int32), np.zeros(0, np.float32)))
        if not fresh:
            return base
        columns = np.union1d(base.columns, fresh)
        return Row(columns, np.ones(len(columns), np.float32))

    def _retrieve(self, row: int, fresh: list[int], history: Row, vector: np.ndarray,
                  seen: np.ndarray | None, at: pd.Timestamp
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        lists = {}
        for name, generator in self.bundle.generators.items():
            n = self.bundle.per_source[name]
            if generator is self.tower:
                lists[name] = self._closest(name, self.tower.item_vectors, vector, n, seen)
            elif name in self.content:
                assert isinstance(generator, ContentSimilarity)
                content = self._content_row(name, generator, row, fresh, at)
                profile = generator.profile_row(content.columns, content.values)
                lists[name] = self._closest(name, generator.vectors, profile, n, seen)
            else:
                assert isinstance(generator, HistoryScorer)
                lists[name] = generator.recommend_row(history.columns, history.values,
                                                      len(self.items), n, seen)
        return lists

    def _closest(self, name: str, vectors: np.ndarray, query: np.ndarray, n: int,
                 seen: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The n items of largest inner product with the query: from the source's ANN
        index when it has one, else exactly."""
        index = self.indexes.get(name)
        if index is not None:
            return nearest(index, query, n, seen)
        return top_k_row(vectors @ query, n, seen)

    def _content_row(self, name: str, generator: ContentSimilarity, row: int,
                     fresh: list[int], at: pd.Timestamp) -> Row:
        """Training weights aged to `at`, fresh items at full weight."""
        if row >= 0:
            age = (at.value - self._trained_until_ns) / 86_400e9
            trained = _slice(self.content[name], row)
            columns = trained.columns
            weights = trained.values * float(generator.decay(np.array([age]))[0])
            known = _slice(self.positives, row).columns
        else:
            columns, weights, known = np.zeros(0, np.int32), np.zeros(0), np.zeros(0, np.int32)
        # Only items the training history lacks: the real-time view's recent items
        # overlap training, and a training item must not count twice.
        new = np.unique(np.asarray(fresh, np.int64))  # setdiff1d, with a table for isin
        new = new[~np.isin(new, known, kind="table")] if len(new) else new
        if not len(new):
            return Row(columns, weights)
        # A new item the content row holds adds to its weight.
        columns, where = np.unique(np.concatenate([columns, new]), return_inverse=True)
        return Row(columns, np.bincount(where, np.concatenate([weights, np.ones(len(new))]),
                                        len(columns)))

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
        field = self.item_features.index
        columns |= crosses(
            at.timestamp(), rows.field("item_content__category"),
            user.get("user_profile__top_categories"),
            user.get("user_profile__category_affinity"),
            values[:, field("item_content__price")],
            number(user.get("user_profile__avg_purchase_price")),
            values[:, field("item_content__created_ts")], one_user=True)
        # Whole blocks where the columns are the item rows' and the user's own; the few
        # computed ones (sources, affinity, crosses) one by one.
        x = np.empty((len(items), len(self.features)), dtype=np.float32)
        x[:, self._item_block[0]] = values[:, self._item_block[1]]
        x[:, self._user_block] = [number(user.get(self.features[n])) for n in self._user_block]
        for n in self._computed:
            name = self.features[n]
            x[:, n] = columns[name] if name in columns else number(user.get(name))
        return x, retrieved_by


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


@dataclass(frozen=True)
class Row:
    """One user's history over the catalog's columns: distinct columns, ascending, and
    their weights. Served requests score one row at a time, and scipy's per-matrix
    checks cost more than the arithmetic on a row of a few dozen items."""

    columns: np.ndarray
    values: np.ndarray

    def seen(self) -> np.ndarray:
        """The columns that count as interacted with: stored and nonzero, as
        `models.candidates.base.exclude` reads a matrix."""
        return self.columns[self.values != 0]


def _slice(matrix: sp.csr_matrix, row: int) -> Row:
    """One row of a canonical CSR matrix (sorted, distinct columns)."""
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    return Row(matrix.indices[start:end], matrix.data[start:end])
