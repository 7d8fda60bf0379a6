"""The online report as one self-contained HTML page: the A/B tables and plots of
CTR, conversion and revenue with their intervals, beside the guardrails."""

from __future__ import annotations

import html

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from models.evaluation.report import _png  # the offline report's PNG embedding

SHOWN = {"answers": "{:,.0f}", "impressions": "{:,.0f}", "clicks": "{:,.0f}",
         "ctr": "{:.2%}", "conversion": "{:.2%}", "revenue": "{:,.2f}",
         "revenue_per_impression": "{:.4f}", "revenue_per_session": "{:.3f}",
         "sessions": "{:,.0f}", "diversity": "{:.3f}", "long_tail_share": "{:.1%}"}


def _table(frame: pd.DataFrame, key: str) -> str:
    if frame.empty:
        return "<p>No impressions in this period.</p>"
    shown = frame[[key, *[c for c in SHOWN if c in frame.columns]]].copy()
    for column, pattern in SHOWN.items():
        if column in shown:
            shown[column] = shown[column].map(lambda v, p=pattern: p.format(v))
    shown["ctr"] = [f"{c} [{lo:.2%}, {hi:.2%}]" for c, lo, hi in
                    zip(shown["ctr"], frame["ctr_low"], frame["ctr_high"], strict=True)]
    return shown.to_html(index=False, escape=True)


def _intervals(frame: pd.DataFrame, key: str) -> str:
    panels = [("ctr", "ctr_low", "ctr_high", "click-through rate"),
              ("conversion", "conversion_low", "conversion_high", "conversion rate"),
              ("revenue_per_impression", "rpi_low", "rpi_high", "revenue per impression")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    y = np.arange(len(frame))
    for ax, (value, low, high, title) in zip(axes, panels, strict=True):
        errors = np.vstack([frame[value] - frame[low], frame[high] - frame[value]])
        ax.errorbar(frame[value], y, xerr=np.nan_to_num(errors), fmt="o", capsize=4)
        ax.set_yticks(y, frame[key].astype(str))
        ax.set_title(f"{title} (95% interval)")
    return _png(fig)


def _guardrails(frame: pd.DataFrame, key: str) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, guard in zip(axes, ("diversity", "long_tail_share"), strict=True):
        ax.scatter(frame["ctr"], frame[guard])
        for _, row in frame.iterrows():
            ax.annotate(str(row[key]), (row["ctr"], row[guard]), fontsize=8)
        ax.set_xlabel("CTR")
        ax.set_ylabel(guard)
        ax.set_title(f"CTR against {guard.replace('_', ' ')}")
    return _png(fig)


def render(tables: dict[str, pd.DataFrame], period: str) -> str:
    by_variant, by_version, tests = tables["by_variant"], tables["by_version"], tables["tests"]
    parts = [f"<h1>RecStack online report</h1><p>{html.escape(period)}</p>",
             "<h2>By variant</h2>", _table(by_variant, "variant")]
    if not by_variant.empty:
        parts += [_intervals(by_variant, "variant"), "<h2>A/B tests (CTR against the "
                  "variant with the most impressions; two-proportion z-test)</h2>",
                  tests.to_html(index=False, float_format=lambda v: f"{v:.4g}")
                  if not tests.empty else "<p>One variant only: nothing to compare.</p>",
                  "<h2>Guardrails: diversity and long-tail exposure beside CTR</h2>",
                  "<p>A variant that wins clicks by showing only the most popular items "
                  "shows up here as lower diversity or long-tail share.</p>",
                  _guardrails(by_variant, "variant")]
    parts += ["<h2>By model version</h2>", _table(by_version, "model_version")]
    if not by_version.empty:
        parts.append(_intervals(by_version, "model_version"))
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>RecStack online "
            f"report</title><style>{style}</style></head><body>{''.join(parts)}</body></html>")
