"""The per-user half of training over user shards: four Ray tasks build the frame one
process builds, on the small world with its real sources and feature store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.data.dataset import read_dataset
from models.evaluation.compare import aligned_items
from models.evaluation.split import SPLITS
from models.features.build import build_features
from models.pipeline import PipelineConfig, _boundary, _data, _fitted
from models.ranker.features import store_join
from models.shards import FrameInputs, candidate_frame, shard_bounds
from models.text_embeddings import TextEmbedder
from models.two_tower.train import TwoTowerConfig
from stores.feature_store import apply_definitions, open_store


def test_shard_bounds_cut_whole_blocks_and_cover_every_user() -> None:
    assert shard_bounds(300, 4, block=64) == [(0, 128), (128, 192), (192, 256), (256, 300)]
    assert shard_bounds(300, 1, block=64) == [(0, 300)]
    assert shard_bounds(100, 8, block=64) == [(0, 64), (64, 100)]  # two blocks, two shards
    assert shard_bounds(0, 4) == []


@pytest.mark.integration
def test_four_shards_on_ray_build_the_frame_one_process_builds(
        small_world: Path, tmp_path: Path, redis_settings) -> None:
    build_features(small_world)
    store = open_store(small_world, redis_settings, announce=lambda _: None)
    apply_definitions(store, small_world)
    dataset = read_dataset(small_world)
    split = SPLITS["per_user"](dataset.events, dataset.items["item_id"])
    config = PipelineConfig(two_tower=TwoTowerConfig(epochs=1, batch_size=64))
    data = _data(split, aligned_items(split, dataset.items))
    sources = _fitted(config, TextEmbedder(cache_dir=tmp_path), None, data)
    users = split.test_users()
    inputs = FrameInputs(sources, dict(config.per_source), data.matrix,
                         _boundary(split, users), store_join(store), split.users.ids,
                         split.items.ids)
    one = candidate_frame(inputs, users)
    four = candidate_frame(inputs, users, shards=4, block=64)
    assert len(shard_bounds(len(users), 4, block=64)) == 4
    assert len(one) > 20 * len(users) and one["user"].nunique() == len(users)
    pd.testing.assert_frame_equal(four, one)
