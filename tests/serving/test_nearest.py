"""`nearest`: a source's top list from an ANN index, as `top_k` gives it from the
exact product (models/served.py)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.candidates.base import exclude, nearest, top_k
from models.two_tower.ann import ItemIndex
from models.vectors import unit_rows


def _seen(columns: np.ndarray, n: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(columns), np.float32),
                          (np.zeros(len(columns), np.int64), columns)), shape=(1, n))


def test_nearest_matches_exact_top_k_without_seen_items() -> None:
    rng = np.random.default_rng(0)
    vectors = unit_rows(rng.standard_normal((3000, 32))).astype(np.float32)
    index = ItemIndex(vectors, exact=False)
    overlaps = []
    for _ in range(20):
        query = rng.standard_normal(32).astype(np.float32)
        exact_scores = (vectors @ query)[None]
        seen = np.sort(np.argsort(-exact_scores[0])[:15:2])  # 8 of the best
        ids, values = nearest(index, query, 50, seen)
        assert ids.shape == values.shape == (50,)
        assert not set(ids) & set(seen), "seen items are left out"
        np.testing.assert_allclose(values, vectors[ids] @ query, rtol=1e-4,
                                   atol=1e-5)  # real inner products, best first
        assert (np.diff(values) <= 1e-6).all()
        exclude(exact_scores, _seen(seen, len(vectors)))
        truth, _ = top_k(exact_scores, 50)
        overlaps.append(len(set(ids) & set(truth[0])) / 50)
    assert np.mean(overlaps) > 0.95, overlaps


def test_nearest_pads_when_the_catalog_runs_out() -> None:
    rng = np.random.default_rng(1)
    vectors = unit_rows(rng.standard_normal((40, 8))).astype(np.float32)
    index = ItemIndex(vectors, exact=False)
    ids, values = nearest(index, vectors[0], 45, np.arange(10))
    assert sorted(ids[ids >= 0]) == list(range(10, 40))
    assert (ids[30:] == -1).all() and np.isneginf(values[30:]).all()


def test_a_server_sets_the_search_breadth_of_every_index() -> None:
    """serve.yaml's `graph.ef_search` reaches each source's index; without it each keeps
    the version's own (the fixture version predates the setting: the default)."""
    from pathlib import Path

    from models.bundle import load_bundle
    from models.served import ServedModel
    from models.two_tower.ann import AnnConfig

    version = Path(__file__).resolve().parents[1] / "fixtures" / "small_version"
    indexes = [s.search_index() for s in ServedModel(load_bundle(version), ef_search=33)
               .bundle.generators.values()]
    assert sorted(i.ef_search for i in indexes if i is not None) == [33, 33]
    own = [s.search_index() for s in ServedModel(load_bundle(version))
           .bundle.generators.values()]
    assert sorted(i.ef_search for i in own if i is not None) == [AnnConfig().ef_search] * 2
    batch = ServedModel(load_bundle(version), search=False, ef_search=33)
    assert all(s.search_index() is None for s in batch.bundle.generators.values())
