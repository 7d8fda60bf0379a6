"""Two-tower: no look-ahead in its examples, a loss that learns, an index that finds
the exact neighbours, and training in process and on Ray Train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from models.candidates.popularity import Popularity
from models.data.dataset import read_dataset
from models.evaluation.compare import compare
from models.evaluation.split import per_user_temporal
from models.two_tower.ann import CONFIG_FILE, AnnConfig, ItemIndex
from models.two_tower.data import histories
from models.two_tower.generator import TwoTowerGenerator
from models.two_tower.model import TwoTower
from models.two_tower.train import TwoTowerConfig, optimizers


def test_examples_see_only_the_past() -> None:
    pairs = pd.DataFrame({
        "user_id": ["a", "a", "a", "b"],
        "item_id": ["x", "y", "z", "x"],
        "timestamp": pd.to_datetime(["2026-01-03", "2026-01-01", "2026-01-02", "2026-01-05"],
                                    utc=True)})
    examples, final = histories(pairs, pd.Index(["x", "y", "z"]), pd.Index(["a", "b"]))
    # Ordered by time for user a: y (1 Jan), z (2 Jan), x (3 Jan). Indices are 1-based.
    assert examples.items.tolist() == [2, 3, 1, 1]
    assert examples.history[0].tolist()[:2] == [0, 0]      # y: nothing before it
    assert examples.history[1].tolist()[:2] == [2, 0]      # z: y
    assert examples.history[2].tolist()[:3] == [3, 2, 0]   # x: z then y, newest first
    assert examples.history[3].tolist()[:1] == [0]         # user b starts empty
    assert final["a"].tolist() == [1, 3, 2]
    assert examples.users.tolist() == [1, 1, 1, 2]


@pytest.mark.parametrize("sparse_ids", [False, True])
def test_loss_handles_repeated_items_and_learns(sparse_ids: bool) -> None:
    torch.manual_seed(0)
    model = TwoTower(n_users=4, n_items=6, item_feature_dim=3, dim=8, hidden=16,
                     sparse_ids=sparse_ids)
    model.load_item_features(torch.rand(7, 3))
    users = torch.tensor([1, 2, 3, 4, 1, 2])
    history = torch.zeros(6, 20, dtype=torch.long)
    items = torch.tensor([1, 2, 3, 4, 1, 2])  # each user always picks "their" item
    log_q = torch.log(torch.full((7,), 1 / 7))
    steps = optimizers(model, TwoTowerConfig(lr=0.05, sparse_ids=sparse_ids))
    first = float(model(users, history, items, log_q).detach())
    for _ in range(100):
        loss = model(users, history, items, log_q)
        for optimizer in steps:
            optimizer.zero_grad()
        loss.backward()
        for optimizer in steps:
            optimizer.step()
    assert np.isfinite(first) and float(loss.detach()) < first / 4


def test_index_recall_against_exact_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.normal(size=(50, 16)).astype(np.float32)
    approximate = ItemIndex(vectors, exact=False)
    assert approximate.recall_vs_exact(queries, k=50) > 0.95
    exact = ItemIndex(vectors[:500])
    assert exact.exact and exact.recall_vs_exact(queries, k=20) == 1.0
    approximate.save(tmp_path)  # the hnsw graph is read back, not rebuilt
    loaded = ItemIndex.load(tmp_path)
    assert not loaded.exact
    assert loaded.search(queries, 10)[0].tolist() == approximate.search(queries, 10)[0].tolist()


def test_index_settings_come_from_config_and_travel_with_the_graph(tmp_path: Path) -> None:
    """M, ef_construction and ef from AnnConfig; saved beside the graph and read back;
    a wider search finds more of the exact top list; an index saved before the settings
    were configurable (no ann.json) loads with the defaults it was built with."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(4000, 24)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.normal(size=(100, 24)).astype(np.float32)
    narrow = AnnConfig(m=4, ef_construction=16, ef_search=10, exact_below=0)
    index = ItemIndex(vectors[:1000], narrow)  # under the default exact_below: still a graph
    assert not index.exact and index.ef_search == 10
    low = index.recall_vs_exact(queries, k=50)
    index.set_ef(400)
    high = index.recall_vs_exact(queries, k=50)
    assert low < high and high > 0.95, (low, high)
    index.save(tmp_path)
    loaded = ItemIndex.load(tmp_path)
    assert loaded.config == AnnConfig(m=4, ef_construction=16, ef_search=400, exact_below=0)
    assert loaded.recall_vs_exact(queries, k=50) == high
    (tmp_path / CONFIG_FILE).unlink()
    assert ItemIndex.load(tmp_path).config == AnnConfig() and not ItemIndex.load(tmp_path).exact
    with pytest.raises(ValueError, match="m"):
        AnnConfig(m=1)


def test_learns_on_the_synthetic_world_in_process(small_world: Path, tmp_path: Path) -> None:
    data = read_dataset(small_world)
    split = per_user_temporal(data.events, data.items["item_id"])
    losses: list[float] = []
    model = TwoTowerGenerator(TwoTowerConfig(epochs=6, batch_size=128), use_text=False,
                              on_epoch=lambda _epoch, loss: losses.append(loss))
    table = compare(split, data.items, [model, Popularity()], ks=(10,))
    assert losses[-1] < losses[0]
    assert table.loc["two_tower", "recall@10"] > 3 * 10 / len(data.items)
    assert table.loc["two_tower", "coverage@10"] > table.loc["popularity", "coverage@10"]
    cold = model.embed_history([0, 1, 2])
    assert cold.shape == (model.config.dim,) and np.isclose(np.linalg.norm(cold), 1.0)
    # Saved as plain files and loaded back: the same vectors, history embedding and search.
    model.save(tmp_path / "two_tower")
    loaded = TwoTowerGenerator.load(tmp_path / "two_tower")
    np.testing.assert_array_equal(loaded.user_vectors, model.user_vectors)
    np.testing.assert_allclose(loaded.embed_history([0, 1, 2]), cold, rtol=1e-6)
    queries = model.user_vectors[:5]
    found, expected = loaded.index.search(queries, 10)[0], model.index.search(queries, 10)[0]
    assert found.tolist() == expected.tolist()
    assert loaded.metrics == model.metrics


@pytest.mark.integration
def test_trains_on_ray_train_with_two_workers(small_world: Path) -> None:
    data = read_dataset(small_world)
    split = per_user_temporal(data.events, data.items["item_id"])
    model = TwoTowerGenerator(TwoTowerConfig(epochs=2, batch_size=128), workers=2,
                              use_text=False)
    table = compare(split, data.items, [model], ks=(10,))
    assert model.metrics["workers"] == 2
    assert model.metrics["examples_per_s"] > 0
    assert model.metrics["loss"] < model.metrics["first_loss"]
    assert table.loc["two_tower", "recall@10"] > 10 / len(data.items)
