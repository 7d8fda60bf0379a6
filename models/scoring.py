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

Unique slots are shared out among the users scored together, as training shares
them among all its users: a user's list can depend on who else is in the batch.
One user scored alone keeps every fresh item it likes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from models.bundle import Bundle
from models.candidates.base import TrainingData
from models.interactions import Index, positive_pairs, to_matrix
from models.ranker.candidates import AFFINITY, pool_lists
from models.ranker.exposure import blend_scores, popularity_z, ranked_lists, visit_order
from models.ranker.features import FeatureJoin, matrix, with_features
from models.sources import affinity_source


class Scorer:
    def __init__(self, bundle: Bundle, search: bool = False) -> None:
        """`search`: ready the sources' ANN indexes for one-user retrieval too (the
        batch here is exact)."""
        self.bundle = bundle
        self.items = Index(np.asarray(bundle.item_ids, dtype=object))
        self.known = pd.Index(bundle.user_ids)
        self.pop_z = popularity_z(bundle.popularity_scores())
        self.tower = affinity_source(bundle.generators)
        self.training = self.history(bundle.events, list(bundle.user_ids))
        for source in bundle.generators.values():
            source.prepare(self.training, search)

    def history(self, events: pd.DataFrame, user_ids: Sequence[str]) -> TrainingData:
        """The users' events as the generators read them: rows in `user_ids` order over
        the bundle's catalog (items it does not know are dropped)."""
        users = Index(np.asarray(list(user_ids), dtype=object))
        events = events[events["user_id"].isin(set(user_ids))]
        return TrainingData(to_matrix(positive_pairs(events), users, self.items), events,
                            pd.DataFrame({"item_id": self.items.ids}), users.ids)

    def candidates(self, data: TrainingData, include_seen: bool = False) -> pd.DataFrame:
        """`pool` for these users: each source's top list, with the affinity column."""
        lists = {name: source.recommend_users(data, self.bundle.per_source[name], include_seen)
                 for name, source in self.bundle.generators.items()}
        frame = pool_lists(lists, np.arange(len(data.user_ids)))
        vectors = self.tower.users_vectors(data)
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
        return as_table(ids, values, data.user_ids[order], self.items.ids)

    def _served(self, data: TrainingData) -> np.ndarray:
        """Users with a trained vector or at least one positive in the catalog."""
        known = self.known.get_indexer(pd.Index(data.user_ids)) >= 0
        return known | (np.diff(data.matrix.indptr) > 0)


def as_table(ids: np.ndarray, scores: np.ndarray, user_ids: np.ndarray, item_ids: np.ndarray
             ) -> pd.DataFrame:
    """Ranked lists (rows aligned with `user_ids`, -1 padded) as the batch table
    `user_id, item_id, rank, score`."""
    rows, cols = np.nonzero(ids >= 0)
    return pd.DataFrame({"user_id": user_ids[rows], "item_id": item_ids[ids[rows, cols]],
                         "rank": cols + 1, "score": scores[rows, cols].astype(np.float32)})
