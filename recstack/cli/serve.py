"""`recstack serve`: versions behind KServe, each on a Ray Serve graph."""

from __future__ import annotations

from pathlib import Path

import typer

from recstack.cli.console import EXIT_INVALID_INPUT, console, fail
from recstack.registry import Registry, RegistryError


def serve(
    registry: str = typer.Option(..., "--registry", help="Registry directory or fsspec URI."),
    version: str | None = typer.Option(None, help="A version id (default: latest)."),
    stage: str | None = typer.Option(
        None, help="Or a stage (dev, staging, prod), followed as it moves: a promotion "
        "is loaded beside the serving version and takes over once ready."),
    port: int = typer.Option(8080, help="HTTP port for the KServe V1/V2 routes."),
    data: Path | None = typer.Option(
        None, "--data", help="Data directory holding the Feast repo (default: the one "
        "the version was trained on)."),
    config: Path | None = typer.Option(
        None, "--config", help="serve.yaml: replicas and resources per deployment, rules, "
        "cache, A/B variants (see serving/config.py)."),
) -> None:
    """Serve a version: KServe's ModelServer on PORT with the recommender, similar-items
    and ranker models, backed by a Ray Serve graph (Retriever, Ranker, ingress) per
    version, reading features from the online store."""
    import sys

    from serving.config import ConfigError, load_config

    # kserve.model_server parses sys.argv when imported, and argparse reads our
    # --config as an abbreviation of its --configure_logging: it must see none of ours.
    sys.argv = sys.argv[:1]
    from serving.endpoints import serve_forever

    try:
        settings = load_config(config)
    except ConfigError as exc:
        fail(str(exc), EXIT_INVALID_INPUT)
    try:
        reg = Registry(registry)
        manifest = reg.resolve(version, stage)
        for variant in settings.variants:  # every variant's version must exist now
            if variant.version is not None or variant.stage is not None:
                reg.resolve(variant.version, variant.stage)
    except RegistryError as exc:
        fail(str(exc))
    data = data or Path(manifest.data_snapshot.get("data_dir", ""))
    if not (data / "events.parquet").exists():
        fail(f"--data {data}: not a data directory (no events.parquet); pass --data DIR",
             EXIT_INVALID_INPUT)
    following = f"stage {stage}" if stage else f"version {manifest.version}"
    console.print(f"serving {following} ({manifest.version}) on port {port} (data {data})")
    serve_forever(reg, settings, data, version, stage, port)
