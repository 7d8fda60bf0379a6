"""Business rules applied after ranking, each configurable and each tested on its own.

In order: drop excluded items (what the user already interacted with, unless told
otherwise, and the request's `exclude_ids`); keep what passes the attribute filters
(category, availability); pick k with diversity (maximal marginal relevance over
item vectors, or a cap per category); then, at a configured rate, give one slot to
exploration (an item from further down the candidates, marked as such).
Every item keeps the sources that produced it and gets human-readable reasons.

Exploration is drawn uniformly from a bounded pool: the next `explore_pool`
candidates (best first) that passed the filters and were not picked. The pick
carries what an off-policy estimate needs (models/evaluation/off_policy.py): its
propensity, 1 / the pool's size, and the pool's item ids, which the impression
log records. Whether a request explores is a hash of its key, independent of the
user and the items, so the estimate can condition on it. Nothing of this is
computed, or put on the wire, for the answers that do not explore.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from models.sources import reason_of

DIVERSITY = ("mmr", "category_cap", "none")
# Why an item is shown, by what put it there: serving's own paths here, the candidate
# sources' from their registration (models/sources.py).
SERVING_REASONS = {
    "trending": "trending now",
    "session": "related to what you are looking at",
    "exploration": "something new for you",
}


class RuleConfig(BaseModel):
    """serve.yaml's `rules` (and a variant's overrides of them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    diversity: Literal["mmr", "category_cap", "none"] = "mmr"
    diversity_weight: float = Field(default=0.2, ge=0.0, le=1.0)
    """MMR: the share of the score given to novelty in the list."""
    category_cap: int = Field(default=3, ge=1)
    """category_cap: at most this many items per category."""
    exploration_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    """The share of responses with an exploration slot."""
    exploration_slot: int = Field(default=5, ge=1)
    """Its position (1-based), when the list is that long."""
    explore_pool: StrictInt = Field(default=20, ge=1)
    """The slot's item: uniform over this many next candidates (it slices them)."""


@dataclass
class Candidates:
    """Ranked candidates for one request, best first, with what the rules read."""

    item_ids: np.ndarray  # str
    scores: np.ndarray
    sources: list[list[str]]
    categories: np.ndarray  # primary category per item (str or None)
    available: np.ndarray  # bool per item
    vectors: np.ndarray | None = None  # unit item vectors, for MMR


@dataclass
class Pick:
    item_id: str
    score: float
    sources: list[str]
    reasons: list[str] = field(default_factory=list)
    propensity: float | None = None  # exploration only: P(this item | the slot explores)
    explore_pool: list[str] | None = None  # exploration only: the ids it was drawn from

    def as_dict(self) -> dict[str, Any]:
        """The response's item (dataclasses.asdict deep-copies: 1 ms a response); the
        exploration keys only on the exploration item."""
        item = {"item_id": self.item_id, "score": self.score, "sources": list(self.sources),
                "reasons": list(self.reasons)}
        if self.propensity is not None:
            item["propensity"] = self.propensity
            item["explore_pool"] = list(self.explore_pool or [])
        return item


def apply_rules(candidates: Candidates, k: int, exclude: Sequence[str],
                categories: Sequence[str] | None, available_only: bool, config: RuleConfig,
                request_key: str) -> list[Pick]:
    """The final list. `request_key` makes exploration reproducible per request."""
    keep = np.ones(len(candidates.item_ids), dtype=bool)
    if len(exclude):  # np.isin sorts object arrays even against nothing
        keep &= ~np.isin(candidates.item_ids, np.asarray(list(exclude), dtype=object))
    if categories is not None:
        keep &= np.isin(candidates.categories, np.asarray(list(categories), dtype=object))
    if available_only:
        keep &= candidates.available.astype(bool)
    pool = np.flatnonzero(keep)
    chosen = _diverse(candidates, pool, k, config)
    picks = [Pick(str(candidates.item_ids[i]), float(candidates.scores[i]),
                  list(candidates.sources[i])) for i in chosen]
    if _explores(request_key, config.exploration_rate):
        pick = _explore(candidates, pool, chosen, config.explore_pool, request_key)
        if pick is not None:
            slot = min(config.exploration_slot, k, len(picks) + 1) - 1  # within the list
            picks = [*picks[:slot], pick, *picks[slot:]][:k]
    for pick in picks:
        pick.reasons = [reason(s) for s in dict.fromkeys(pick.sources)]
    return picks


def reason(source: str) -> str:
    """The words a served item shows for a source that found it (its name when none)."""
    return SERVING_REASONS.get(source) or reason_of(source) or source


def _explores(request_key: str, rate: float) -> bool:
    return zlib.crc32(f"explore:{request_key}".encode()) / 2**32 < rate


def _explore(candidates: Candidates, pool: np.ndarray, chosen: list[int], size: int,
             request_key: str) -> Pick | None:
    """The exploration item: uniform over the first `size` candidates of the pool not
    chosen (candidate order is best first; assume_unique keeps it), reproducible per
    request; None when every candidate was chosen."""
    explore = np.setdiff1d(pool, chosen, assume_unique=True)[:size]
    if not len(explore):
        return None
    rng = np.random.default_rng(zlib.crc32(request_key.encode()))
    extra = explore[int(rng.integers(len(explore)))]
    return Pick(str(candidates.item_ids[extra]), float(candidates.scores[extra]),
                [*candidates.sources[extra], "exploration"],
                propensity=1.0 / len(explore),
                explore_pool=[str(i) for i in candidates.item_ids[explore]])


def _diverse(candidates: Candidates, pool: np.ndarray, k: int, config: RuleConfig
             ) -> list[int]:
    if config.diversity == "none" or len(pool) <= 1:
        return [int(i) for i in pool[:k]]
    if config.diversity == "category_cap":
        counts: dict[object, int] = {}
        chosen, deferred = [], []
        for i in pool:
            category = candidates.categories[i]
            if counts.get(category, 0) < config.category_cap:
                counts[category] = counts.get(category, 0) + 1
                chosen.append(int(i))
            else:
                deferred.append(int(i))
            if len(chosen) == k:
                return chosen
        return (chosen + deferred)[:k]  # too few categories: fill in score order
    return _mmr(candidates, pool, k, config.diversity_weight)


def _mmr(candidates: Candidates, pool: np.ndarray, k: int, weight: float) -> list[int]:
    """Maximal marginal relevance: each next item maximises (1 - w) x relevance - w x its
    highest cosine with the items already picked; relevance is the score rescaled to
    [0, 1] over the pool, so the weight means the same whatever the score scale."""
    if candidates.vectors is None or weight == 0.0:
        return [int(i) for i in pool[:k]]
    scores = candidates.scores[pool].astype(np.float64)
    span = scores.max() - scores.min()
    relevance = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
    vectors = candidates.vectors[pool]
    gain = (1 - weight) * relevance
    value = gain  # nothing picked yet: no penalty
    closest: np.ndarray | None = None
    chosen: list[int] = []
    for _ in range(min(k, len(pool))):
        best = int(np.argmax(value))
        chosen.append(best)
        similar = (vectors @ vectors[best]).astype(np.float64)
        closest = similar if closest is None else np.maximum(closest, similar)
        value = gain - weight * closest
        value[chosen] = -np.inf
    return [int(pool[i]) for i in chosen]
