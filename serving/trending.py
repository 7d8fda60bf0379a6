"""A version's trending list (`fallback.parquet`, best first), read by one function:
the cold-start candidates of the Recommender and the front's last-resort answer.

The last resort is the front's answer when a version's graph itself failed (a
replica died): trending items marked degraded rather than a 5xx. The front holds
no item rows, so it cannot check categories: under a category filter the answer
is empty rather than wrong.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from serving.requests import RankRequest, RecommendRequest, SimilarItemsRequest
from serving.rules import reason
from stores.registry import FALLBACK_FILE

DEFAULT_K = 10


@dataclass(frozen=True)
class Trending:
    ids: np.ndarray  # item ids as str objects, best first
    scores: np.ndarray  # float64, aligned with ids

    @classmethod
    def read(cls, version_dir: Path) -> Trending:
        ranked = pd.read_parquet(version_dir / FALLBACK_FILE).sort_values("rank")
        return cls(ranked["item_id"].astype(str).to_numpy(dtype=object),
                   ranked["score"].to_numpy(np.float64))

    def last_resort(self, request: BaseModel, version: str, variant: str | None
                    ) -> dict[str, Any]:
        """The answer when the graph failed: a `ranker` request's candidates in the
        caller's order, unscored; otherwise the trending items the request does not
        exclude."""
        common = {"request_id": uuid.uuid4().hex, "model_version": version,
                  "variant": variant, "degraded": True, "fallback": "trending"}
        if isinstance(request, RankRequest):
            return {"items": [{"item_id": i, "score": None, "sources": [], "reasons": []}
                              for i in dict.fromkeys(request.candidates)], **common}
        k, skip = DEFAULT_K, set[str]()
        if isinstance(request, RecommendRequest | SimilarItemsRequest):
            k = 0 if request.filters.category is not None else request.k
            skip = {*request.exclude_ids,
                    *(request.session_items if isinstance(request, RecommendRequest)
                      else [request.item_id])}
        picks = [str(i) for i in self.ids if i not in skip][:k]
        return {"items": [{"item_id": i, "score": None, "sources": ["trending"],
                           "reasons": [reason("trending")]} for i in picks], **common}
