"""A self-contained HTML evaluation report: tables and matplotlib plots embedded as PNG."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from models.evaluation.split import PROTOCOLS
from models.ranker.exposure import SLOTS

ACCURACY = ("precision", "recall", "ndcg", "map", "hit_rate")
BEYOND = ("coverage@10", "diversity@10", "novelty@10")
BIAS = ("long_tail_share@10", "gini@10")


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _bars(frame: pd.DataFrame, columns: list[str], title: str) -> str:
    columns = [c for c in columns if c in frame.columns]
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.6), squeeze=False)
    for ax, column in zip(axes[0], columns, strict=True):
        ordered = frame[column].sort_values()
        colours = ["#DD8452" if m == "two_stage" else "#4C72B0" for m in ordered.index]
        ax.barh(ordered.index, ordered.to_numpy(), color=colours)
        ax.set_title(column)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    return _png(fig)


def _segments(segments: Mapping[str, Mapping[str, float]]) -> str:
    order = list(next(iter(segments.values())))  # new -> heavy, not alphabetical
    frame = pd.DataFrame(segments).reindex(order)
    fig, ax = plt.subplots(figsize=(10, 3.8))
    frame.plot.bar(ax=ax, rot=0, width=0.85)
    ax.set_ylabel("NDCG@10")
    ax.set_title("NDCG@10 per user segment (by training history length)")
    ax.legend(ncol=4, fontsize=8)
    return _png(fig)


def _exposure(table: pd.DataFrame, floor: float | None, target: float | None) -> str:
    """Each setting tried on the calibration users: coverage against the lower confidence
    bound of NDCG@10 over the best baseline's, one colour per number of unique slots,
    the chosen one ringed, the floor dashed and the coverage target dotted."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    y = "ratio_low" if "ratio_low" in table else "ndcg@10"  # versions before the bootstrap
    heads = table["head"] if "head" in table else pd.Series(SLOTS, index=table.index)
    for head, rows in table.groupby(heads):
        ax.scatter(rows["coverage@10"], rows[y], s=12, label=f"{SLOTS - int(head)} unique slots")
    chosen = table[table["chosen"].astype(bool)] if "chosen" in table else table.iloc[:0]
    ax.scatter(chosen["coverage@10"], chosen[y], s=160, facecolors="none",
               edgecolors="black", linewidths=1.5, label="chosen", zorder=3)
    if floor is not None:
        ax.axhline(floor, linestyle="--", color="grey", label="accuracy floor")
    if target is not None:
        ax.axvline(target, linestyle=":", color="grey", label="coverage target")
    ax.set_xlabel("catalog coverage@10")
    ax.set_ylabel("NDCG@10 / best baseline's (95% lower bound)" if y == "ratio_low"
                  else "NDCG@10")
    ax.set_title("Exposure calibration on P2 users (each point: affinity, penalty, slots)")
    ax.legend(fontsize=8)
    return _png(fig)


def render(version: str, metrics: Mapping[str, Any], ks: list[int]) -> str:
    """HTML for a version's stored evaluation (manifest `metrics`)."""
    models = {"two_stage": metrics["test"], **metrics.get("baselines", {})}
    frame = pd.DataFrame(models).T
    parts = [f"<h1>RecStack evaluation: {html.escape(version)}</h1>",
             f"<p>Protocol: {html.escape(metrics.get('protocol', PROTOCOLS['per_user']))}"
             "; items seen in training are excluded. Baselines and sources ran on the same "
             "split.</p>"]
    shown = [f"{m}@{k}" for k in ks for m in ("ndcg", "recall", "precision", "map")
             if f"{m}@{k}" in frame.columns]
    parts.append(frame[shown + [c for c in BEYOND + BIAS if c in frame.columns]]
                 .sort_values(f"ndcg@{ks[0]}", ascending=False)
                 .to_html(float_format=lambda v: f"{v:.4f}"))
    for k in ks:
        parts.append(_bars(frame, [f"{m}@{k}" for m in ACCURACY], f"Accuracy at {k}"))
    parts.append(_bars(frame, list(BEYOND), "Beyond accuracy"))
    parts.append(_bars(frame, list(BIAS), "Popularity bias (lower Gini, higher long tail = "
                                          "wider exposure)"))
    stages = metrics.get("stages", {})
    if stages:
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v:.4f}</td></tr>"
                       for k, v in stages.items())
        parts.append(f"<h2>Per stage</h2><table>{rows}</table>")
    if metrics.get("exposure"):
        parts.append(_exposure(pd.DataFrame(metrics["exposure"]),
                               stages.get("calibration_floor_ratio",
                                          stages.get("calibration_ndcg_floor")),
                               stages.get("calibration_coverage_target")))
    if metrics.get("ground_truth"):
        truth = pd.DataFrame(metrics["ground_truth"]).T
        parts.append(_bars(truth, ["gt_ndcg@10", "gt_hit_prob@10"],
                           "Served lists against the generator's ground truth (true "
                           "next-choice probabilities)"))
    if metrics.get("segments"):
        parts.append(_segments(metrics["segments"]))
    style = ("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "img{max-width:100%;display:block;margin:1em 0}</style>")
    return f"<!doctype html><html><head><meta charset='utf-8'>{style}</head><body>" \
           f"{''.join(parts)}</body></html>"
