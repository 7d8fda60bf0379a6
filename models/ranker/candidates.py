"""Pooling candidates from several generators into one frame, with each source's
score and rank as features."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.candidates.base import CandidateGenerator

MISSING_RANK = 1_000  # rank given to an item a source did not retrieve
AFFINITY = "two_tower_affinity"  # the two-tower's score for every pooled pair


def pool(generators: Mapping[str, CandidateGenerator], per_source: Mapping[str, int],
         users: np.ndarray, seen: sp.csr_matrix) -> pd.DataFrame:
    """One row per (user row, item column) retrieved by any source, with
    `<source>_score` and `<source>_rank` columns and `n_sources`."""
    return pool_lists({name: generator.recommend(users, per_source[name], seen=seen)
                       for name, generator in generators.items()}, users)


def pool_lists(lists: Mapping[str, tuple[np.ndarray, np.ndarray]], users: np.ndarray
               ) -> pd.DataFrame:
    """`pool` from each source's (ids, scores) top lists, one row of each per user in
    `users` (-1 pads)."""
    frames = []
    for name, (ids, scores) in lists.items():
        rows = np.repeat(users, ids.shape[1])
        ranks = np.tile(np.arange(1, ids.shape[1] + 1), len(users))
        keep = ids.ravel() >= 0
        frames.append(pd.DataFrame({
            "user": rows[keep], "item": ids.ravel()[keep],
            f"{name}_score": scores.ravel()[keep].astype(np.float32),
            f"{name}_rank": ranks[keep].astype(np.float32)}).set_index(["user", "item"]))
    pooled = pd.concat(frames, axis=1, join="outer")
    for name in lists:
        pooled[f"{name}_rank"] = pooled[f"{name}_rank"].fillna(MISSING_RANK)
    pooled["n_sources"] = sum(
        (pooled[f"{name}_rank"] < MISSING_RANK).astype(np.float32) for name in lists)
    return pooled.reset_index()


def label(frame: pd.DataFrame, positives: sp.csr_matrix) -> np.ndarray:
    """1 where the (user, item) pair is a held-out positive."""
    return (np.asarray(positives[frame["user"].to_numpy(), frame["item"].to_numpy()]).ravel()
            > 0).astype(np.float32)
