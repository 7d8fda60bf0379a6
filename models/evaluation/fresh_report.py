"""The HTML report of one version scored on a fresh window: the headline figures,
NDCG@10 per segment (the fairness view) and the distribution over users."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from models.evaluation.fresh import segment_columns, segment_table
from models.evaluation.html_page import FIG_MAX_IN, page, png, table

HEADLINE = ("users", "ndcg@10", "recall@20", "coverage@10", "long_tail_share@10")


def _segments_figure(per_user: pd.DataFrame) -> str:
    segments = segment_table(per_user)
    columns = segment_columns(per_user)
    fig, axes = plt.subplots(1, len(columns) + 1, figsize=(FIG_MAX_IN, 3.4), squeeze=False)
    overall = float(per_user["ndcg@10"].mean())
    for ax, column in zip(axes.flat, columns, strict=False):
        part = segments[segments["by"] == column]
        ax.barh([f"{s} ({u})" for s, u in zip(part["segment"], part["users"], strict=True)],
                part["ndcg@10"], color="#4C72B0")
        ax.axvline(overall, color="#DD8452", linestyle="--", label="overall")
        ax.set_title(f"NDCG@10 by {column} (users)")
        ax.set_xlim(left=0)
        ax.legend(loc="lower right", fontsize=8)
    last = axes.flat[len(columns)]
    last.hist(per_user["ndcg@10"], bins=np.linspace(0, 1, 21), color="#55A868")
    last.set_title("NDCG@10 over users")
    last.set_xlabel("NDCG@10")
    return png(fig, "NDCG@10 per segment and over users")


def render(version: str, window: Mapping[str, Any], summary: Mapping[str, Any],
           per_user: pd.DataFrame) -> str:
    headline = pd.DataFrame([{k: summary[k] for k in HEADLINE}], index=[version])
    segments = segment_table(per_user).set_index(["by", "segment"])
    until = window.get("until") or "the end of the data"
    return page(f"{version} on fresh data", [
        f"<h1>{html.escape(version)} on fresh data</h1>",
        f"<p class='note'>Events from {html.escape(str(window['since']))} to "
        f"{html.escape(str(until))}: each user ranked as of the window's start from the "
        "events before it, scored against the items they first touched in the window. "
        "Versions scored on the same window are comparable.</p>",
        table(headline), _segments_figure(per_user), table(segments)])
