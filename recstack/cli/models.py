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


@app.command("list")
def list_versions(registry: str = REGISTRY) -> None:
    """Every version, oldest first, with its stages and headline metrics."""
    reg = Registry(registry)
    stages = _stages_of(reg)
    table = Table(title=f"Models in {registry}")
    for column in ("version", "created", "stages", "ndcg@10", "recall@20", "coverage@10"):
        table.add_column(column)
    for manifest in reg.versions():
        m = manifest.metrics.get("test", manifest.metrics)
        table.add_row(manifest.version, f"{manifest.created_at:%Y-%m-%d %H:%M}",
                      ", ".join(stages.get(manifest.version, [])),
                      *(f"{m[k]:.4f}" if isinstance(m.get(k), int | float) else "-"
                        for k in ("ndcg@10", "recall@20", "coverage@10")))
    console.print(table)


@app.command()
def show(version: str = typer.Argument(..., help="A version id."),
         registry: str = REGISTRY) -> None:
    """A version's manifest as JSON."""
    try:
        manifest = Registry(registry).manifest(version)
    except RegistryError as exc:
        fail(str(exc))
    console.print_json(json.dumps(manifest.model_dump(mode="json")))


@app.command()
def promote(version: str = typer.Argument(..., help="The version to point the stage at."),
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
    """Point a stage back at the version it had before."""
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
