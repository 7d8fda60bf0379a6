"""Two-stage training without leakage, evaluation, and the refit for serving.

Periods, per user (the per-user temporal protocol applied twice):
  P3 = each user's last 20% of items            -> evaluation only
  P2 = the last 20% of what remains             -> ranker labels
  P1 = the rest                                 -> candidate generators for the ranker

Stage A fits the generators on P1, pools their candidates for P2's users,
joins Feast features as of each user's first P2 interaction, and trains the
ranker on P2's labels. Two more rankers, each trained on half of the P2 users,
score the other half; on those out-of-fold scores the exposure blend is chosen
against the best baseline on the same users (models/ranker/exposure.py).
Stage B refits the generators on P1+P2 and ranks their candidates for P3's
users with that ranker: the evaluation. Stage C refits the generators on
everything (P3 included) and writes each known user's ranked list for serving,
and keeps those generators with the ranker as the version's bundle
(models/bundle.py) for on-demand scoring.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from feast import FeatureStore
from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.bundle import Bundle
from models.candidates.als import ALS
from models.candidates.base import (
    CandidateGenerator,
    CandidateSource,
    SourceBuild,
    TrainingData,
)
from models.candidates.popularity import Popularity
from models.data.dataset import Dataset
from models.evaluation.compare import KS, aligned_items, category_vectors, list_metrics
from models.evaluation.split import SPLITS, Split
from models.ranker.candidates import AFFINITY, label
from models.ranker.exposure import (
    Blend,
    blend_scores,
    calibrate,
    popularity_z,
    ranked_lists,
    visit_order,
)
from models.ranker.features import matrix, numeric_columns, store_join
from models.ranker.model import Ranker
from models.served import as_table
from models.shards import FrameInputs, candidate_frame
from models.sources import affinity_source, counts, default_counts, make_sources
from models.text_embeddings import TextEmbedder
from models.two_tower.ann import AnnConfig
from models.two_tower.train import TwoTowerConfig

Progress = Callable[[str], None]


class PipelineConfig(BaseModel):
    """`recstack train --config`'s file: every field optional, unknown ones errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Top-n per source (each source's `candidates` unless set here); ~200 distinct
    # candidates per user after overlap. On the 20k x 10k world, 100/70/35/20/35
    # against 150/100/50/30/50 (293 distinct): NDCG@10 and recall@20 the same or
    # better, coverage@10 0.72 -> 0.70, a third less ranking per request.
    per_source: dict[str, int] = Field(default_factory=default_counts)
    two_tower: TwoTowerConfig = Field(default_factory=TwoTowerConfig)
    ease_l2: float = 500.0
    # Evaluation protocol, applied twice (P3, then P2): "per_user" or "global"
    # (models/evaluation/split.py).
    split: Literal["per_user", "global"] = "per_user"
    # Point-in-time join for ranker features: "asof" (fast) or "feast" (Feast's own).
    join_engine: Literal["asof", "feast"] = "asof"
    # 150 -> 100 on the 20k x 10k world: NDCG@10 0.0341 -> 0.0342, recall@20 0.0531 ->
    # 0.0525, coverage@10 0.70 -> 0.73; a third fewer trees to walk per request. 100 ->
    # 60 (retrained on the same world): NDCG@10 0.0340 -> 0.0339, recall@20 0.0525 ->
    # 0.0518, coverage@10 0.60 -> 0.72, gt-NDCG@10 0.366 -> 0.378; the ranker's
    # prediction of 200 candidates, the largest single step of a served request, 1.07 ->
    # 0.87 ms (one paired run; in BENCHMARKS.md's history before 59fcaf6).
    ranker_rounds: int = 60
    # Exposure (models/ranker/exposure.py), chosen on calibration users: keep the 95%
    # lower bound of NDCG@10 over the best baseline's there at least `accuracy_floor`,
    # and within that reach `coverage_target` catalog coverage@10 if any setting can.
    # The target carries room for the noise between calibration and later users over
    # the product's 0.25.
    accuracy_floor: float = 1.05
    coverage_target: float = 0.27
    workers: int = Field(default=0, ge=0)
    # User shards of the per-user work (candidates, affinity, feature joins): above 1,
    # one Ray task each (models/shards.py), on `ray_address`; the frames are the same.
    shards: int = Field(default=1, ge=1)
    # The Ray cluster the workers run on (`recstack train` reads RAY_ADDRESS); None: a
    # local Ray. Where a version trained is not part of it: left out of its params.
    ray_address: str | None = Field(default=None, exclude=True)
    ks: tuple[int, ...] = KS
    serve_top: int = Field(default=100, ge=1)
    # The item indexes of the sources that retrieve by one vector (two-tower, content).
    ann: AnnConfig = Field(default_factory=AnnConfig)

    @field_validator("per_source")
    @classmethod
    def _every_source(cls, per_source: dict[str, int]) -> dict[str, int]:
        """Every registered source's count, in registration order."""
        return counts(per_source)


