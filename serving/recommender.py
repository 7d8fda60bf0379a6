"""One model version answering `recommender` requests in process: the work the Ray
Serve graph's deployments will split between them.

Per request: the user's online row (real-time recent items among it), the
session's items, the two-stage scores (models/served.py), then the rules
(serving/rules.py). A user with no trained vector and no history gets the
version's trending list, through the same rules; a `category` in the request's
context puts that category's most popular items first. The answer is the V1 prediction
the README documents: items with score, sources and reasons, the request id, the
model version, the variant and whether it is degraded.

Degraded: when the online store fails, the user's row and real-time items are
missing (the session's items and the bundle's training history still count),
item features come from the in-process cache or are missing, and the answer says
`"degraded": true` instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore

from contracts import feature_columns
from models.bundle import load_bundle
from models.candidates.popularity import Popularity
from models.ranker.item_rows import ItemRows
from models.served import Retrieved, Scored, ServedModel
from models.sources import affinity_source
from models.timing import Timings, stage
from models.vectors import unit_rows
from serving.features import FeaturesUnavailable, OnlineFeatureJoin
from serving.requests import RankRequest, RecommendRequest, SimilarItemsRequest
from serving.rules import Candidates, Pick, RuleConfig, apply_rules, reason
from serving.similar import REASONS as SIMILAR_REASONS
from serving.similar import SimilarItems
from serving.trending import Trending
from stores.registry import MANIFEST, Manifest

DEPTH = 200  # candidates ranked per request before the rules pick k
CONTEXT_TRENDING = 50  # a context category's popular items put before global trending
# similar-items and ranker answers: filters only, no reordering, no exploration
AS_RANKED = RuleConfig(diversity="none", exploration_rate=0.0)


def version_of(version_dir: Path) -> str:
    return Manifest.model_validate_json((version_dir / MANIFEST).read_text()).version


@dataclass(frozen=True)
class Found:
    """The first stage's answer: the user's online row, whether the store failed
    reading it, and every source's top list. The graph's Retriever hands it to the
    Ranker; in process, `Recommender.find` makes it."""

    user: dict[str, Any]
    degraded: bool
    retrieved: Retrieved


def find(join: OnlineFeatureJoin, scorer: ServedModel, user_id: str,
         session_items: Sequence[str], at: pd.Timestamp, timings: Timings | None = None
         ) -> Found:
    """The first stage: the user's online row and fresh items (the session's, then
    the real-time recent items, newest first), then every source's top list. When
    the store fails, the row is empty and only the session counts."""
    with stage(timings, "features.user"):
        try:
            user, degraded = join.user(user_id), False
        except FeaturesUnavailable:
            user, degraded = {}, True
    recent = user.get(feature_columns.USER_RECENT_ITEMS)
    fresh = list(dict.fromkeys([*reversed(session_items),
                                *(list(recent) if recent is not None else [])]))
    with stage(timings, "retrieve"):
        retrieved = scorer.retrieve(user_id, fresh, at)
    return Found(user, degraded, retrieved)


class Recommender:
    """One version's answers. Each request runs `find` (the first stage) unless the
    caller brings its `Found` (the graph's Retriever did it in another replica), then
    ranks and applies the rules: the same code in process and in the graph."""

    def __init__(self, version_dir: Path, store: FeatureStore,
                 rules: RuleConfig | None = None, variant: str | None = None,
                 item_staleness_s: float | None = None, retrieves: bool = True,
                 ef_search: int | None = None) -> None:
        """`retrieves` False: this recommender only ranks what another retrieved
        (`ServedModel`'s); `ef_search`: its ANN search breadth, if not the version's."""
        self.version = version_of(version_dir)
        self.bundle = load_bundle(version_dir)
        self.scorer = ServedModel(self.bundle, search=retrieves, ef_search=ef_search)
        self.bundle.release_events()
        self.join = (OnlineFeatureJoin(store) if item_staleness_s is None
                     else OnlineFeatureJoin(store, item_staleness_s))
        self.rules = rules or RuleConfig()
        self.variant = variant
        self.trending = Trending.read(version_dir)
        self._by_category: tuple[float, dict[str, list[str]]] | None = None
        self.columns = pd.Index(self.bundle.item_ids)
        self.similar_items = SimilarItems(self.bundle)
        self.vectors = unit_rows(affinity_source(self.bundle.generators).item_vectors)

    def find(self, user_id: str, session_items: Sequence[str], at: pd.Timestamp,
             timings: Timings | None = None) -> Found:
        return find(self.join, self.scorer, user_id, session_items, at, timings)

    def recommend(self, request: RecommendRequest, request_id: str,
                  at: pd.Timestamp | None = None, found: Found | None = None,
                  rules: RuleConfig | None = None, variant: str | None = None,
                  timings: Timings | None = None) -> dict[str, Any]:
        """The ranked candidates through the rules (trending when there are none).
        `rules`, `variant`: this request's, else the recommender's own."""
        at = at if at is not None else pd.Timestamp.now(tz="UTC")
        if found is None:
            found = self.find(request.user_id, request.session_items, at, timings)
        scored = self.scorer.rank(found.retrieved, found.user, self.join, at, DEPTH, timings)
        with stage(timings, "rules"):
            answer = self._answer(request, request_id, scored, found.degraded or scored.degraded,
                                  rules or self.rules,
                                  variant if variant is not None else self.variant)
        return answer | {"candidates": len(scored.items)}

    def rank(self, request: RankRequest, request_id: str, at: pd.Timestamp | None = None,
             found: Found | None = None, variant: str | None = None,
             timings: Timings | None = None) -> dict[str, Any]:
        """`ranker`: the caller's candidates in the ranker's order; those the version
        does not know come last, unscored, in the order given."""
        at = at if at is not None else pd.Timestamp.now(tz="UTC")
        if found is None:
            found = self.find(request.user_id, (), at, timings)
        ids = list(dict.fromkeys(request.candidates))
        positions = self.columns.get_indexer(ids)
        columns = positions[positions >= 0]
        unknown = [i for i, c in zip(ids, positions, strict=True) if c < 0]
        scored = self.scorer.rank(found.retrieved, found.user, self.join, at, len(columns),
                                  timings, columns)
        picks = [Pick(str(self.bundle.item_ids[c]), float(v), list(by),
                      [reason(s) for s in by])
                 for c, v, by in zip(scored.items, scored.scores, scored.sources, strict=True)]
        rest = [{"item_id": i, "score": None, "sources": [], "reasons": ["not in the model"]}
                for i in unknown]
        return {"items": [*(p.as_dict() for p in picks), *rest], "request_id": request_id,
                "model_version": self.version,
                "variant": variant if variant is not None else self.variant,
                "degraded": found.degraded or scored.degraded, "fallback": None,
                "candidates": len(columns)}

    def _answer(self, request: RecommendRequest, request_id: str, scored: Scored,
                degraded: bool, rules: RuleConfig, variant: str | None) -> dict[str, Any]:
        if len(scored.items):
            ids = self.bundle.item_ids[scored.items].astype(str)
            candidates, complete = self._candidates(ids, scored.scores, scored.sources,
                                                    scored.items, scored.rows)
        else:  # cold start: nothing known about this user
            ids, scores, in_context = self._trending_for(request.context)
            candidates, complete = self._candidates(ids, scores, [["trending"] for _ in ids])
        picks = apply_rules(
            candidates, request.k, exclude=[*request.exclude_ids, *request.session_items],
            categories=request.filters.category,
            available_only=request.filters.available is not False, config=rules,
            request_key=request_id)
        if not len(scored.items) and in_context:
            for pick in picks:
                if pick.item_id in in_context:
                    pick.reasons = [f"trending in {request.context['category']}"]
        # Degraded also when the candidates' categories or availability were unreadable.
        degraded = degraded or not complete
        return {"items": [p.as_dict() for p in picks], "request_id": request_id,
                "model_version": self.version, "variant": variant, "degraded": degraded,
                "fallback": None if len(scored.items) else "trending"}

    def _trending_for(self, context: dict[str, Any]
                      ) -> tuple[np.ndarray, np.ndarray, set[str]]:
        """The cold-start list for a request's context. With a `category` the version
        knows: that category's most popular items first (the version's popularity
        source), then the global trending list, scored by position, 1 - rank / n (a
        linear scale, so that diversity weighs the context's items as it would the
        model's scores); and the items that came from the context. Otherwise the
        trending list."""
        category = context.get("category")
        ranked = (self._popular_by_category().get(category, [])
                  if isinstance(category, str) else [])
        if not ranked:
            return self.trending.ids, self.trending.scores, set()
        first = ranked[:CONTEXT_TRENDING]
        ids = np.array(list(dict.fromkeys([*first, *self.trending.ids])), dtype=object)
        return ids, 1.0 - np.arange(len(ids)) / len(ids), set(first)

    def _popular_by_category(self) -> dict[str, list[str]]:
        """Catalog item ids per category, most popular first; rebuilt when the item
        rows it read may have changed (every `item_staleness_s`)."""
        now = self.join.clock()
        if self._by_category is not None and now - self._by_category[0] < \
                self.join.item_staleness_s:
            return self._by_category[1]
        popularity = self.bundle.generators.get("popularity")
        by_category: dict[str, list[str]] = {}
        if isinstance(popularity, Popularity):
            rows = self.join.lookup(self.bundle.item_ids)
            if not rows.complete:  # the store is down: no context this time, nor cached
                return {}
            categories = rows.field(feature_columns.ITEM_CATEGORY)
            for column in np.argsort(-popularity.item_scores, kind="stable"):
                category = categories[column]
                if isinstance(category, str):
                    by_category.setdefault(category, []).append(str(self.bundle.item_ids[column]))
        self._by_category = (now, by_category)
        return by_category

    def _candidates(self, ids: np.ndarray, scores: np.ndarray, sources: list[list[str]],
                    columns: np.ndarray | None = None, rows: ItemRows | None = None
                    ) -> tuple[Candidates, bool]:
        """The rules' view of these items, and whether their rows could all be read.
        `columns`: the items' columns in the version, when the caller has them (pandas'
        get_indexer costs ~0.3 ms a call); `rows`: their feature rows, when the ranker
        has just looked them up (another lookup of 200 items cost ~0.2 ms)."""
        if rows is None:
            rows = self.join.lookup(ids)
        if columns is None:
            columns = self.columns.get_indexer(ids)
        vectors = np.zeros((len(ids), self.vectors.shape[1]), dtype=np.float32)
        vectors[columns >= 0] = self.vectors[columns[columns >= 0]]
        available = rows.field(feature_columns.ITEM_AVAILABLE)
        return Candidates(
            item_ids=np.asarray(ids, dtype=object), scores=np.asarray(scores),
            sources=sources,
            categories=rows.field(feature_columns.ITEM_CATEGORY),
            available=available != False, vectors=vectors  # noqa: E712 (elementwise)
        ), rows.complete

    def similar(self, request: SimilarItemsRequest, request_id: str,
                variant: str | None = None, timings: Timings | None = None
                ) -> dict[str, Any]:
        """The k items most like one item; trending when the version does not know it.
        Every answer carries its candidate count, for the front's telemetry (the front
        removes it)."""
        with stage(timings, "similar"):
            known = self.similar_items.knows(request.item_id)
            if known:
                ids, scores, signals = self.similar_items.similar(request.item_id)
            else:
                ids, scores = self.trending.ids, self.trending.scores
                signals = [["trending"] for _ in ids]
        with stage(timings, "rules"):
            candidates, complete = self._candidates(ids, scores, signals)
            picks = apply_rules(candidates, request.k,
                                exclude=[*request.exclude_ids, request.item_id],
                                categories=request.filters.category,
                                available_only=request.filters.available is not False,
                                config=AS_RANKED, request_key=request_id)
            for pick in picks:
                if known:
                    pick.reasons = [SIMILAR_REASONS[s] for s in pick.sources]
        return {"items": [p.as_dict() for p in picks], "request_id": request_id,
                "model_version": self.version,
                "variant": variant if variant is not None else self.variant,
                "degraded": not complete, "fallback": None if known else "trending",
                "candidates": len(ids)}
