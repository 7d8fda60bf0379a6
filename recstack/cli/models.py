"""`recstack models ...`: versions in the registry and the stages that point at them."""

from __future__ import annotations

import getpass
import json

import typer
from rich.table import Table

from recstack.cli.console import console, fail
from recstack.cli.usage import App
from recstack.registry import STAGES, Registry, RegistryError, Stage

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


@app.command()
def promote(version: str = typer.Argument(..., help="The version to point the stage at: "
                                          "its id or a unique prefix of it."),
            registry: str = REGISTRY, stage: Stage = STAGE,
            note: str = typer.Option("", help="Why, for the stage's history.")) -> None:
    """Point a stage at a version (the stage keeps its history)."""
    try:
        entry = Registry(registry).promote(version, stage, by=getpass.getuser(), note=note)
    except RegistryError as exc:
        fail(str(exc))
    console.print(f"{stage} -> {entry.version}")


@app.command()
def rollback(registry: str = REGISTRY, stage: Stage = STAGE) -> None:
    """Point a stage back at the version promoted before its current one.

    A second rollback goes one promotion further back; it never toggles."""
    try:
        entry = Registry(registry).rollback(stage, by=getpass.getuser())
    except RegistryError as exc:
        fail(str(exc))
    console.print(f"{stage} -> {entry.version} ({entry.note})")


@app.command()
def history(registry: str = REGISTRY) -> None:
    """Every stage change, oldest first."""
    for stage, entries in Registry(registry).history().items():
        for entry in entries:
            console.print(f"{entry.at:%Y-%m-%d %H:%M:%S}  {stage:<8} {entry.version}  "
                          f"by {entry.by}  {entry.note}", highlight=False)