@dataclass
class PipelineResult:
    metrics: dict[str, dict[str, float]]  # model -> metric -> value, on P3
    stages: dict[str, float]  # candidate recall, ranker lift, ...
    timings: dict[str, float]
    serving_lists: pd.DataFrame  # user_id, item_id, rank, score
    fallback: pd.DataFrame  # item_id, rank, score: for unknown users
    two_tower: dict[str, float]
    config: dict[str, Any]
    exposure: pd.DataFrame  # calibration: affinity, popularity, head, ndcg@10,
    # coverage@10, chosen
    segments: dict[str, dict[str, float]]  # model -> user segment -> NDCG@10
    bundle: Bundle  # stage C's generators and the ranker, for on-demand scoring


def _fitted(config: PipelineConfig, embedder: TextEmbedder,
            on_epoch: Callable[[int, float], None] | None, data: TrainingData
            ) -> dict[str, CandidateSource]:
    generators = make_sources(SourceBuild(config, embedder, on_epoch))
    for generator in generators.values():
        generator.fit(data)
    return generators


def _final_scores(ranker: Ranker, frame: pd.DataFrame, features: list[str],
                  data: TrainingData, blend: Blend) -> np.ndarray:
    """Ranker scores blended with the calibrated exposure settings."""
    return blend_scores(ranker.predict(matrix(frame, features)),
                        frame[AFFINITY].to_numpy(), frame["user"].to_numpy(),
                        _pop_z(data)[frame["item"].to_numpy()], blend)


def _pop_z(data: TrainingData) -> np.ndarray:
    return popularity_z(np.asarray(data.matrix.sum(axis=0)).ravel())


def _data(split: Split, catalog: pd.DataFrame) -> TrainingData:
    return TrainingData(split.train_matrix(), split.train_events, catalog, split.users.ids)


def _boundary(split: Split, users: np.ndarray) -> pd.Series:
    """The instant features are taken as of: the global cutoff, or under the per-user
    split each user's first held-out interaction."""
    if split.cutoff is not None:
        return pd.Series(split.cutoff, index=users)
    first = split.test_pairs.groupby("user_id")["timestamp"].min()
    return pd.Series(first.reindex(split.users.ids[users]).to_numpy(), index=users)


def _candidates(generators: dict[str, CandidateSource], config: PipelineConfig,
                users: np.ndarray, seen: sp.csr_matrix, at: pd.Series, store: FeatureStore,
                split: Split) -> pd.DataFrame:
    """Every user's pooled candidates with their features, as numeric columns only
    (models/shards.py: over `config.shards` user shards)."""
    inputs = FrameInputs(generators, dict(config.per_source), seen, at,
                         store_join(store, config.join_engine), split.users.ids,
                         split.items.ids)
    return candidate_frame(inputs, users, config.shards, config.ray_address)


