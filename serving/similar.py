"""`similar-items`: the items most like one item, from three signals of a version.

- embedding: cosine between the two-tower's item vectors (items the same users pick);
- collaborative: item-kNN's shrunk co-occurrence cosine;
- content: cosine between text-and-category vectors (reaches items nobody has
  interacted with yet).

Each signal gives its top `depth` neighbours; they are blended by reciprocal rank
fusion (sum over signals of 1 / (60 + rank), Cormack et al. 2009), which needs no
calibration between the signals' score scales. Every result names the signals
that produced it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.bundle import Bundle

RRF_K = 60
# The signals, in the order a result names them; each comes from the source whose
# `signal` it is (CandidateSource.similar_to).
REASONS = {"embedding": "chosen by the same people",
           "content": "similar description and category",
           "collaborative": "often chosen together"}


class SimilarItems:
    def __init__(self, bundle: Bundle, depth: int = 100) -> None:
        """After the bundle's sources are ready to serve (models.served.ServedModel)."""
        self.items = pd.Index(bundle.item_ids.astype(str))
        self.depth = depth
        by_signal = {s.signal: s for s in bundle.generators.values() if s.signal}
        self.sources = [(signal, by_signal[signal]) for signal in REASONS
                        if signal in by_signal]

    def knows(self, item_id: str) -> bool:
        return item_id in self.items

    def similar(self, item_id: str) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        """(item ids, fused scores, signals) best first, the item itself left out."""
        column = int(self.items.get_loc(item_id))
        lists = {signal: self._top(source.similar_to(column), column)
                 for signal, source in self.sources}
        fused: dict[int, float] = {}
        signals: dict[int, list[str]] = {}
        for signal, ranked in lists.items():
            for rank, item in enumerate(ranked, start=1):
                fused[item] = fused.get(item, 0.0) + 1.0 / (RRF_K + rank)
                signals.setdefault(item, []).append(signal)
        order = sorted(fused, key=lambda i: (-fused[i], i))
        return (np.asarray(self.items[order], dtype=object),
                np.array([fused[i] for i in order]), [signals[i] for i in order])

    def _top(self, scores: np.ndarray, column: int) -> list[int]:
        scores = scores.astype(np.float64, copy=True)
        scores[column] = -np.inf
        n = min(self.depth, len(scores) - 1)
        best = np.argpartition(-scores, n - 1)[:n] if n > 0 else np.zeros(0, np.int64)
        best = best[np.isfinite(scores[best]) & (scores[best] > 0)]
        return [int(i) for i in best[np.argsort(-scores[best], kind="stable")]]
