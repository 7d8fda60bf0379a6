"""One served model: what a version loads to answer, and the one code path that
answers one user (a request) or a batch of users (fresh-window evaluation, batch
recommendations) with it.

Loaded once per version (`ServedModel`): each known user's positives, every source
readied to serve (`CandidateSource.prepare`), the popularity z-scores, and where each
ranker feature comes from. For a user it adds their fresh items (newer than
training: the real-time view, the session) to their history, asks every source for
its list (`CandidateSource.retrieve`), pools, fills the ranker's feature matrix from
the user's row and the items' rows (`FeatureRows`: the online store for a request,
the offline store as of one time for a batch), ranks and blends. A batch is that,
user by user, with the blend's unique slots then shared out among the batch's users
as training shares them (models/ranker/exposure.py); one user alone keeps every
fresh item it likes. Users with no usable history get nothing here; callers answer
them with the cold-start list.

The sources that score the whole catalog from one vector (two-tower, content)
search an ANN index (models/two_tower/ann.py) when the model is loaded to `search`
and the catalog has 2,000 items or more: the exact products read 8.4 MB of vectors
per request on the 10k-item load test, and that traffic slows the other processes on
the box, not only this one. Batches are exact; `nearest` is tested against exact
search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from contracts import feature_columns
from contracts.feature_columns import ITEM_VIEWS, view_of
from models.bundle import Bundle
from models.candidates.base import Row, TrainingData, UserHistory, matrix_row
from models.interactions import Index, positive_pairs, to_matrix
from models.ranker.candidates import AFFINITY, MISSING_RANK
from models.ranker.exposure import blend_scores, popularity_z, ranked_lists, visit_order
from models.ranker.features import FeatureJoin, crosses
from models.ranker.item_rows import FeatureRows, ItemRows, OfflineRows, number
from models.sources import affinity_source
from models.timing import Timings, stage


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


class ServedModel:
    def __init__(self, bundle: Bundle, search: bool = True,
                 history: pd.DataFrame | None = None, ef_search: int | None = None
                 ) -> None:
        """`search` False: exact retrieval, no ANN index built (a batch, or the split
        graph's Ranker, which only ranks what another retrieved). `history`: the known
        users' events, by default the version's training events; a batch as of another
        time (a fresh window's start) passes the events before it. `ef_search`: the ANN
        indexes' search breadth instead of the version's own (serve.yaml)."""
        self.bundle = bundle
        assert bundle.ranker.booster is not None
        # One thread per prediction: a request ranks a few hundred rows, and with torch
        # loaded (the two-tower) XGBoost's default threading costs ~3 ms a call, 0.4 ms
        # with one thread (measured on the 10k-item benchmark version).
        bundle.ranker.booster.set_param({"nthread": 1})
        self.tower = affinity_source(bundle.generators)
        self.pop_z = popularity_z(bundle.popularity_scores())
        training = _training(bundle, bundle.events if history is None else history)
        for source in bundle.generators.values():
            source.prepare(training, search)
            index = source.search_index()
            if index is not None and ef_search is not None:
                index.set_ef(ef_search)
        self.positives = training.matrix
        self.trained_until = training.now
        self.users = pd.Index(bundle.user_ids)
        self.items = pd.Index(bundle.item_ids)
        # Dicts for a request's few ids: pandas' get_indexer costs ~0.3 ms a call.
        self._user_rows = {u: n for n, u in enumerate(self.users)}
        self._item_columns = {i: n for n, i in enumerate(self.items)}
        self.features = list(bundle.ranker.features)
        self.item_features = tuple(dict.fromkeys(
            [n for n in self.features if view_of(n) in ITEM_VIEWS]
            + [feature_columns.ITEM_PRICE, feature_columns.ITEM_CREATED_TS]))
        # Where the ranker's columns come from: (its columns, the item rows' columns) for
        # item features, its columns for the user's online row, and the rest.
        view = [view_of(name) for name in self.features]
        item = [n for n, v in enumerate(view) if v in ITEM_VIEWS]
        self._item_block = (np.array(item, np.int64), np.array(
            [self.item_features.index(self.features[n]) for n in item], np.int64))
        self._user_block = np.array([n for n, v in enumerate(view)
                                     if v is not None and v not in ITEM_VIEWS], np.int64)
        self._computed = [n for n, v in enumerate(view) if v is None]

    def score(self, user_id: str, fresh_items: Sequence[str], user_features: dict[str, Any],
              join: FeatureRows, at: pd.Timestamp, k: int,
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
             join: FeatureRows, at: pd.Timestamp, k: int,
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
                                  self.pop_z[items], self.bundle.blend)
            best = np.argsort(-scores, kind="stable")
            if only is not None:
                best = best[np.isin(items[best], only)]
            best = best[:k]
        return Scored(items[best], scores[best], [retrieved_by[i] for i in best],
                      degraded=not rows.complete,
                      rows=ItemRows(rows.table, rows.slots[best], rows.complete))

    def recommend(self, events: pd.DataFrame, user_ids: Sequence[str], at: pd.Timestamp,
                  join: FeatureJoin, k: int, include_seen: bool = False) -> pd.DataFrame:
        """`user_id, item_id, rank, score` for the users with any usable history (or a
        trained vector), each scored as a request would be, with `events` giving their
        fresh items (`fresh_items`) and features as of `at`; the blend's unique slots
        are then shared among them (the module's docstring)."""
        fresh = self.fresh_items(events, user_ids)
        wanted = np.asarray(list(user_ids), dtype=object)
        users, items, scores = [], [], []
        retrieved = [self.retrieve(u, fresh.get(u, []), at, include_seen) for u in user_ids]
        pooled = np.unique(np.concatenate([np.zeros(0, np.int64), *(
            ids[ids >= 0] for r in retrieved for ids, _ in r.lists.values())]))
        rows = OfflineRows(join, wanted, self.bundle.item_ids[pooled], at)
        for n, (user, got) in enumerate(zip(user_ids, retrieved, strict=True)):
            if got.lists:
                scored = self.rank(got, rows.user(user), rows, at, len(self.items))
                users.append(np.full(len(scored.items), n))
                items.append(scored.items)
                scores.append(scored.scores)
        if not users:
            return as_table(np.zeros((0, k), np.int64), np.zeros((0, k), np.float32),
                            np.zeros(0, dtype=object), self.bundle.item_ids)
        flat_users = np.concatenate(users)
        order = np.unique(flat_users)
        ids = wanted[order]
        top, values = ranked_lists(flat_users, np.concatenate(items), np.concatenate(scores),
                                   order, k, self.bundle.blend.head, visit_order(ids))
        return as_table(top, values, ids, self.bundle.item_ids)

    def fresh_items(self, events: pd.DataFrame, user_ids: Sequence[str]
                    ) -> dict[str, list[str]]:
        """Each user's positive items that the known users' history does not hold,
        newest first, as the real-time view hands serving them: for a known user those
        after its last event, for anyone else all of them."""
        pairs = positive_pairs(events[events["user_id"].isin(set(user_ids))])
        known = pairs["user_id"].isin(set(self._user_rows))
        pairs = pairs[~known | (pairs["timestamp"] > self.trained_until)]
        pairs = pairs.sort_values(["user_id", "timestamp", "item_id"],
                                  ascending=[True, False, True], kind="stable")
        return {str(u): list(dict.fromkeys(g["item_id"].astype(str)))
                for u, g in pairs.groupby("user_id", sort=False)}

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
            at.timestamp(), rows.field(feature_columns.ITEM_CATEGORY),
            user.get(feature_columns.USER_TOP_CATEGORIES),
            user.get(feature_columns.USER_CATEGORY_AFFINITY),
            values[:, field(feature_columns.ITEM_PRICE)],
            number(user.get(feature_columns.USER_AVG_PURCHASE_PRICE)),
            values[:, field(feature_columns.ITEM_CREATED_TS)], one_user=True)
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
    counts 1)."""
    if not fresh:
        return trained
    columns = np.union1d(trained.columns, fresh)
    return Row(columns, np.ones(len(columns), np.float32))


def _training(bundle: Bundle, events: pd.DataFrame) -> TrainingData:
    """The version's training users as the sources read them, with these events as their
    histories: rows in the bundle's user order, positives over its catalog (items it
    does not know dropped)."""
    users = Index(np.asarray(bundle.user_ids, dtype=object))
    items = Index(np.asarray(bundle.item_ids, dtype=object))
    events = events[events["user_id"].isin(set(users.ids))]
    return TrainingData(to_matrix(positive_pairs(events), users, items), events,
                        pd.DataFrame({"item_id": items.ids}), users.ids)


def as_table(ids: np.ndarray, scores: np.ndarray, user_ids: np.ndarray, item_ids: np.ndarray
             ) -> pd.DataFrame:
    """Ranked lists (rows aligned with `user_ids`, -1 padded) as the batch table
    `user_id, item_id, rank, score`."""
    rows, cols = np.nonzero(ids >= 0)
    return pd.DataFrame({"user_id": user_ids[rows], "item_id": item_ids[ids[rows, cols]],
                         "rank": cols + 1, "score": scores[rows, cols].astype(np.float32)})
