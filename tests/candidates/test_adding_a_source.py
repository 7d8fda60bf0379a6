"""Adding a candidate source is one class and one `register` line (models/README.md,
"Adding a candidate source"): a registered toy source is trained, pooled as ranker
features, saved in the version's bundle, loaded back, retrieved from for one user and
for a batch, and its reason shown, with nothing else changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from contracts.settings import Settings
from models.bundle import load_bundle
from models.candidates.base import HistoryScorer, TrainingData
from models.ranker.features import store_join
from models.ranker.item_rows import OfflineRows
from models.served import ServedModel
from models.sources import SOURCES, register, unregister
from recstack.cli import app
from serving.rules import reason
from stores.feature_store import open_store
from stores.registry import Registry
from tests.cli.test_train import SMALL

pytestmark = pytest.mark.integration


class NewArrivals(HistoryScorer):
    """The newest items of the catalog, the same for everyone."""

    name = "new_arrivals"
    reason = "new in the shop"
    candidates = 8
    fitted = ("item_scores",)

    def fit(self, data: TrainingData) -> NewArrivals:
        created = pd.to_datetime(data.items["created_at"], utc=True)
        self.item_scores = (created.astype("int64") / 1e18).to_numpy(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.item_scores, (len(users), 1))

    def score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return np.tile(self.item_scores, (history.shape[0], 1))

    def catalog_size(self) -> int:
        return len(self.item_scores)


@pytest.fixture()
def new_arrivals() -> Iterator[None]:
    register(NewArrivals)
    try:
        yield
    finally:
        unregister(NewArrivals.name)


def test_a_registered_source_is_trained_saved_and_served(
        new_arrivals: None, small_world: Path, tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    config.write_text(json.dumps(SMALL))  # names the five built-in sources only
    trained = CliRunner().invoke(app, [
        "train", "--data", str(small_world), "--registry", str(tmp_path / "reg"),
        "--config", str(config)], env={"RECSTACK_ONLINE_STORE": "sqlite"})
    assert trained.exit_code == 0, trained.output
    registry = Registry(str(tmp_path / "reg"))
    manifest = registry.resolve()
    assert manifest.params["per_source"]["new_arrivals"] == NewArrivals.candidates
    # Evaluated on its own beside the two-stage model, like every source.
    assert 0 <= manifest.metrics["baselines"]["new_arrivals"]["ndcg@10"] <= 1

    bundle = load_bundle(Path(registry.fetch(manifest.version)))
    source = bundle.generators["new_arrivals"]
    assert isinstance(source, NewArrivals)
    assert {"new_arrivals_score", "new_arrivals_rank"} <= set(bundle.ranker.features)
    newest = set(np.argsort(-source.item_scores, kind="stable")[:40])

    # One user, as serving asks: the source's list is the newest items they have not seen.
    user = str(bundle.user_ids[0])
    at = bundle.events["timestamp"].max() + pd.Timedelta(seconds=1)
    retrieved = ServedModel(bundle).retrieve(user, [], at)
    ids, _ = retrieved.lists["new_arrivals"]
    assert len(ids) == NewArrivals.candidates and set(ids) <= newest
    # Ranked with its features, as of the end of the data from the offline store: the
    # one-user answer names it among the sources; the batch answer is that user's too.
    model = ServedModel(bundle, search=False)
    join = store_join(open_store(small_world, Settings(online_store="sqlite")))
    rows = OfflineRows(join, np.array([user], dtype=object), bundle.item_ids, at)
    scored = model.score(user, [], rows.user(user), rows, at, 200)
    assert any("new_arrivals" in by for by in scored.sources)
    batch = model.recommend(bundle.events, [user], at, join, 10)
    assert batch["item_id"].tolist() == list(bundle.item_ids[scored.items[:10]])
    assert reason("new_arrivals") == "new in the shop"


def test_registering_needs_a_new_name() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(SOURCES["ease"])
