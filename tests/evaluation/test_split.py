"""Splits never leak a held-out interaction into training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from models.data.dataset import read_dataset
from models.evaluation.split import global_time, per_user_temporal
from models.interactions import positive_pairs


def test_per_user_temporal_split(small_world: Path) -> None:
    data = read_dataset(small_world)
    split = per_user_temporal(data.events, data.items["item_id"])
    train_pairs = positive_pairs(split.train_events)
    merged = split.test_pairs.merge(train_pairs[["user_id", "item_id"]], how="inner")
    assert merged.empty  # no held-out (user, item) pair is in training
    first_test = split.test_pairs.groupby("user_id")["timestamp"].min()
    last_train = split.train_events.groupby("user_id")["timestamp"].max()
    common = first_test.index.intersection(last_train.index)
    assert (last_train[common] < first_test[common]).all()  # nothing from a user's test period
    all_pairs = positive_pairs(data.events)
    per_user = all_pairs.groupby("user_id").size()
    multi = per_user[per_user >= 2].index
    assert set(split.test_pairs["user_id"]) <= set(multi)
    share = len(split.test_pairs) / len(all_pairs[all_pairs["user_id"].isin(multi)])
    assert 0.12 < share <= 0.25  # about 20%, less the items re-met after the boundary
    assert split.test_matrix().shape == (len(split.users), len(data.items))


def test_global_time_split(small_world: Path) -> None:
    data = read_dataset(small_world)
    split = global_time(data.events, data.items["item_id"])
    assert split.cutoff is not None
    assert (split.train_events["timestamp"] < split.cutoff).all()
    assert (split.test_pairs["timestamp"] >= split.cutoff).all()
    assert set(split.test_pairs["user_id"]) <= set(split.train_events["user_id"])
    seen = positive_pairs(split.train_events)[["user_id", "item_id"]]
    assert split.test_pairs.merge(seen, how="inner").empty
    assert isinstance(split.cutoff, pd.Timestamp)
