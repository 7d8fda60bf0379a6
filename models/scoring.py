"""On-demand scoring with a version's bundle: the two-stage model for any users, at
any time, from their events.

The steps are stage C's (models/pipeline.py): each generator's top list for the
user's history, pooled; the two-tower affinity of every pooled pair; ranker
features joined as of the scoring time; the ranker; the exposure blend and its
unique slots. Scoring every training user with the offline store as of the end
of the data gives back the lists `recstack train` stored (tested), so the
served lists and on-demand answers are one model.

Users the bundle's two-tower knows use their trained vectors; anyone else is
embedded from their most recent positives (models/two_tower). Users with no
usable history get nothing here; callers answer them with the cold-start list.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.bundle import Bundle
from models.candidates.base import HistoryScorer, TrainingData, exclude, top_k
from models.candidates.content import ContentSimilarity
from models.interactions import Index, positive_pairs, to_matrix
from models.ranker.candidates import pool_lists
from models.ranker.exposure import blend_scores, popularity_z, ranked_lists, visit_order
from models.ranker.features import FeatureJoin, matrix, with_features
from models.two_tower.data import HISTORY
from models.two_tower.generator import TwoTowerGenerator

AFFINITY = "two_tower_affinity"


class Scorer:
    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.items = Index(np.asarray(bundle.item_ids, dtype=object))
        self.known = pd.Index(bundle.user_ids)
        popularity = bundle.generators["popularity"]
        self.pop_z = popularity_z(popularity.item_scores)  # type: ignore[attr-defined]
        tower = bundle.generators["two_tower"]
        assert isinstance(tower, TwoTowerGenerator)
        self.tower = tower

    def history(self, events: pd.DataFrame, user_ids: Sequence[str]) -> TrainingData:
        """The users' events as the generators read them: rows in `user_ids` order over
        the bundle's catalog (items it does not know are dropped)."""
        users = Index(np.asarray(list(user_ids), dtype=object))
        events = events[events["user_id"].isin(set(user_ids))]
        return TrainingData(to_matrix(positive_pairs(events), users, self.items), events,
                            pd.DataFrame({"item_id": self.items.ids}), users.ids)

    def user_vectors(self, data: TrainingData) -> np.ndarray:
        """Trained vectors for known users; the rest embedded from recent positives."""
        rows = self.known.get_indexer(pd.Index(data.user_ids))
        out = np.empty((len(rows), self.tower.user_vectors.shape[1]), dtype=np.float32)
        known = rows >= 0
        out[known] = self.tower.user_vectors[rows[known]]
        if (~known).any():
            recent = (positive_pairs(data.events)
                      .sort_values("timestamp", ascending=False, kind="stable"))
            columns = self.items.positions(recent["item_id"])
            by_user = pd.Series(columns, index=recent["user_id"].to_numpy())
            for n in np.flatnonzero(~known):
                mine = by_user.get(data.user_ids[n])
                items = [] if mine is None else [c for c in np.atleast_1d(mine) if c >= 0]
                out[n] = self.tower.embed_history(items[:HISTORY])
        return out

    def candidates(self, data: TrainingData, include_seen: bool = False) -> pd.DataFrame:
        """`pool` for these users: each source's top list, with the affinity column."""
        seen = None if include_seen else data.matrix
        vectors = self.user_vectors(data)
        users = np.arange(len(data.user_ids))
        lists = {}
        for name, generator in self.bundle.generators.items():
            n = self.bundle.per_source[name]
            if generator is self.tower:
                scores = vectors @ self.tower.item_vectors.T
                if seen is not None:
                    exclude(scores, seen)
                lists[name] = top_k(scores, n)
            elif isinstance(generator, ContentSimilarity):
                lists[name] = generator.recommend_history(generator.decayed_history(data), n,
                                                          seen=seen)
            else:
                assert isinstance(generator, HistoryScorer)
                lists[name] = generator.recommend_history(data.matrix, n, seen=seen)
        frame = pool_lists(lists, users)
        frame[AFFINITY] = np.einsum("ij,ij->i", vectors[frame["user"].to_numpy()],
                                    self.tower.item_vectors[frame["item"].to_numpy()])
        return frame

    def recommend(self, events: pd.DataFrame, user_ids: Sequence[str], at: pd.Timestamp,
                  join: FeatureJoin, k: int, include_seen: bool = False) -> pd.DataFrame:
        """`user_id, item_id, rank, score` for the users with any usable history (or a
        trained vector), ranked with features as of `at`."""
        data = self.history(events, user_ids)
        frame = self.candidates(data, include_seen)
        served = self._served(data)
        frame = frame[served[frame["user"].to_numpy()]].reset_index(drop=True)
        frame = with_features(frame, join, data.user_ids, self.items.ids,
                              pd.Series(at, index=frame.index))
        raw = self.bundle.ranker.predict(matrix(frame, self.bundle.ranker.features))
        users, items = frame["user"].to_numpy(), frame["item"].to_numpy()
        scores = blend_scores(raw, frame[AFFINITY].to_numpy(), users, self.pop_z[items],
                              self.bundle.blend)
        order = np.flatnonzero(served)
        ids, values = ranked_lists(users, items, scores, order, k, self.bundle.blend.head,
                                   visit_order(data.user_ids[order]))
        rows, cols = np.nonzero(ids >= 0)
        return pd.DataFrame({"user_id": data.user_ids[order][rows],
                             "item_id": self.items.ids[ids[rows, cols]],
                             "rank": cols + 1, "score": values[rows, cols]})

    def _served(self, data: TrainingData) -> np.ndarray:
        """Users with a trained vector or at least one positive in the catalog."""
        known = self.known.get_indexer(pd.Index(data.user_ids)) >= 0
        return known | (np.diff(sp.csr_matrix(data.matrix).indptr) > 0)
