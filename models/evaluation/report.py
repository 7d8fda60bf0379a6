"""A self-contained HTML evaluation report: tables and matplotlib plots embedded as PNG,
laid out to fit a 1280 px window (models/evaluation/html_page.py)."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from models.evaluation.html_page import FIG_MAX_IN, label, number, page, png, table
from models.evaluation.split import PROTOCOLS
from models.ranker.exposure import SLOTS

ACCURACY = ("precision", "recall", "ndcg", "map", "hit_rate")
BEYOND = ("coverage@10", "diversity@10", "novelty@10")
BIAS = ("long_tail_share@10", "gini@10")
EXPOSURE_TITLE = "Exposure calibration on P2 users (each point: affinity, penalty, slots)"
PANELS_PER_ROW = 3  # three 4 in panels: the page's 12 in
NAMES = {"two_stage": "two-stage", "two_tower": "two-tower", "item_knn": "item-kNN",
         "user_knn": "user-kNN", "ease": "EASE", "als": "ALS", "ground_truth": "ground truth",
         "ndcg": "NDCG", "map": "MAP", "precision": "precision", "recall": "recall",
         "hit_rate": "hit rate", "coverage": "coverage", "diversity": "diversity",
         "novelty": "novelty", "long_tail_share": "long-tail share", "gini": "Gini",
         "gt_ndcg": "ground-truth NDCG", "gt_hit_prob": "ground-truth hit probability"}
STAGES = {
    "candidates_per_user": "candidates per user",
    "candidate_recall": "candidate recall (held-out items among the candidates)",
    "ranker_lift_ndcg@10": "ranker lift: NDCG@10 over the best single source's",
    "blend_affinity": "chosen blend: two-tower affinity weight",
    "blend_popularity": "chosen blend: popularity penalty",
    "blend_unique_slots": f"chosen blend: unique slots of the top {SLOTS}",
    "calibration_users": "calibration users (P2)",
    "calibration_baseline_ndcg@10": "calibration: the best baseline's NDCG@10",
    "calibration_floor_ratio": "calibration: accuracy floor (x the best baseline's NDCG@10)",
    "calibration_coverage_target": "calibration: catalog coverage@10 target",
}


def _bars(frame: pd.DataFrame, columns: list[str], title: str) -> str:
    columns = [c for c in columns if c in frame.columns]
    per_row = min(len(columns), PANELS_PER_ROW)
    rows = math.ceil(len(columns) / per_row)
    fig, axes = plt.subplots(rows, per_row, figsize=(FIG_MAX_IN / PANELS_PER_ROW * per_row,
                                                     3.2 * rows), squeeze=False)
    for ax, column in zip(axes.flat, columns, strict=False):
        ordered = frame[column].sort_values()
        colours = ["#DD8452" if m == "two_stage" else "#4C72B0" for m in ordered.index]
        ax.barh([label(m, NAMES) for m in ordered.index], ordered.to_numpy(), color=colours)
        ax.set_xlim(left=0)
        ax.set_title(label(column, NAMES))
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(columns):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return png(fig, title)


def _first_number(text: str) -> int:
    found = re.search(r"\d+", text)
    return int(found.group()) if found else 0


def _segments(segments: Mapping[str, Mapping[str, float]]) -> str:
    # New -> heavy users: the manifest's JSON sorts keys alphabetically, so order by the
    # first bound in each label ("new (<= 5 items)", "light (6-20)", ...).
    order = sorted(next(iter(segments.values())), key=_first_number)
    frame = pd.DataFrame(segments).reindex(order)
    frame.columns = [label(c, NAMES) for c in frame.columns]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    frame.plot.bar(ax=ax, rot=0, width=0.85)
    ax.set_ylabel("NDCG@10")
    title = "NDCG@10 per user segment (by training history length)"
    ax.set_title(title)
    ax.legend(ncol=len(frame.columns), fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.12))  # below the plot, clear of the bars
    return png(fig, title)


def _plotted(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The settings with both coordinates, and the y column."""
    y = "ratio_low" if "ratio_low" in table else "ndcg@10"  # versions before the bootstrap
    return table[table[["coverage@10", y]].notna().all(axis=1)], y


