"""Approximate nearest-neighbour search over item embeddings (hnswlib), with exact
search for small catalogs and a measured recall against exact search.

The graph's parameters come from configuration (`AnnConfig`: `PipelineConfig.ann`
when a version trains, serve.yaml's `graph.ef_search` to change the search breadth
of a running server) and are saved beside the graph, so a version serves with the
settings it was measured with. benchmarks/ann_recall.py measures recall against
exact search, query time, build time and memory over ef and M.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CONFIG_FILE = "ann.json"


class AnnConfig(BaseModel):
    """hnswlib's parameters for one item index."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Links per node: more raise recall at a given ef, and cost memory (8 * m bytes an
    # item at the base layer) and build time.
    m: int = Field(default=32, ge=2, le=128)
    # Candidates kept while the graph is built: its quality, once, at build time.
    ef_construction: int = Field(default=200, ge=8, le=4096)
    # Candidates a search explores (at least the k asked for). 100, not 200: on the
    # 20k x 10k load-test world the two-tower's lists keep 98.6% of what 200 found and
    # content's 99.8%, and a served request's retrieval takes ~0.3 ms less.
    ef_search: int = Field(default=100, ge=1, le=4096)
    # Catalogs smaller than this are searched exactly: brute force is as fast there.
    exact_below: int = Field(default=2_000, ge=0)


class ItemIndex:
    def __init__(self, vectors: np.ndarray, config: AnnConfig | None = None,
                 exact: bool | None = None, seed: int = 0) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.config = config or AnnConfig()
        self.exact = len(vectors) < self.config.exact_below if exact is None else exact
        self._index = None
        if not self.exact:
            import hnswlib

            index = hnswlib.Index(space="ip", dim=self.vectors.shape[1])
            index.init_index(max_elements=len(self.vectors),
                             ef_construction=self.config.ef_construction, M=self.config.m,
                             random_seed=seed)
            # One thread: the same graph from the same vectors, run to run.
            index.add_items(self.vectors, np.arange(len(self.vectors)), num_threads=1)
            index.set_ef(self.config.ef_search)
            self._index = index

    @property
    def ef_search(self) -> int:
        return self.config.ef_search

    def set_ef(self, ef_search: int) -> None:
        """Search breadth from now on (the graph stays as built)."""
        self.config = self.config.model_copy(update={"ef_search": ef_search})
        if self._index is not None:
            self._index.set_ef(ef_search)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, inner products), best first."""
        k = min(k, len(self.vectors))
        if self._index is None:
            return exact_search(self.vectors, queries, k)
        ids, distances = self._index.knn_query(np.ascontiguousarray(queries, np.float32), k=k)
        return ids.astype(np.int64), (1.0 - distances).astype(np.float32)

    def recall_vs_exact(self, queries: np.ndarray, k: int = 100) -> float:
        """Share of the exact top-k that the index returns (1.0 for exact search)."""
        approx, _ = self.search(queries, k)
        truth, _ = exact_search(self.vectors, queries, min(k, len(self.vectors)))
        return recall(approx, truth)

    def save(self, directory: Path, vectors: bool = True) -> None:
        """The graph and its settings; the vectors too unless the caller saves them."""
        if vectors:
            np.save(directory / "item_vectors.npy", self.vectors)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config.model_dump()))
        if self._index is not None:
            self._index.save_index(str(directory / "items.hnsw"))

    @classmethod
    def load(cls, directory: Path, vectors: np.ndarray | None = None) -> ItemIndex:
        """What `save` wrote, the graph read back rather than rebuilt. Versions saved
        before the settings were configurable carry none: theirs were the defaults."""
        if vectors is None:
            vectors = np.load(directory / "item_vectors.npy")
        settings = directory / CONFIG_FILE
        config = (AnnConfig.model_validate_json(settings.read_text()) if settings.exists()
                  else AnnConfig())
        loaded = cls(vectors, config, exact=True)  # exact: nothing is built here
        path = directory / "items.hnsw"
        if path.exists():
            import hnswlib

            index = hnswlib.Index(space="ip", dim=loaded.vectors.shape[1])
            index.load_index(str(path), max_elements=len(loaded.vectors))
            index.set_ef(config.ef_search)
            loaded.exact, loaded._index = False, index
        return loaded

    @staticmethod
    def saved(directory: Path) -> bool:
        return (directory / "items.hnsw").exists() or (directory / CONFIG_FILE).exists()


def source_index(vectors: np.ndarray, config: AnnConfig, saved_in: Path | None
                 ) -> ItemIndex:
    """A source's item index: the one its version saved in `saved_in`, read back, else
    built with `config` (a fit, or a version saved without one)."""
    if saved_in is not None and ItemIndex.saved(saved_in):
        return ItemIndex.load(saved_in, vectors)
    return ItemIndex(vectors, config)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` that the same row of `found` holds."""
    hits = [len(set(a) & set(t)) / len(t) for a, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) if hits else 1.0


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ vectors.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return (np.take_along_axis(part, order, axis=1),
            np.take_along_axis(part_scores, order, axis=1))
