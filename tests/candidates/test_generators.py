"""Each candidate generator: a tiny case worked by hand, and real learning on the
synthetic world (well above random)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from models.candidates.als import ALS
from models.candidates.base import CandidateGenerator, HistoryScorer, TrainingData, top_k
from models.candidates.ease import EASE
from models.candidates.knn import ItemKNN, UserKNN
from models.candidates.popularity import CategoryPopularity, Popularity
from models.data.dataset import read_dataset
from models.evaluation.compare import compare
from models.evaluation.split import per_user_temporal

# Users 0-2 like items 0 and 1 together; users 3-4 like items 2 and 3 together.
TINY = sp.csr_matrix(np.array([
    [1, 1, 0, 0, 0],
    [1, 1, 0, 0, 0],
    [1, 0, 0, 0, 0],
    [0, 0, 1, 1, 0],
    [0, 0, 1, 0, 0],
], dtype=np.float32))
TINY_ITEMS = pd.DataFrame({"item_id": [f"i{n}" for n in range(5)],
                           "category": ["a", "a", "b", "b", "c"],
                           "categories": [["a"], ["a"], ["b"], ["b"], ["c"]]})
TINY_EVENTS = pd.DataFrame({"user_id": ["u0"], "item_id": ["i0"], "event_type": ["view"],
                            "timestamp": [pd.Timestamp("2026-01-01", tz="UTC")]})


def _tiny() -> TrainingData:
    return TrainingData(TINY, TINY_EVENTS, TINY_ITEMS, np.array([f"u{n}" for n in range(5)]))


@pytest.mark.parametrize("generator", [ItemKNN(shrink=0.0), UserKNN(shrink=0.0),
                                       EASE(l2=1.0), ALS(factors=4, iterations=30)],
                         ids=lambda g: g.name)
def test_completes_the_pair(generator: CandidateGenerator) -> None:
    """User 2 has item 0 only: the item that goes with it (1) comes first; user 4 gets 3."""
    generator.fit(_tiny())
    ids, _ = generator.recommend(np.array([2, 4]), k=1, seen=TINY)
    assert ids[:, 0].tolist() == [1, 3]


def test_popularity_and_trending() -> None:
    model = Popularity().fit(_tiny())
    assert model.item_scores.tolist() == [3, 2, 2, 1, 0]
    ids, _ = model.recommend(np.array([4]), k=2, seen=TINY)
    assert ids[0].tolist() == [0, 1]  # seen item 2 is excluded
    category = CategoryPopularity(half_life_days=None).fit(_tiny())
    ids, _ = category.recommend(np.array([4]), k=1, seen=TINY)
    assert ids[0].tolist() == [3]  # user 4 likes category b


def test_top_k_pads_with_minus_one() -> None:
    scores = np.array([[0.5, -np.inf, 0.9]])
    ids, values = top_k(scores, 3)
    assert ids.tolist() == [[2, 0, -1]]
    assert values[0, :2].tolist() == [0.9, 0.5]


def test_every_generator_learns_on_the_synthetic_world(small_world: Path) -> None:
    data = read_dataset(small_world)
    split = per_user_temporal(data.events, data.items["item_id"])
    generators = [Popularity(), Popularity(half_life_days=7), CategoryPopularity(),
                  ItemKNN(), UserKNN(), EASE(l2=100.0), ALS(factors=16)]
    table = compare(split, data.items, generators, ks=(10,))
    # A random list of 10 finds on average 10 * |test items| / |catalog| of a user's items.
    test = split.test_matrix()[split.test_users()]
    n_items = test.shape[1]
    random_recall = 10 / n_items
    for name, row in table.iterrows():
        # Taste decides most choices in this world, so the popularity family only has to
        # clear chance well; every personalised model must clear it by 3x.
        floor = 2 if name in ("popularity", "trending", "category_popularity") else 3
        assert row["recall@10"] > floor * random_recall, (name, row["recall@10"])
        assert 0 < row["coverage@10"] <= 1
    # Personalised models beat global popularity on a world of distinct tastes.
    assert table.loc["ease", "ndcg@10"] > table.loc["popularity", "ndcg@10"]
    assert table.loc["item_knn", "ndcg@10"] > table.loc["popularity", "ndcg@10"]


def test_content_similarity_finds_same_category_and_scores_new_items(small_world: Path,
                                                                     tmp_path: Path) -> None:
    from models.candidates.content import ContentSimilarity
    from models.text_embeddings import TextEmbedder

    data = read_dataset(small_world)
    split = per_user_temporal(data.events, data.items["item_id"])
    embedder = TextEmbedder(cache_dir=tmp_path)
    table = compare(split, data.items, [ContentSimilarity(embedder), Popularity()], ks=(10,))
    # Content ignores popularity, which drives much of this world's behaviour: it beats
    # chance clearly and spreads exposure far wider than popularity does.
    assert table.loc["content", "recall@10"] > 2 * 10 / len(data.items)
    assert table.loc["content", "coverage@10"] > 2 * table.loc["popularity", "coverage@10"]
    # Nearest neighbours by content share the category far more often than chance.
    model = ContentSimilarity(embedder)
    vectors = model.item_vectors(data.items.reset_index(drop=True))
    same = []
    for item in range(0, len(data.items), 10):
        sims = vectors @ vectors[item]
        sims[item] = -np.inf
        best = np.argsort(-sims)[:5]
        same.append((data.items["category"].iloc[best] == data.items["category"].iloc[item])
                    .mean())
    assert np.mean(same) > 0.8
    # The cache holds one vector per distinct text; a second pass reads it back.
    assert (tmp_path / "text_embeddings.parquet").exists()
    again = TextEmbedder(cache_dir=tmp_path)
    assert again.encode(["never seen before"]).shape == (1, 384)


def test_history_scoring_matches_training_users_and_serves_new_ones(small_world: Path,
                                                                    tmp_path: Path) -> None:
    """What serving relies on: scoring someone from their interactions alone gives a
    known user the same scores as training did, also after a save and a load, and a new
    user a sensible list."""
    from models.candidates.base import HistoryScorer, TrainingData
    from models.candidates.content import ContentSimilarity
    from models.evaluation.compare import aligned_items
    from models.text_embeddings import TextEmbedder

    data = read_dataset(small_world)
    split = per_user_temporal(data.events, data.items["item_id"])
    training = TrainingData(split.train_matrix(), split.train_events,
                            aligned_items(split, data.items), split.users.ids)
    users = np.arange(0, training.matrix.shape[0], 7)
    content = ContentSimilarity(TextEmbedder(cache_dir=tmp_path))
    for generator in (EASE(l2=100.0), ItemKNN(), Popularity(), content):
        assert isinstance(generator, HistoryScorer)
        generator.fit(training)
        history = (content.decayed_history(training) if generator is content
                   else training.matrix)[users]
        np.testing.assert_allclose(generator.score_history(history),
                                   generator.score(users), rtol=1e-4, atol=1e-5,
                                   err_msg=generator.name)
        _one_row_scoring_matches(generator, history)
        # Saved as plain files and loaded back, it scores histories identically.
        generator.save(tmp_path / generator.name)
        loaded = type(generator).load(tmp_path / generator.name)
        np.testing.assert_array_equal(loaded.score_history(history),
                                      generator.score_history(history))
    with pytest.raises(ValueError, match="holds a ItemKNN, not a EASE"):
        EASE.load(tmp_path / "item_knn")
    # A new user who bought the items of one known user gets that user's EASE list,
    # without those items.
    ease = EASE(l2=100.0).fit(training)
    history = training.matrix[users[:1]]
    ids, _ = ease.recommend_history(history, 10, seen=history)
    expected, _ = ease.recommend(users[:1], 10, seen=training.matrix)
    assert ids.tolist() == expected.tolist()
    assert not set(ids[0]) & set(history.indices)


def _one_row_scoring_matches(generator: HistoryScorer, history: sp.csr_matrix) -> None:
    """Serving's one-row forms (`score_row`, `recommend_row`, content's `profile_row`)
    give each row what the matrix forms give it."""
    from models.candidates.content import ContentSimilarity

    n = history.shape[1]
    for r in range(history.shape[0]):
        row = history[r]
        row.sum_duplicates()
        columns, values = row.indices, row.data
        np.testing.assert_allclose(generator.score_row(columns, values, n),
                                   generator.score_history(row)[0], rtol=1e-5, atol=1e-6,
                                   err_msg=generator.name)
        ids, scores = generator.recommend_row(columns, values, n, 20, columns[values != 0])
        expected_ids, expected = generator.recommend_history(row, 20, seen=row)
        np.testing.assert_allclose(scores, expected[0], rtol=1e-5, atol=1e-6)
        clear = scores > scores[-1] + 1e-5  # above the last place, where ties may swap
        assert set(ids[clear]) == set(expected_ids[0][clear]), generator.name
        assert not set(ids) & set(columns), "seen items are left out"
        if isinstance(generator, ContentSimilarity):
            np.testing.assert_allclose(generator.profile_row(columns, values),
                                       generator._profiles(row)[0], rtol=1e-5, atol=1e-6)


def test_content_text_projection_keeps_inner_products_and_loads_old_versions(
        tmp_path: Path) -> None:
    """The truncated SVD of the catalog's text embeddings: fewer dimensions, the
    catalog's cosines kept closely, the basis saved with the vectors; a version saved
    before the projection existed (no basis file) loads and scores as it was fitted."""
    from models.candidates.content import ContentSimilarity, text_basis

    rng = np.random.default_rng(0)
    # 300 "embeddings" whose energy sits mostly in 20 directions, as real ones' does.
    text = (rng.normal(size=(300, 20)) @ rng.normal(size=(20, 384))
            + 0.05 * rng.normal(size=(300, 384)))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    basis = text_basis(text, 32)
    assert basis is not None and basis.shape == (384, 32)
    np.testing.assert_allclose((text @ basis) @ (text @ basis).T, text @ text.T, atol=0.02)
    assert text_basis(text, 384) is None  # nothing to drop

    class Fixed:  # the embedder: these vectors, in catalog order
        def encode(self, texts: list[str]) -> np.ndarray:
            return text[:len(texts)]

    items = pd.DataFrame({"item_id": [f"i{n}" for n in range(300)],
                          "title": [f"item {n}" for n in range(300)],
                          "description": [f"item number {n}" for n in range(300)],
                          "category": [f"c{n % 5}" for n in range(300)],
                          "categories": [[f"c{n % 5}"] for n in range(300)]})
    events = pd.DataFrame({"user_id": ["u0", "u1"], "item_id": ["i3", "i4"],
                           "timestamp": pd.to_datetime(["2026-01-01", "2026-01-02"])})
    training = TrainingData(sp.csr_matrix(([1.0, 1.0], ([0, 1], [3, 4])), shape=(2, 300)),
                            events, items, np.array(["u0", "u1"]))
    small = ContentSimilarity(Fixed(), text_dims=32).fit(training)  # type: ignore[arg-type]
    assert small.text_basis is None  # under project_from items: every dimension kept
    model = ContentSimilarity(Fixed(), text_dims=32,  # type: ignore[arg-type]
                              project_from=100).fit(training)
    assert model.vectors.shape == (300, 32 + 5)
    np.testing.assert_allclose(np.linalg.norm(model.vectors, axis=1), 1.0, rtol=1e-5)
    model.save(tmp_path / "content")
    loaded = ContentSimilarity.load(tmp_path / "content")
    assert loaded.text_basis is not None
    np.testing.assert_array_equal(loaded.text_basis, model.text_basis)
    # An old version: every dimension, and no basis saved beside the vectors.
    full = ContentSimilarity(Fixed(), text_dims=None).fit(training)  # type: ignore[arg-type]
    full.save(tmp_path / "old")
    (tmp_path / "old" / "params.json").write_text(
        (tmp_path / "old" / "params.json").read_text()
        .replace(', "text_dims": null, "project_from": 2000', "")
        .replace('"text_basis": null', ""))
    assert "text_dims" not in (tmp_path / "old" / "params.json").read_text()
    old = ContentSimilarity.load(tmp_path / "old")
    assert old.text_basis is None and old.vectors.shape == (300, 384 + 5)
    history = sp.csr_matrix(([1.0], ([0], [7])), shape=(1, 300))
    np.testing.assert_array_equal(old.score_history(history), full.score_history(history))


def test_cosine_neighbours_match_a_dense_reference() -> None:
    """The sparse top-k equals cosine with shrinkage computed densely, best `k` per row."""
    import scipy.sparse as sp

    from models.candidates.knn import cosine_neighbours

    rng = np.random.default_rng(3)
    dense = (rng.random((60, 40)) < 0.15) * rng.uniform(0.5, 3.0, (60, 40))
    got = cosine_neighbours(sp.csr_matrix(dense), shrink=2.0, neighbours=5, block=7).toarray()
    norms = np.linalg.norm(dense, axis=1)
    sim = dense @ dense.T / (norms[:, None] * norms[None, :] + 2.0 + 1e-9)
    np.fill_diagonal(sim, 0.0)
    for row in range(len(dense)):
        positive = np.flatnonzero(sim[row] > 0)
        best = positive[np.argsort(-sim[row, positive], kind="stable")][:5]
        assert set(np.flatnonzero(got[row])) == set(best), row
        np.testing.assert_allclose(got[row, best], sim[row, best], rtol=1e-5)


def test_content_versions_carry_their_ann_index(tmp_path: Path) -> None:
    """The content source's ANN index is built once, when the version is saved, with the
    pipeline's settings, and serving reads it back instead of building it per replica;
    a batch (search off) retrieves exactly; a version saved without one builds it."""
    from models.candidates.base import UserHistory, matrix_row
    from models.candidates.content import ContentSimilarity
    from models.two_tower.ann import AnnConfig, ItemIndex

    rng = np.random.default_rng(5)
    text = rng.normal(size=(600, 16))
    text /= np.linalg.norm(text, axis=1, keepdims=True)

    class Fixed:
        def encode(self, texts: list[str]) -> np.ndarray:
            return text[:len(texts)]

    items = pd.DataFrame({"item_id": [f"i{n}" for n in range(600)],
                          "title": [f"item {n}" for n in range(600)],
                          "description": [""] * 600, "tags": [""] * 600,
                          "category": [f"c{n % 7}" for n in range(600)],
                          "categories": [[f"c{n % 7}"] for n in range(600)]})
    events = pd.DataFrame({"user_id": ["u0", "u0"], "item_id": ["i3", "i9"],
                           "timestamp": pd.to_datetime(["2026-01-01", "2026-01-02"])})
    training = TrainingData(sp.csr_matrix(([1.0, 1.0], ([0, 0], [3, 9])), shape=(1, 600)),
                            events, items, np.array(["u0"]))
    ann = AnnConfig(m=8, ef_construction=64, ef_search=40, exact_below=0)
    model = ContentSimilarity(Fixed(), ann=ann).fit(training)  # type: ignore[arg-type]
    model.save(tmp_path / "content")
    assert (tmp_path / "content" / "items.hnsw").exists()
    loaded = ContentSimilarity.load(tmp_path / "content")
    saved = loaded.search_index()
    assert saved is None  # not prepared to search yet
    loaded.prepare(training, search=True)
    index = loaded.search_index()
    assert index is not None and not index.exact and index.config == ann
    trained = matrix_row(training.matrix, 0)
    user = UserHistory(row=0, trained=trained, fresh=[], history=trained,
                       at=pd.Timestamp("2026-01-03"), vector=np.zeros(1, np.float32))
    ids, _ = loaded.retrieve(user, 20, None)
    profile = loaded.profile_row(np.array([3, 9]), np.ones(2))
    exact = set(np.argsort(-(loaded.vectors @ profile))[:20])
    assert len(set(ids) & exact) >= 18  # the graph's answer, close to exact
    batch = ContentSimilarity.load(tmp_path / "content")
    batch.prepare(training, search=False)
    assert batch.search_index() is None
    assert set(batch.retrieve(user, 20, None)[0]) == exact
    for name in ("items.hnsw", "ann.json"):  # a version from before: none saved
        (tmp_path / "content" / name).unlink()
    old = ContentSimilarity.load(tmp_path / "content")
    assert not ItemIndex.saved(tmp_path / "content")
    old.prepare(training, search=True)
    built = old.search_index()
    assert built is not None and built.config == AnnConfig()