def _rank(frame: pd.DataFrame, scores: np.ndarray, users: np.ndarray, k: int, blend: Blend,
          user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items per user (rows in `users` order) by blended score, with the blend's
    unique slots handed out in a fixed pseudo-random order of users."""
    return ranked_lists(frame["user"].to_numpy(), frame["item"].to_numpy(), scores, users, k,
                        blend.head, visit_order(user_ids[users]))


@dataclass
class _Run:
    """What every stage of one run reads, and the stage timings it writes."""

    config: PipelineConfig
    store: FeatureStore
    embedder: TextEmbedder
    catalog: pd.DataFrame  # the items, aligned with the splits' columns
    progress: Progress
    on_epoch: Callable[[int, float], None] | None
    timings: dict[str, float] = field(default_factory=dict)
    clock: float = field(default_factory=time.perf_counter)

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self.clock
        self.clock = now

    def fitted(self, split: Split) -> tuple[TrainingData, dict[str, CandidateSource]]:
        data = _data(split, self.catalog)
        return data, _fitted(self.config, self.embedder, self.on_epoch, data)

    def candidates(self, sources: dict[str, CandidateSource], data: TrainingData,
                   users: np.ndarray, at: pd.Series, split: Split) -> pd.DataFrame:
        return _candidates(sources, self.config, users, data.matrix, at, self.store, split)


@dataclass(frozen=True)
class _Ranked:
    """Stage A's outcome: the ranker, its features, the calibrated blend."""

    ranker: Ranker
    features: list[str]
    blend: Blend
    exposure: pd.DataFrame
    stages: dict[str, float]  # the calibration's figures, for PipelineResult.stages


def run(dataset: Dataset, store: FeatureStore, config: PipelineConfig,
        embedder: TextEmbedder, progress: Progress = lambda _: None,
        on_epoch: Callable[[int, float], None] | None = None) -> PipelineResult:
    catalog_ids = dataset.items["item_id"]
    splitter = SPLITS[config.split]
    outer = splitter(dataset.events, catalog_ids)
    inner = splitter(outer.train_events, catalog_ids)
    state = _Run(config, store, embedder, aligned_items(outer, dataset.items), progress,
                 on_epoch)
    state.lap("split")
    ranked = _train_ranker(state, inner)
    metrics, stages, segments, two_tower = _evaluate(state, outer, ranked)
    serving, fallback, bundle = _refit_for_serving(state, dataset, outer, ranked)
    return PipelineResult(metrics, stages | ranked.stages, state.timings, serving, fallback,
                          two_tower, config.model_dump(), ranked.exposure, segments, bundle)


def _train_ranker(state: _Run, inner: Split) -> _Ranked:
    """Stage A: generators on P1, candidates and features for P2's users, the ranker on
    P2's labels, and the exposure blend calibrated on out-of-fold scores."""
    config = state.config
    state.progress("stage A: generators on P1")
    data_a, gens_a = state.fitted(inner)
    state.lap("stage_a_generators")
    state.progress("stage A: candidates and features for P2")
    users_a = inner.test_users()
    frame_a = state.candidates(gens_a, data_a, users_a, _boundary(inner, users_a), inner)
    frame_a["label"] = label(frame_a, inner.test_matrix())
    frame_a = frame_a.sort_values("user", kind="stable").reset_index(drop=True)
    features = numeric_columns(frame_a, {"user", "item", "label"})
    state.lap("stage_a_features")
    state.progress(f"stage A: ranker on {len(frame_a):,} examples, and out of fold for "
                   "calibration")
    ranker, out_of_fold = _cross_fit(frame_a, features, inner.users.ids, config)
    relevant_a = inner.test_matrix()
    calibration_users = np.unique(frame_a["user"].to_numpy())
    baseline = _best_baseline_ndcg(gens_a, data_a, calibration_users, relevant_a)
    blend, exposure_table = calibrate(
        frame_a["user"].to_numpy(), frame_a["item"].to_numpy(), out_of_fold,
        frame_a[AFFINITY].to_numpy(), relevant_a, _pop_z(data_a), baseline,
        config.accuracy_floor, config.coverage_target,
        visit=visit_order(inner.users.ids[calibration_users]))
    state.lap("ranker")
    return _Ranked(ranker, features, blend, exposure_table, {
        "blend_affinity": blend.affinity,
        "blend_popularity": blend.popularity,
        "blend_unique_slots": float(blend.unique_slots),
        "calibration_users": float(len(calibration_users)),
        "calibration_baseline_ndcg@10": float(baseline.mean()),
        "calibration_floor_ratio": config.accuracy_floor,
        "calibration_coverage_target": config.coverage_target,
    })


def _evaluate(state: _Run, outer: Split, ranked: _Ranked
              ) -> tuple[dict[str, dict[str, float]], dict[str, float],
                         dict[str, dict[str, float]], dict[str, float]]:
    """Stage B: generators on P1+P2, the two-stage model and every source (and ALS)
    ranked for P3's users: metrics, candidate stages, segments, the two-tower's own."""
    config = state.config
    state.progress("stage B: generators on P1+P2, evaluation on P3")
    data_b, gens_b = state.fitted(outer)
    two_tower_metrics = affinity_source(gens_b).fit_metrics()
    users_b = outer.test_users()
    frame_b = state.candidates(gens_b, data_b, users_b, _boundary(outer, users_b), outer)
    state.lap("stage_b")
    k_max = max(config.ks)
    recommended, _ = _rank(frame_b, _final_scores(ranked.ranker, frame_b, ranked.features,
                                                  data_b, ranked.blend),
                           users_b, k_max, ranked.blend, outer.users.ids)
    popularity = np.asarray(data_b.matrix.sum(axis=0)).ravel()
    relevant = outer.test_matrix()[users_b]
    vectors = category_vectors(state.catalog)
    lists = {"two_stage": recommended}
    for name, generator in [*gens_b.items(), ("als", ALS().fit(data_b))]:
        lists[name] = generator.recommend(users_b, k_max, seen=data_b.matrix)[0]
    metrics = {name: list_metrics(ids, relevant, config.ks, popularity, vectors)
               for name, ids in lists.items()}
    segments = _segment_ndcg({n: ids[:, :10] for n, ids in lists.items() if n != "als"},
                             relevant, np.asarray(data_b.matrix.sum(axis=1)).ravel()[users_b])
    in_pool = label(frame_b, outer.test_matrix())
    stages = {
        "candidates_per_user": float(len(frame_b) / max(len(users_b), 1)),
        "candidate_recall": float(in_pool.sum() / max(relevant.nnz, 1)),
        "ranker_lift_ndcg@10": metrics["two_stage"]["ndcg@10"] / max(
            max(metrics[n]["ndcg@10"] for n in gens_b), 1e-9),
    }
    state.lap("evaluation")
    return metrics, stages, segments, two_tower_metrics


def _refit_for_serving(state: _Run, dataset: Dataset, outer: Split, ranked: _Ranked
                       ) -> tuple[pd.DataFrame, pd.DataFrame, Bundle]:
    """Stage C: generators refit on everything; every known user's ranked list, the
    cold-start list, and the version's bundle."""
    config = state.config
    state.progress("stage C: refit on everything for serving")
    everything = Split(dataset.events, outer.test_pairs.iloc[:0], outer.users, outer.items,
                       None)
    data_c, gens_c = state.fitted(everything)
    all_users = np.arange(len(outer.users))
    now = pd.Series(dataset.events["timestamp"].max() + pd.Timedelta(seconds=1),
                    index=all_users)
    frame_c = state.candidates(gens_c, data_c, all_users, now, everything)
    ids, scores = _rank(frame_c, _final_scores(ranked.ranker, frame_c, ranked.features,
                                               data_c, ranked.blend),
                        all_users, config.serve_top, ranked.blend, outer.users.ids)
    serving = as_table(ids, scores, outer.users.ids, outer.items.ids)
    fallback_scores = Popularity(half_life_days=30.0).fit(data_c).item_scores
    top = np.argsort(-fallback_scores, kind="stable")[: config.serve_top]
    fallback = pd.DataFrame({"item_id": outer.items.ids[top], "rank": np.arange(1, len(top) + 1),
                             "score": fallback_scores[top]})
    state.lap("stage_c")
    bundle = Bundle(gens_c, ranked.ranker, outer.items.ids, outer.users.ids,
                    dict(config.per_source), ranked.blend, dataset.events)
    return serving, fallback, bundle


SEGMENTS = (("new (<= 5 items)", 0, 5), ("light (6-20)", 6, 20), ("medium (21-100)", 21, 100),
            ("heavy (> 100)", 101, 10**9))


def _segment_ndcg(lists: dict[str, np.ndarray], relevant: sp.csr_matrix,
                  history: np.ndarray) -> dict[str, dict[str, float]]:
    """NDCG@10 per user segment (by training history length): the fairness view."""
    from models.evaluation.metrics import ndcg_at_k

    out: dict[str, dict[str, float]] = {}
    for name, recommended in lists.items():
        out[name] = {}
        for segment, low, high in SEGMENTS:
            mask = (history >= low) & (history <= high)
            if mask.any():
                out[name][f"{segment}, {int(mask.sum())} users"] = ndcg_at_k(
                    recommended[mask][:, :10], relevant[mask], 10)
    return out


def two_folds(user_ids: np.ndarray) -> np.ndarray:
    """0/1 per user: alternate users in hash order. That keeps the folds even whatever
    the ids are; a plain hash % 2 puts every user in one fold when the data was itself
    sampled by that hash (it happened: a half of ml-latest-small)."""
    folds = np.empty(len(user_ids), dtype=np.int64)
    folds[visit_order(user_ids)] = np.arange(len(user_ids)) % 2
    return folds


def _cross_fit(frame: pd.DataFrame, features: list[str], user_ids: np.ndarray,
               config: PipelineConfig) -> tuple[Ranker, np.ndarray]:
    """The ranker on every P2 user with a positive among its candidates, and out-of-fold
    scores for every row (two folds: alternate users in hash order), so that calibration
    sees all P2 users scored by a ranker that never trained on them. Rows must be sorted
    by user."""
    fold_of_user = two_folds(user_ids)
    useful = (frame.groupby("user")["label"].transform("max") > 0).to_numpy()
    folds = fold_of_user[frame["user"].to_numpy()]
    x = matrix(frame, features)
    y, groups = frame["label"].to_numpy(), frame["user"].to_numpy()

    def fitted(rows: np.ndarray) -> Ranker:
        return Ranker(features, rounds=config.ranker_rounds).fit(
            x[rows], y[rows], groups[rows], workers=config.workers,
            ray_address=config.ray_address)

    out_of_fold = np.zeros(len(frame), dtype=np.float32)
    for fold in (0, 1):
        out_of_fold[folds == fold] = fitted(useful & (folds != fold)).predict(x[folds == fold])
    return fitted(useful), out_of_fold


def _best_baseline_ndcg(generators: dict[str, CandidateSource], data: TrainingData,
                        users: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Per-user NDCG@10 (metrics.ndcg_per_user over relevant[users]) of the baseline with
    the best mean on these users, baselines fitted on the same data."""
    from models.evaluation.metrics import ndcg_per_user

    baselines: dict[str, CandidateGenerator] = {
        name: g for name, g in generators.items() if g.baseline} | {"als": ALS().fit(data)}
    scores = [ndcg_per_user(g.recommend(users, 10, seen=data.matrix)[0], relevant[users], 10)
              for g in baselines.values()]
    return max(scores, key=lambda per_user: float(per_user.mean()) if len(per_user) else 0.0)


__all__ = ["PipelineConfig", "PipelineResult", "run"]
