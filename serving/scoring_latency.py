"""The promotion gate's serving budget: p99 of in-process answers for a fixed request
set, two versions alternated.

What a `recommender` request runs in a serving replica (`Recommender.recommend`:
the user's online row, every candidate source, the item rows, the ranker, the
rules), in this process, without HTTP or Ray: the gate compares versions, and the
hops between processes cost both the same. Alternating the versions request by
request keeps a busy machine's noise out of the comparison; a warm-up pass first,
so that neither pays for first-call allocations.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from serving.recommender import Recommender
from serving.requests import RecommendRequest

if TYPE_CHECKING:
    from feast import FeatureStore

WARM_UP = 10  # requests per version before timing


def alternated_p99_ms(version_dirs: dict[str, Path], store: FeatureStore, user_ids: Sequence[str],
                      k: int = 10) -> dict[str, float]:
    """p99 milliseconds per version over one `recommend` per user, alternated."""
    recommenders = {name: Recommender(path, store)
                    for name, path in version_dirs.items()}
    requests = [RecommendRequest(user_id=u, k=k) for u in user_ids]
    for recommender in recommenders.values():
        for n, request in enumerate(requests[:WARM_UP]):
            recommender.recommend(request, f"warm-{n}")
    times: dict[str, list[float]] = {name: [] for name in recommenders}
    for n, request in enumerate(requests):
        for name, recommender in recommenders.items():
            start = time.perf_counter()
            recommender.recommend(request, f"latency-{n}")
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: float(np.quantile(values, 0.99)) for name, values in times.items()}
