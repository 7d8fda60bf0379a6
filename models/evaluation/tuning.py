"""Choosing hyper-parameters without looking at the test period.

A validation split is carved from the training side with the same protocol
(each user's last share of training items), every candidate setting is scored
there, and the winner is refitted on the whole training side.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from models.candidates.base import CandidateGenerator
from models.evaluation.compare import compare
from models.evaluation.split import Split, per_user_temporal

Factory = Callable[..., CandidateGenerator]


@dataclass(frozen=True)
class Tuned:
    name: str
    params: dict[str, Any]
    validation: pd.DataFrame  # one row per setting tried


def grid(space: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    keys = list(space)
    return [dict(zip(keys, values, strict=True)) for values in
            itertools.product(*(space[k] for k in keys))]


def tune(factory: Factory, space: Mapping[str, Sequence[Any]], split: Split,
         items: pd.DataFrame, metric: str = "ndcg@10") -> Tuned:
    """Best setting of `factory(**params)` by `metric` on a validation split carved
    from `split`'s training events."""
    validation = per_user_temporal(split.train_events, items["item_id"])
    settings = grid(space)
    rows = []
    for params in settings:
        generator = factory(**params)
        table = compare(validation, items, [generator], ks=(10,))
        rows.append({**params, metric: float(table.iloc[0][metric])})
    results = pd.DataFrame(rows)
    params = settings[int(results[metric].idxmax())]  # from the grid: types kept as given
    return Tuned(factory(**params).name, params, results)
