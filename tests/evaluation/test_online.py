"""Online metrics and the A/B report from impressions and attributed events."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from models.data.dataset import complete_catalogs, write_dataset
from models.evaluation.online import online_metrics, two_proportion_test, wilson
from recstack.cli import app

TRUE_CTR = {"control": 0.05, "bold": 0.08}


def _world(answers: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two variants, five items an answer; `bold` shows popular items and is clicked
    more, every third click of either becomes a purchase of 10.0."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item_id": [f"i{n}" for n in range(50)],
                          "category": [f"c{n % 5}" for n in range(50)]})
    rows: list[dict[str, object]] = []
    start = pd.Timestamp("2026-11-01", tz="UTC")
    for variant, ctr in TRUE_CTR.items():
        for a in range(answers):
            request, user = f"{variant}-{a}", f"u{a % 300}"
            at = start + pd.Timedelta(minutes=a)
            pool = range(10) if variant == "bold" else range(50)
            for position, item in enumerate(rng.choice(list(pool), 5, replace=False), 1):
                rows.append({"event_id": f"{request}:{position}", "user_id": user,
                             "item_id": f"i{item}", "event_type": "impression",
                             "timestamp": at, "request_id": request,
                             "context": json.dumps({"position": position, "variant": variant,
                                                    "model_version": f"v-{variant}"})})
                if rng.random() < ctr:
                    kind = "purchase" if rng.random() < 1 / 3 else "click"
                    rows.append({"event_id": f"{request}:{position}:{kind}", "user_id": user,
                                 "item_id": f"i{item}", "event_type": kind,
                                 "value": 10.0 if kind == "purchase" else None,
                                 "timestamp": at + pd.Timedelta(seconds=5),
                                 "request_id": request})
    # Not attributable: no request_id, or an item the answer did not show.
    rows.append({"event_id": "stray-1", "user_id": "u1", "item_id": "i1",
                 "event_type": "click", "timestamp": start})
    rows.append({"event_id": "stray-2", "user_id": "u1", "item_id": "not-shown",
                 "event_type": "purchase", "value": 99.0, "timestamp": start,
                 "request_id": "control-0"})
    events = pd.DataFrame(rows)
    for column in ("value", "session_id", "query", "request_id", "context"):
        if column not in events:
            events[column] = None
    return events, items


def test_ctr_intervals_and_the_ab_test_recover_the_truth() -> None:
    events, items = _world()
    tables = online_metrics(events, items)
    by_variant = tables["by_variant"].set_index("variant")
    for variant, truth in TRUE_CTR.items():
        row = by_variant.loc[variant]
        assert row["impressions"] == 7500 and row["answers"] == 1500
        assert row["ctr_low"] < truth < row["ctr_high"], (variant, row["ctr"])
        assert row["conversion"] < row["ctr"]
        # Revenue: 10 per attributed purchase, the stray 99 is nobody's.
        assert row["revenue"] == 10.0 * round(row["conversion"] * row["impressions"])
    test = tables["tests"].iloc[0]
    assert (test["control"], test["variant"]) == ("control", "bold")  # by name, not size
    assert test["p_value"] < 1e-4 and test["significant_at_5pct"]
    # The guardrails show what the bolder variant paid for its clicks.
    assert by_variant.loc["bold", "long_tail_share"] < by_variant.loc["control",
                                                                      "long_tail_share"]
    assert 0 < by_variant.loc["bold", "diversity"] <= 1
    assert set(tables["by_version"]["model_version"]) == {"v-control", "v-bold"}


def test_since_keeps_only_later_events() -> None:
    events, items = _world(answers=200)
    later = online_metrics(events, items, pd.Timestamp("2026-11-01T02:00", tz="UTC"))
    assert later["by_variant"]["answers"].tolist() == [80, 80]  # minutes 120..199


def test_statistics_against_known_values() -> None:
    interval = wilson(10, 100)
    assert abs(interval.value - 0.1) < 1e-12
    assert abs(interval.low - 0.0552) < 1e-3 and abs(interval.high - 0.1744) < 1e-3
    z, p = two_proportion_test(50, 1000, 80, 1000)
    assert abs(z - 2.73) < 0.01 and abs(p - 0.0063) < 0.001


def test_report_command_writes_html_and_names_a_bad_since(tmp_path: Path) -> None:
    events, items = _world(answers=150)
    catalog, users = complete_catalogs(events, None, None)  # rows for every id seen
    catalog["category"] = catalog["item_id"].map(
        items.set_index("item_id")["category"]).fillna("unknown")
    write_dataset(tmp_path / "data", events, catalog, users)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "online", "--data", str(tmp_path / "data"),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "bold against control" in result.output
    page = out.read_text()
    assert page.count("<img") >= 3 and "Guardrails" in page and "v-bold" in page
    bad = CliRunner().invoke(app, ["report", "online", "--data", str(tmp_path / "data"),
                                   "--since", "yesterday-ish"])
    assert bad.exit_code == 2 and "--since" in bad.output
