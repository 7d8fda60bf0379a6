"""One model version answering `recommender` requests in process: the work the Ray
Serve graph's deployments will split between them.

Per request: the user's online row (real-time recent items among it), the
session's items, the two-stage scores (serving/online_scoring.py), then the rules
(serving/rules.py). A user with no trained vector and no history gets the
version's trending list, through the same rules. The answer is the V1 prediction
the README documents: items with score, sources and reasons, the request id, the
model version, the variant and whether it is degraded.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore

from models.bundle import load_bundle
from recstack.registry import FALLBACK_FILE, MANIFEST, Manifest
from serving.features import OnlineFeatureJoin
from serving.online_scoring import OnlineScorer, Scored
from serving.requests import RecommendRequest
from serving.rules import Candidates, RuleConfig, apply_rules

DEPTH = 200  # candidates ranked per request before the rules pick k


class Recommender:
    def __init__(self, version_dir: Path, store: FeatureStore,
                 rules: RuleConfig | None = None, variant: str | None = None,
                 score_locally: bool = True) -> None:
        """`score_locally=False` when the scoring runs elsewhere (the graph's Retriever
        and Ranker) and this only prepares requests and applies the rules."""
        self.version = Manifest.model_validate_json(
            (version_dir / MANIFEST).read_text()).version
        self.bundle = load_bundle(version_dir)
        self._scorer = OnlineScorer(self.bundle) if score_locally else None
        self.join = OnlineFeatureJoin(store)
        self.rules = rules or RuleConfig()
        self.variant = variant
        trending = pd.read_parquet(version_dir / FALLBACK_FILE)
        self.trending = trending.sort_values("rank")["item_id"].astype(str).to_numpy()
        self.trending_scores = trending.sort_values("rank")["score"].to_numpy(np.float64)
        self.columns = pd.Index(self.bundle.item_ids)
        vectors = self.bundle.generators["two_tower"].item_vectors  # type: ignore[attr-defined]
        self.vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True),
                                            1e-12)

    def recommend(self, request: RecommendRequest, request_id: str,
                  now: pd.Timestamp | None = None) -> dict[str, Any]:
        at = now if now is not None else pd.Timestamp.now(tz="UTC")
        user, fresh = self.prepare(request)
        assert self._scorer is not None, "built with score_locally=False"
        scored = self._scorer.score(request.user_id, fresh, user, self.join, at, DEPTH)
        return self.answer(request, request_id, scored)

    def prepare(self, request: RecommendRequest) -> tuple[dict[str, Any], list[str]]:
        """The user's online row, and their fresh items, newest first: the session's,
        then the real-time recent items."""
        user = self.join.user(request.user_id)
        recent = user.get("user_realtime__recent_items")
        fresh = list(dict.fromkeys([*reversed(request.session_items),
                                    *(list(recent) if recent is not None else [])]))
        return user, fresh

    def answer(self, request: RecommendRequest, request_id: str, scored: Scored,
               degraded: bool = False) -> dict[str, Any]:
        """The rules over the scored candidates (trending when there are none)."""
        if len(scored.items):
            ids = self.bundle.item_ids[scored.items].astype(str)
            candidates = self._candidates(ids, scored.scores, scored.sources)
        else:  # cold start: nothing known about this user
            candidates = self._candidates(self.trending, self.trending_scores,
                                          [["trending"] for _ in self.trending])
        picks = apply_rules(
            candidates, request.k, exclude=[*request.exclude_ids, *request.session_items],
            categories=request.filters.category,
            available_only=request.filters.available is not False, config=self.rules,
            request_key=request_id)
        return {"items": [asdict(p) for p in picks], "request_id": request_id,
                "model_version": self.version, "variant": self.variant, "degraded": degraded}

    def _candidates(self, ids: np.ndarray, scores: np.ndarray, sources: list[list[str]]
                    ) -> Candidates:
        columns = self.columns.get_indexer(ids)
        vectors = np.zeros((len(ids), self.vectors.shape[1]), dtype=np.float32)
        vectors[columns >= 0] = self.vectors[columns[columns >= 0]]
        available = self.join.item_field(ids, "item_content__available")
        return Candidates(
            item_ids=np.asarray(ids, dtype=object), scores=np.asarray(scores),
            sources=sources,
            categories=self.join.item_field(ids, "item_content__category"),
            available=np.array([a is not False for a in available]), vectors=vectors)
