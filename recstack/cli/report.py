"""`recstack report online`: CTR, conversion and revenue per variant and model
version from the event history, with intervals, A/B tests and guardrails."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from recstack.cli import checks
from recstack.cli.console import EXIT_INVALID_INPUT, console, fail
from recstack.cli.usage import App

if TYPE_CHECKING:
    import pandas as pd

app = App(help="Reports on what serving did.", no_args_is_help=True)

_RELATIVE = re.compile(r"^(\d+)([mhd])$")


def parse_since(text: str | None) -> pd.Timestamp | None:
    """An ISO 8601 time (UTC when no zone is given) or a span back from now:
    `30m`, `24h`, `7d`."""
    import pandas as pd

    if text is None:
        return None
    relative = _RELATIVE.match(text)
    if relative:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[relative.group(2)]
        return pd.Timestamp.now(tz="UTC") - pd.Timedelta(**{unit: int(relative.group(1))})
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        fail(f"--since: {text!r} is neither an ISO 8601 time (2026-11-30T09:00Z) nor a "
             "span such as 30m, 24h or 7d", EXIT_INVALID_INPUT)
    return checks.as_utc(stamp)


@app.command("online")
def online(data: Path = typer.Option(..., "--data", help="Data directory whose history "
                                     "holds the impressions and events."),
           since: str | None = typer.Option(None, help="Only events from then on: an ISO "
                                            "8601 time or a span back from now (7d, 24h)."),
           out: Path = typer.Option(Path("online-report.html"), help="The HTML report.")
           ) -> None:
    """CTR, conversion and revenue per variant, with A/B tests.

    The same per model version, and beside them the guardrails (diversity, long-tail
    exposure); tables in the terminal, tables and plots in the HTML report."""
    from models.data.dataset import read_dataset
    from models.evaluation.online import online_metrics
    from models.evaluation.online_report import render

    start = parse_since(since)
    checks.output_file("--out", out)
    try:
        dataset = read_dataset(data)
    except FileNotFoundError as exc:
        fail(str(exc), EXIT_INVALID_INPUT)
    tables = online_metrics(dataset.events, dataset.items, start)
    by_variant = tables["by_variant"]
    if by_variant.empty:
        console.print("no impressions in this period: serve with impressions on, collect "
                      "events, and consume them into the data directory first")
    else:
        table = Table(title="by variant")
        for column in ("variant", "impressions", "CTR [95%]", "conversion", "rev/impr",
                       "diversity", "long tail"):
            table.add_column(column)
        for _, row in by_variant.iterrows():
            table.add_row(str(row["variant"]), f"{row['impressions']:,}",
                          f"{row['ctr']:.2%} [{row['ctr_low']:.2%}, {row['ctr_high']:.2%}]",
                          f"{row['conversion']:.2%}", f"{row['revenue_per_impression']:.4f}",
                          f"{row['diversity']:.3f}", f"{row['long_tail_share']:.1%}")
        console.print(table)
        for _, test in tables["tests"].iterrows():
            console.print(f"{test['variant']} against {test['control']}: CTR "
                          f"{test['ctr_difference']:+.2%}, z {test['z']:.2f}, "
                          f"p {test['p_value']:.3g}"
                          + (" (significant at 5%)" if test["significant_at_5pct"] else ""))
    period = f"events since {start.isoformat()}" if start is not None else "all events"
    out.write_text(render(tables, period))
    console.print(f"report: {out}")
