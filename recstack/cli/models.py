"""`recstack models ...`: versions in the registry and the stages that point at them."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

import typer
from rich.table import Table

from recstack.cli import checks
from recstack.cli.console import console, fail
from recstack.cli.usage import App
from stores.registry import STAGES, Registry, RegistryError, Stage

app = App(help="Model versions and stages (dev, staging, prod) in a registry.",
          no_args_is_help=True)
REGISTRY = typer.Option(..., "--registry", help="Registry: a directory or an fsspec URI "
                        "(s3://bucket/models, ...).")
STAGE = typer.Option(..., "--stage", help="The stage.")


def _stages_of(registry: Registry) -> dict[str, list[str]]:
    by_version: dict[str, list[str]] = {}
    for stage in STAGES:
        current = registry.stage(stage)
        if current:
            by_version.setdefault(current, []).append(stage)
    return by_version


COLUMNS = ("version", "created", "stages", "ndcg@10", "recall@20", "coverage@10")
# Left out, in this order, while the table is wider than the terminal: a version id
# is never cut, since it is what the other commands take.
DROPPED_FIRST = ("created", "coverage@10", "recall@20", "ndcg@10")


def fitting(rows: list[dict[str, str]], width: int) -> list[str]:
    """The columns that fit `width` whole, each as wide as its header or widest cell."""
    shown = list(COLUMNS)

    def table_width() -> int:  # a cell's padding and border: 3 columns, plus the edge
        return 1 + sum(3 + max([len(c), *(len(r[c]) for r in rows)]) for c in shown)

    for column in DROPPED_FIRST:
        if table_width() <= width:
            break
        shown.remove(column)
    return shown


@app.command("list")
def list_versions(registry: str = REGISTRY) -> None:
    """Every version, oldest first, with its stages and headline metrics."""
    reg = Registry(registry)
    stages = _stages_of(reg)
    rows = []
    for manifest in reg.versions():
        m = manifest.metrics.get("test", manifest.metrics)
        rows.append({"version": manifest.version,
                     "created": f"{manifest.created_at:%Y-%m-%d %H:%M}",
                     "stages": ", ".join(stages.get(manifest.version, [])),
                     **{k: f"{m[k]:.4f}" if isinstance(m.get(k), int | float) else "-"
                        for k in ("ndcg@10", "recall@20", "coverage@10")}})
    if not rows:
        console.print(f"no versions in {registry} yet: `recstack train` writes one")
        return
    shown = fitting(rows, console.width)
    left_out = [c for c in COLUMNS if c not in shown]
    table = Table(title=f"Models in {registry}", caption=(
        f"not shown at {console.width} columns: {', '.join(left_out)}" if left_out
        else None))
    for column in shown:
        table.add_column(column, no_wrap=True,
                         justify="right" if "@" in column else "left")
    for row in rows:
        table.add_row(*(row[c] for c in shown))
    console.print(table)


@app.command()
def show(version: str = typer.Argument(..., help="A version id or a unique prefix of one."),
         registry: str = REGISTRY) -> None:
    """A version's manifest as JSON."""
    try:
        manifest = Registry(registry).manifest(version)
    except RegistryError as exc:
        fail(str(exc))
    console.print_json(json.dumps(manifest.model_dump(mode="json")))


def who(by: str | None) -> str:
    """Who a stage change is recorded as: --by, else the Actions actor, else the user."""
    return by or os.environ.get("GITHUB_ACTOR") or getpass.getuser()


BY = typer.Option(None, "--by", help="Who, for the stage's history (default: "
                  "$GITHUB_ACTOR, else the login name).")


@app.command()
def promote(version: str = typer.Argument(..., help="The version to point the stage at: "
                                          "its id or a unique prefix of it."),
            registry: str = REGISTRY,
            stage: Stage = typer.Option(..., "--to", "--stage", help="The stage."),
            data: Path | None = typer.Option(None, "--data", help="The data directory "
                                             "whose newer events the gates score both "
                                             "versions on (staging and prod)."),
            since: str | None = typer.Option(None, "--since", help="The fresh window's "
                                             "start (default: the later of the two "
                                             "versions' last training events)."),
            policy: Path | None = typer.Option(None, "--policy", help="The thresholds "
                                               "(default: the repository's "
                                               "promotion.yaml)."),
            force: bool = typer.Option(False, "--force", help="Promote even if a gate "
                                       "fails or the stage order is broken (needs "
                                       "--reason; recorded)."),
            reason: str | None = typer.Option(None, "--reason", help="Why it was forced."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Run the gates and say; "
                                         "change nothing (a canary decides instead)."),
            note: str = typer.Option("", help="Why, for the stage's history."),
            by: str | None = BY) -> None:
    """Point a stage at a version, through the gates.

    dev takes any version. staging takes only versions that have been in dev, prod only
    versions that have been in staging, and both only when the candidate passes every
    gate against the stage's current version on the same fresh window (--data):
    NDCG@10 and recall@20 non-inferiority (paired bootstrap over users), catalog
    coverage and long-tail floors, per-segment fairness, the in-process scoring p99, and
    the off-policy CTR estimate where enough exploration traffic was logged. The
    thresholds are promotion.yaml's (every field: contracts/promotion.py). Exit codes: 0
    promoted, 4 refused by a gate or the stage order (the table says which), 1 another
    error (a concurrent change of the stage: run again), 2 bad input."""
    if since is not None:
        checks.instant("--since", since)
    if data is not None:
        checks.data_dir("--data", data)
    from recstack.cli.promotion import gated_promote

    gated_promote(Registry(registry), version, stage, who(by), note, data, since, policy,
                  force, reason, dry_run)


@app.command()
def rollback(registry: str = REGISTRY, stage: Stage = STAGE,
             note: str = typer.Option("", help="Why, for the stage's history."),
             by: str | None = BY) -> None:
    """Point a stage back at the version promoted before its current one.

    A second rollback goes one promotion further back; it never toggles."""
    try:
        entry = Registry(registry).rollback(stage, by=who(by), note=note)
    except RegistryError as exc:
        fail(str(exc))
    console.print(f"{stage} -> {entry.version} ({entry.note})")


@app.command()
def history(registry: str = REGISTRY) -> None:
    """Every stage change, oldest first."""
    for stage, entries in Registry(registry).history().items():
        for entry in entries:
            action = "" if entry.action == "promote" else f"{entry.action}  "
            forced = "FORCED  " if entry.forced else ""
            console.print(f"{entry.at:%Y-%m-%d %H:%M:%S}  {stage:<8} {entry.version}  "
                          f"{action}{forced}by {entry.by}  {entry.note}", highlight=False)
