"""Candidate frames over user shards: the per-user half of training, in this process or
as Ray tasks.

Every stage of the pipeline builds one frame: each user's pooled candidates, the
two-tower's affinity for each, and the point-in-time features (models/pipeline.py).
That work is independent per user, so the users are cut into shards, contiguous
ranges on whole score blocks (SCORE_CHUNK: a user is scored in the same block
whatever the number of shards, so the frames agree), and with more than one
shard each runs as a Ray task on the cluster. The fitted sources, the seen
matrix and the join plan go to the object store once; a task returns its
shard's compact frame (numeric columns only), built FRAME_CHUNK users at a time
to bound its memory. What stays in the driver: fitting the sources and the
ranker (Ray Train has its own workers for those), and the ranked lists, whose
unique slots are handed out user by user in one global order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.candidates.base import SCORE_CHUNK, CandidateSource
from models.ranker.candidates import AFFINITY, pool
from models.ranker.features import FeatureJoin, compact, with_features
from models.sources import affinity_source

FRAME_CHUNK = 4 * SCORE_CHUNK  # users per frame part (~1.2M rows); whole score blocks


@dataclass(frozen=True)
class FrameInputs:
    """What every shard reads."""

    sources: dict[str, CandidateSource]
    per_source: dict[str, int]
    seen: sp.csr_matrix  # users x items already interacted with: never candidates
    at: pd.Series  # user index -> the instant its features are taken as of
    join: FeatureJoin  # must pickle when shards run on Ray (the ASOF join's does)
    user_ids: np.ndarray
    item_ids: np.ndarray


def frame_part(inputs: FrameInputs, users: np.ndarray) -> pd.DataFrame:
    """The compact candidate frame of `users`, one part at a time: the full frame with
    its joined text and list columns held 17 GB at 20k users."""
    tower = affinity_source(inputs.sources)
    parts = []
    for start in range(0, len(users), FRAME_CHUNK):
        chunk = users[start:start + FRAME_CHUNK]
        # Grouped by user, each user's rows in pooling order: the same rows in the same
        # order whichever shard and part a user falls in.
        pooled = pool(inputs.sources, inputs.per_source, chunk, inputs.seen).sort_values(
            "user", kind="stable", ignore_index=True)
        pooled[AFFINITY] = tower.pair_scores(pooled["user"].to_numpy(),
                                             pooled["item"].to_numpy())
        parts.append(compact(with_features(pooled, inputs.join, inputs.user_ids,
                                           inputs.item_ids, pooled["user"].map(inputs.at)),
                             keep={"user", "item"}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def shard_bounds(n_users: int, shards: int, block: int = SCORE_CHUNK) -> list[tuple[int, int]]:
    """Up to `shards` contiguous (start, stop) ranges covering n_users, cut at multiples
    of `block`, as even as that allows; fewer when there are fewer blocks."""
    blocks = -(-n_users // block)
    per = np.array_split(np.arange(blocks), min(shards, max(blocks, 1)))
    return [(int(b[0]) * block, min(int(b[-1] + 1) * block, n_users)) for b in per if len(b)]


def candidate_frame(inputs: FrameInputs, users: np.ndarray, shards: int = 1,
                    ray_address: str | None = None, block: int = SCORE_CHUNK
                    ) -> pd.DataFrame:
    """Every user's compact candidate frame, rows in `users` order: in this process for
    one shard, else one Ray task per shard on the cluster at `ray_address` (None: a
    local Ray)."""
    bounds = shard_bounds(len(users), shards, block)
    if len(bounds) <= 1:
        return frame_part(inputs, users)
    import ray

    from models.ray_runtime import ensure_ray

    ensure_ray(ray_address)
    shared = ray.put(inputs)
    task = ray.remote(num_cpus=1)(frame_part)
    parts = ray.get([task.remote(shared, users[a:b]) for a, b in bounds])
    return pd.concat(parts, ignore_index=True)
