"""One request's two-stage scoring with numpy arrays: models/scoring.py's steps, minus
the per-request DataFrames.

Loaded once per model version: each known user's positives, every source readied
to serve (`CandidateSource.prepare`), the popularity z-scores, and where each ranker
feature comes from. Per request it adds the user's fresh items (real-time features,
the session) to their history, asks every source for its list
(`CandidateSource.retrieve`), pools, fills the ranker's feature matrix from the
user's online row and the cached item rows, ranks and blends.
`tests/serving/test_online_scoring.py` checks it against `Scorer`, the reference.

The sources that score the whole catalog from one vector (two-tower, content)
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

from models.bundle import Bundle
from models.candidates.base import Row, UserHistory, matrix_row
from models.ranker.candidates import AFFINITY, MISSING_RANK
from models.ranker.exposure import blend_scores
from models.ranker.features import crosses
from models.scoring import Scorer
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
        self.reference = Scorer(bundle, search=retrieves)
        self.tower = self.reference.tower
        self.positives = self.reference.training.matrix
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
        trained = matrix_row(self.positives, row) if row >= 0 else EMPTY
        history = _with_fresh(trained, fresh)
        if row < 0 and not len(history.columns):
            return Retrieved({}, np.zeros(self.tower.item_vectors.shape[1], np.float32))
        user = UserHistory(row, trained, fresh, history, at,
                           self.tower.user_vector(row, fresh))
        seen = None if include_seen else history.seen()
        return Retrieved({name: source.retrieve(user, self.bundle.per_source[name], seen)
                          for name, source in self.bundle.generators.items()}, user.vector)

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


EMPTY = Row(np.zeros(0, np.int32), np.zeros(0, np.float32))


def _with_fresh(trained: Row, fresh: list[int]) -> Row:
    """The user's training positives, with the fresh items added (then every item
    counts 1, as the reference's fresh history does)."""
    if not fresh:
        return trained
    columns = np.union1d(trained.columns, fresh)
    return Row(columns, np.ones(len(columns), np.float32))
