"""`recstack serve`: a version behind KServe, on a Ray Serve graph."""

from __future__ import annotations

from pathlib import Path

import typer

from recstack.cli.console import EXIT_INVALID_INPUT, console, fail
from recstack.registry import Registry, RegistryError


def serve(
    registry: str = typer.Option(..., "--registry", help="Registry directory or fsspec URI."),
    version: str | None = typer.Option(None, help="A version id (default: latest)."),
    stage: str | None = typer.Option(None, help="Or a stage: dev, staging, prod."),
    port: int = typer.Option(8080, help="HTTP port for the KServe V1/V2 routes."),
    data: Path | None = typer.Option(
        None, "--data", help="Data directory holding the Feast repo (default: the one "
        "the version was trained on)."),
) -> None:
    """Serve a version: KServe's ModelServer on PORT, models backed by a Ray Serve graph
    (Retriever, Ranker, recommender ingress) reading features from the online store."""
    from serving.graph import serve_forever

    try:
        reg = Registry(registry)
        manifest = reg.resolve(version, stage)
        local = Path(reg.fetch(manifest.version))
    except RegistryError as exc:
        fail(str(exc))
    data = data or Path(manifest.data_snapshot.get("data_dir", ""))
    if not (data / "events.parquet").exists():
        fail(f"--data {data}: not a data directory (no events.parquet); pass --data DIR",
             EXIT_INVALID_INPUT)
    console.print(f"serving version {manifest.version} on port {port} (data {data})")
    serve_forever(local, data, port)