def exposure_figure(table: pd.DataFrame, floor: float | None, target: float | None
                    ) -> Any:
    """Each setting tried on the calibration users: coverage against the lower confidence
    bound of NDCG@10 over the best baseline's, one colour per number of unique slots
    among the settings plotted (a legend entry is a colour some point has), the chosen
    one ringed, the floor dashed and the coverage target dotted."""
    fig, ax = plt.subplots(figsize=(9, 4.6))
    plotted, y = _plotted(table)
    heads = table["head"] if "head" in table else pd.Series(SLOTS, index=table.index)
    groups = list(plotted.groupby(SLOTS - heads.loc[plotted.index].astype(int)))
    # Settings often coincide (every one at full coverage on a small catalog): each
    # colour is a ring a size smaller than the one before, so every colour the legend
    # lists stays visible where points fall on each other.
    for n, (slots, rows) in enumerate(groups):
        ax.scatter(rows["coverage@10"], rows[y], s=12 + 22 * (len(groups) - 1 - n),
                   facecolors="none" if n < len(groups) - 1 else None, linewidths=1.2,
                   edgecolors=f"C{n}", color=f"C{n}", zorder=2 + n,
                   label=f"{slots} unique slot{'s' if slots != 1 else ''}")
    chosen = plotted[plotted["chosen"].astype(bool)] if "chosen" in plotted else \
        plotted.iloc[:0]
    if len(chosen):
        ax.scatter(chosen["coverage@10"], chosen[y], s=160, facecolors="none",
                   edgecolors="black", linewidths=1.5, label="chosen", zorder=3)
    if floor is not None:
        ax.axhline(floor, linestyle="--", color="grey", label=f"accuracy floor ({floor:g})")
    if target is not None:
        ax.axvline(target, linestyle=":", color="grey", label=f"coverage target ({target:g})")
    ax.set_xlim(left=0)
    ax.set_xlabel("catalog coverage@10")
    ax.set_ylabel("NDCG@10 / best baseline's (95% lower bound)" if y == "ratio_low"
                  else "NDCG@10")
    ax.set_title(EXPOSURE_TITLE)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _exposure(table: pd.DataFrame, floor: float | None, target: float | None) -> str:
    """The plot, with a sentence above it when no setting cleared the floor."""
    plotted, y = _plotted(table)
    note = ""
    if floor is not None and len(plotted) and not (plotted[y] >= floor).any():
        measure = ("the 95% lower bound of its NDCG@10 over the best baseline's"
                   if y == "ratio_low" else "its NDCG@10")
        note = (f"<p class='note'><b>No setting cleared the accuracy floor</b>: for none "
                f"of the {len(plotted)} settings tried was {measure} at least {floor:g} "
                f"(the highest: {plotted[y].max():.3f}), so the most accurate one was "
                "chosen, whatever its coverage.</p>")
    return note + png(exposure_figure(table, floor, target), EXPOSURE_TITLE)


def _metric_table(frame: pd.DataFrame, metrics: list[str]) -> str:
    """Metrics down, models across (best first): seven models fit the page where a
    dozen metrics across did not."""
    shown = frame[metrics].T
    shown.index = [label(m, NAMES) for m in shown.index]
    shown.columns = [label(m, NAMES) for m in shown.columns]
    return table(shown, {c: "{:.4f}".format for c in shown.columns})


def _stages(stages: Mapping[str, float]) -> str:
    frame = pd.DataFrame({"value": [number(v) for v in stages.values()]},
                         index=[label(k, STAGES) for k in stages])
    return "<h2>Per stage</h2>" + table(frame, {"value": str})


def render(version: str, metrics: Mapping[str, Any], ks: list[int]) -> str:
    """HTML for a version's stored evaluation (manifest `metrics`)."""
    models = {"two_stage": metrics["test"], **metrics.get("baselines", {})}
    frame = pd.DataFrame(models).T.sort_values(f"ndcg@{ks[0]}", ascending=False)
    parts = [f"<h1>RecStack evaluation: {html.escape(version)}</h1>",
             f"<p>Protocol: {html.escape(metrics.get('protocol', PROTOCOLS['per_user']))}"
             "; items seen in training are excluded. Baselines and sources ran on the same "
             "split.</p>", "<h2>Accuracy</h2>"]
    accuracy = [f"{m}@{k}" for k in ks for m in ("ndcg", "recall", "precision", "map")
                if f"{m}@{k}" in frame.columns]
    parts.append(_metric_table(frame, accuracy))
    beyond = [c for c in BEYOND + BIAS if c in frame.columns]
    if beyond:
        parts += ["<h2>Beyond accuracy and popularity bias</h2>",
                  _metric_table(frame, beyond)]
    for k in ks:
        parts.append(_bars(frame, [f"{m}@{k}" for m in ACCURACY], f"Accuracy at {k}"))
    parts.append(_bars(frame, list(BEYOND), "Beyond accuracy"))
    parts.append(_bars(frame, list(BIAS), "Popularity bias (lower Gini, higher long tail = "
                                          "wider exposure)"))
    stages = metrics.get("stages", {})
    if stages:
        parts.append(_stages(stages))
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
    return page(f"RecStack evaluation: {version}", parts)
