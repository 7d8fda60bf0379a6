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
from models.candidates.base import HistoryScorer, TrainingData, chunks, exclude, top_k
from models.candidates.content import ContentSimilarity
from models.interactions import Index, positive_pairs, to_matrix
from models.ranker.candidates import AFFINITY, pool_lists
from models.ranker.exposure import blend_scores, popularity_z, ranked_lists, visit_order
from models.ranker.features import FeatureJoin, matrix, with_features
from models.two_tower.data import histories, pad_history
from models.two_tower.generator import TwoTowerGenerator


class Scorer:
    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.items = Index(np.asarray(bundle.item_ids, dtype=object))
        self.known = pd.Index(bundle.user_ids)
        self.pop_z = popularity_z(bundle.popularity_scores())
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
        """Trained vectors for known users; the rest embedded from their most recent
        positives, as the two-tower's training builds histories."""
        rows = self.known.get_indexer(pd.Index(data.user_ids))
        out = np.empty((len(rows), self.tower.user_vectors.shape[1]), dtype=np.float32)
        known = rows >= 0
        out[known] = self.tower.user_vectors[rows[known]]
        if (~known).any():
            new = data.user_ids[~known]
            pairs = positive_pairs(data.events[data.events["user_id"].isin(set(new))])
            _, final = histories(pairs, pd.Index(self.items.ids), pd.Index(new))
            padded = np.stack([pad_history(final.get(str(u), np.zeros(0, np.int64)))
                               for u in new])
            out[~known] = self.tower.embed_histories(padded)
        return out

    def candidates(self, data: TrainingData, include_seen: bool = False) -> pd.DataFrame:
        """`pool` for these users: each source's top list, with the affinity column.
        Dense score blocks are SCORE_CHUNK users at a time."""
        vectors = self.user_vectors(data)
        content = {name: g.decayed_history(data) for name, g in self.bundle.generators.items()
                   if isinstance(g, ContentSimilarity)}
        parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
            name: [] for name in self.bundle.generators}
        for block in chunks(np.arange(len(data.user_ids))):
            seen = None if include_seen else data.matrix[block]
            for name, generator in self.bundle.generators.items():
                n = self.bundle.per_source[name]
                if generator is self.tower:
                    scores = vectors[block] @ self.tower.item_vectors.T
                    if seen is not None:
                        exclude(scores, seen)
                    parts[name].append(top_k(scores, n))
                else:
                    assert isinstance(generator, HistoryScorer)
                    history = content[name][block] if name in content else data.matrix[block]
                    parts[name].append(generator.recommend_history(history, n, seen=seen))
        lists = {name: (np.vstack([p[0] for p in got]), np.vstack([p[1] for p in got]))
                 for name, got in parts.items()}
        frame = pool_lists(lists, np.arange(len(data.user_ids)))
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
