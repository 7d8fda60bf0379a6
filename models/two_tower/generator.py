"""The two-tower model as a candidate generator: train, embed, index, retrieve."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from models.candidates.base import (
    CandidateSource,
    SourceBuild,
    TrainingData,
    UserHistory,
    closest,
)
from models.text_embeddings import TextEmbedder, item_text
from models.two_tower.ann import AnnConfig, ItemIndex, source_index
from models.two_tower.data import (
    HISTORY,
    item_features,
    pad_history,
    training_examples,
)
from models.two_tower.train import Trained, TwoTowerConfig, build_model, fit
from models.vectors import unit_rows

ANN_CHECK_USERS = 500


class TwoTowerGenerator(CandidateSource):
    """Every version has it: its user vector's affinity to each pooled item is a ranker
    feature (models.ranker.candidates.AFFINITY) whichever source found the item."""

    name = "two_tower"
    reason = "matches your taste"
    signal = "embedding"
    candidates = 100

    def __init__(self, config: TwoTowerConfig | None = None, workers: int = 0,
                 embedder: TextEmbedder | None = None, use_text: bool = True,
                 on_epoch: Callable[[int, float], None] | None = None,
                 ray_address: str | None = None, ann: AnnConfig | None = None) -> None:
        """`ray_address`: the Ray cluster of the workers (None: a local Ray); `ann`: the
        item index's settings."""
        self.config = config or TwoTowerConfig()
        self.ann = ann or AnnConfig()
        self.workers = workers
        self.ray_address = ray_address
        self.embedder = embedder
        self.use_text = use_text
        self.on_epoch = on_epoch
        self.metrics: dict[str, float] = {}
        self._index: ItemIndex | None = None
        self._saved_in: Path | None = None  # a loaded version's directory
        self._search = False

    @classmethod
    def create(cls, build: SourceBuild) -> TwoTowerGenerator:
        return cls(build.config.two_tower, workers=build.config.workers,
                   embedder=build.embedder, on_epoch=build.on_epoch,
                   ray_address=build.config.ray_address, ann=build.config.ann)

    def fit_metrics(self) -> dict[str, float]:
        """Training's metrics, and what serving's ANN index gives up against exact
        search on up to 500 training users (the index built now if it is not yet)."""
        if "ann_recall@100" not in self.metrics:
            sample = np.random.default_rng(0).permutation(len(self.user_vectors))
            self.metrics["ann_recall@100"] = self.index.recall_vs_exact(
                self.user_vectors[sample[:ANN_CHECK_USERS]])
            self.metrics["ann_exact_search"] = float(self.index.exact)
        return dict(self.metrics)

    @property
    def index(self) -> ItemIndex:
        """The item vectors' ANN index, built or read back when first wanted (serving's
        retrieval, a saved version, the recall metric): training's stages score exactly
        and a Ranker replica does not retrieve, and one 100k-item graph takes 18 s to
        build (benchmarks/ann_recall.py) and 51 MB to hold."""
        if self._index is None:
            self._index = source_index(self.item_vectors, self.ann, self._saved_in)
        return self._index

    def fit(self, data: TrainingData) -> TwoTowerGenerator:
        text = None
        if self.use_text:
            text = (self.embedder or TextEmbedder()).encode(item_text(data.items))
        features = item_features(data.items, text)
        examples, final, sampling = training_examples(data.events, data.items, data.user_ids)
        n_users, n_items = len(data.user_ids), len(data.items)
        trained: Trained = fit(examples, features, sampling, n_users, n_items, self.config,
                               workers=self.workers, on_epoch=self.on_epoch,
                               ray_address=self.ray_address)
        self.metrics = dict(trained.metrics)
        model = build_model(self.config, n_users, n_items, features)
        model.load_state_dict(trained.state)
        model.eval()
        self.model = model
        with torch.no_grad():
            self.item_vectors = model.item_vectors(torch.arange(1, n_items + 1)).numpy()
            history = np.stack([pad_history(final.get(str(u), np.zeros(0, np.int64)))
                                for u in data.user_ids])
            self.user_vectors = model.user_vectors(torch.arange(1, n_users + 1),
                                                   torch.from_numpy(history)).numpy()
        self._index, self._saved_in = None, None
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.user_vectors[users] @ self.item_vectors.T

    def embedding(self) -> np.ndarray:
        return self.item_vectors

    def prepare(self, training: TrainingData, search: bool) -> None:
        """Its own ANN index when `search`; unit item vectors for similar-items. (A known
        user's row in `training` is their row of `user_vectors`.)"""
        self._search = search
        self._unit = unit_rows(self.item_vectors)

    def search_index(self) -> ItemIndex | None:
        return self.index if self._search else None

    def similar_to(self, column: int) -> np.ndarray:
        """Cosines between item vectors: items the same users pick."""
        return self._unit @ self._unit[column]

    def user_vector(self, row: int, fresh: list[int]) -> np.ndarray:
        """One user's vector: trained for training row `row`, else embedded from their
        fresh item columns (newest first)."""
        if row >= 0:
            return self.user_vectors[row]
        return self.embed_history(fresh[:HISTORY])

    def retrieve(self, user: UserHistory, n: int, seen: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray]:
        return closest(self.item_vectors, self.index if self._search else None,
                       user.vector, n, seen)

    def pair_scores(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The affinity of each (user row, item column) pair, for any item, retrieved or not."""
        return np.einsum("ij,ij->i", self.user_vectors[users], self.item_vectors[items])

    def embed_history(self, history: list[int]) -> np.ndarray:
        """A user vector from item history alone (unknown user id): cold start, sessions.
        `history` holds item columns (0-based), newest first."""
        return self.embed_histories(pad_history(np.array(history, dtype=np.int64) + 1)[None])[0]

    def embed_histories(self, histories: np.ndarray) -> np.ndarray:
        """User vectors for (n, HISTORY) padded histories of 1-based item indices
        (models/two_tower/data.py's layout), with no user id."""
        with torch.no_grad():
            return self.model.user_vectors(torch.zeros(len(histories), dtype=torch.long),
                                           torch.from_numpy(histories)).numpy()

    def save(self, directory: Path) -> None:
        """What serving needs, as plain files: the weights (a torch state dict), the
        config, the training users' vectors, and the item vectors with their ANN index."""
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), directory / "two_tower.pt")
        np.save(directory / "user_vectors.npy", self.user_vectors)
        self.index.save(directory)
        (directory / "params.json").write_text(json.dumps(
            {"config": self.config.model_dump(), "use_text": self.use_text,
             "metrics": self.fit_metrics()}))

    @classmethod
    def load(cls, directory: Path) -> TwoTowerGenerator:
        meta = json.loads((directory / "params.json").read_text())
        loaded = cls(TwoTowerConfig(**meta["config"]), use_text=meta["use_text"])
        state = torch.load(directory / "two_tower.pt", weights_only=True)
        model = build_model(loaded.config, state["user_id.weight"].shape[0] - 1,
                            state["item_id.weight"].shape[0] - 1,
                            state["item_features.weight"].numpy())
        model.load_state_dict(state)
        model.eval()
        loaded.model = model
        loaded.metrics = meta["metrics"]
        loaded.user_vectors = np.load(directory / "user_vectors.npy")
        loaded.item_vectors = np.load(directory / "item_vectors.npy")
        loaded._saved_in = directory
        return loaded
