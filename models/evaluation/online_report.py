"""The online report as one self-contained HTML page: the A/B tables and plots of
CTR, conversion and revenue with their intervals, beside the guardrails; laid out to
fit a 1280 px window (models/evaluation/html_page.py)."""

from __future__ import annotations

import html
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from models.evaluation.html_page import FIG_MAX_IN, page, png, table

# Revenue is the purchases' `value`: the data contract carries no currency, so the
# report names the unit as what it is.
REVENUE_UNIT = "purchase value"


def _count(v: float) -> str:
    return f"{v:,.0f}"


def _share(v: float) -> str:
    return f"{v:.2%}"


def _money(v: float) -> str:
    return f"{v:,.2f}"


# column: (header, format); in this order.
SHOWN = {"answers": ("answers", _count), "impressions": ("impressions", _count),
         "clicks": ("clicks", _count), "ctr": ("CTR", _share),
         "conversion": ("conversion", _share),
         "revenue": (f"revenue ({REVENUE_UNIT})", _money),
         "revenue_per_impression": ("revenue per impression", "{:.4f}".format),
         "sessions": ("sessions", _count),
         "revenue_per_session": ("revenue per session", "{:.3f}".format),
         "diversity": ("diversity", "{:.3f}".format),
         "long_tail_share": ("long-tail share", "{:.1%}".format)}
KEYS = {"variant": "variant", "model_version": "model version"}
TESTS = {"control": "control", "variant": "variant", "ctr_difference": "CTR difference",
         "z": "z", "p_value": "p-value", "significant_at_5pct": "significant at 5%"}
REVENUE_NOTE = ("<p class='note'>Revenue is the sum of the <code>value</code> of the "
                "purchases attributed to an impression, in the unit the events carry (the "
                "shop's currency); per impression and per session are its means.</p>")


def _table(frame: pd.DataFrame, key: str) -> str:
    if frame.empty:
        return "<p>No impressions in this period.</p>"
    columns = [c for c in SHOWN if c in frame.columns]
    shown = pd.DataFrame({KEYS.get(key, key): frame[key].astype(str)})
    for column in columns:
        header, fmt = SHOWN[column]
        shown[header] = frame[column].map(fmt)
    if "ctr_low" in frame:
        shown.insert(shown.columns.get_loc("CTR") + 1, "CTR 95% interval",
                     [f"{lo:.2%} to {hi:.2%}" for lo, hi in
                      zip(frame["ctr_low"], frame["ctr_high"], strict=True)])
    return table(shown, {c: str for c in shown.columns}, index=False)


def _tests(tests: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        TESTS["control"]: tests["control"].astype(str),
        TESTS["variant"]: tests["variant"].astype(str),
        TESTS["ctr_difference"]: tests["ctr_difference"].map("{:+.2%}".format),
        TESTS["z"]: tests["z"].map("{:.2f}".format),
        TESTS["p_value"]: tests["p_value"].map("{:.3g}".format),
        TESTS["significant_at_5pct"]: tests["significant_at_5pct"].map(
            lambda s: "yes" if s else "no")})
    return table(shown, {c: str for c in shown.columns}, index=False)


def _intervals(frame: pd.DataFrame, key: str) -> str:
    panels = [("ctr", "ctr_low", "ctr_high", "click-through rate"),
              ("conversion", "conversion_low", "conversion_high", "conversion rate"),
              ("revenue_per_impression", "rpi_low", "rpi_high", "revenue per impression")]
    fig, axes = plt.subplots(1, 3, figsize=(FIG_MAX_IN, 0.5 * len(frame) + 2.4))
    y = np.arange(len(frame))
    for ax, (value, low, high, title) in zip(axes, panels, strict=True):
        errors = np.vstack([frame[value] - frame[low], frame[high] - frame[value]])
        ax.errorbar(frame[value], y, xerr=np.nan_to_num(errors), fmt="o", capsize=4)
        ax.set_yticks(y, frame[key].astype(str))
        ax.set_ylim(-0.5, len(frame) - 0.5)
        ax.set_xlim(left=0, right=max(float(np.nanmax(frame[high])) * 1.1, 1e-9))
        ax.set_title(title)
    axes[2].set_xlabel(REVENUE_UNIT)
    fig.suptitle(f"95% intervals per {KEYS.get(key, key)}")
    return png(fig, f"{', '.join(p[3] for p in panels)} per {KEYS.get(key, key)}")


def guardrails_figure(frame: pd.DataFrame, key: str) -> Any:
    """CTR against each guardrail, both axes from 0 (and the shares' up to 1), so that a
    gap looks as big as it is; the tables hold the exact values."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, guard, name in zip(axes, ("diversity", "long_tail_share"),
                               ("diversity", "long-tail share"), strict=True):
        ax.scatter(frame["ctr"], frame[guard])
        for _, row in frame.iterrows():
            ax.annotate(str(row[key]), (row["ctr"], row[guard]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xlim(0, max(float(frame["ctr"].max()) * 1.25, 1e-9))
        ax.set_ylim(0, 1)
        ax.set_xlabel("CTR")
        ax.set_ylabel(name)
        ax.set_title(f"CTR against {name}")
    return fig


def render(tables: dict[str, pd.DataFrame], period: str) -> str:
    by_variant, by_version, tests = tables["by_variant"], tables["by_version"], tables["tests"]
    parts = [f"<h1>RecStack online report</h1><p>{html.escape(period)}</p>",
             "<h2>By variant</h2>", _table(by_variant, "variant")]
    if not by_variant.empty:
        parts += [REVENUE_NOTE, _intervals(by_variant, "variant"),
                  "<h2>A/B tests (CTR against the variant named control, else the one "
                  "with the most impressions; two-proportion z-test)</h2>",
                  _tests(tests) if not tests.empty
                  else "<p>One variant only: nothing to compare.</p>",
                  "<h2>Guardrails: diversity and long-tail exposure beside CTR</h2>",
                  "<p>A variant that wins clicks by showing only the most popular items "
                  "shows up here as lower diversity or long-tail share. The axes start at "
                  "0 (shares run to 1), so a gap looks as large as it is; the table above "
                  "has the exact values.</p>",
                  png(guardrails_figure(by_variant, "variant"),
                      "CTR against diversity and long-tail share")]
    parts += ["<h2>By model version</h2>", _table(by_version, "model_version")]
    if not by_version.empty:
        parts.append(_intervals(by_version, "model_version"))
    return page("RecStack online report", parts)
