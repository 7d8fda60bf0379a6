"""`recstack serve`: versions behind KServe, each on a Ray Serve graph."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from recstack.cli import checks
from recstack.cli.console import EXIT_INVALID_INPUT, console, fail
from stores.registry import (
    FEATURE_REGISTRY_FILE,
    Manifest,
    Registry,
    RegistryError,
    Stage,
    single_version,
)

if TYPE_CHECKING:
    from serving.config import ServeConfig
    from serving.http_server import Access


def serve(
    registry: str | None = typer.Option(
        None, "--registry", help="Registry directory or fsspec URI (s3://...)."),
    model_dir: Path | None = typer.Option(
        None, "--model-dir", help="Or the directory of one version (its manifest.json and "
        "artifacts), as KServe's storage initializer leaves it at /mnt/models."),
    version: str | None = typer.Option(None, help="A version id (default: latest)."),
    stage: Stage | None = typer.Option(
        None, help="Or a stage (dev, staging, prod), followed as it moves: a promotion "
        "is loaded beside the serving version and takes over once ready."),
    port: int = typer.Option(8080, min=1, max=65535,
                             help="HTTP port for the KServe V1/V2 routes."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: all)."),
    model_control: bool = typer.Option(
        False, "--model-control",
        help="Mount KServe's model-repository routes (POST /v2/repository/models/NAME/"
        "load and unload), which take a key from RECSTACK_ADMIN_KEYS or "
        "RECSTACK_ADMIN_KEYS_FILE."),
    data: Path | None = typer.Option(
        None, "--data", help="Data directory whose Feast registry to read (default: the "
        "registry snapshot the version carries, or for older versions the data "
        "directory it was trained on)."),
    config: Path | None = typer.Option(
        None, "--config", help="serve.yaml: replicas and resources per deployment, rules, "
        "cache, A/B variants (see serving/config.py)."),
) -> None:
    """Serve a version: KServe's V1 and V2 routes on HOST:PORT for the recommender,
    similar-items and ranker models, each version on a Ray Serve graph (Retriever,
    Ranker, ingress), features from the online store. The version comes from a
    registry (--registry, with --version or --stage) or from a directory
    (--model-dir /mnt/models on KServe); a version carries its Feast registry, so
    no data directory is needed. With RECSTACK_SERVE_API_KEYS
    (or RECSTACK_SERVE_API_KEYS_FILE) set, every route but the health probes and
    /metrics asks for one of those keys."""
    # kserve.model_server parses sys.argv when imported (serve_access below imports
    # kserve), and argparse reads our --config as an abbreviation of its
    # --configure_logging: it must see none of ours.
    sys.argv = sys.argv[:1]
    _check_source(registry, model_dir, version, stage)
    from contracts.settings import TelemetrySettings
    from serving.api_keys import ApiKeyError
    from serving.config import ConfigError, load_config

    environment = checks.settings()  # RECSTACK_*: read once, handed to every replica
    otel = TelemetrySettings.from_env()  # OTEL_*: this process's telemetry, read once
    try:
        settings = load_config(config)
        access = serve_access(model_control)
    except (ConfigError, ApiKeyError) as exc:
        fail(str(exc), EXIT_INVALID_INPUT)
    reg, manifest, served = _resolve(registry, model_dir, version, stage, settings)
    data = _features_from(data, reg, manifest, served, environment.feast_project)
    from serving.endpoints import serve_forever

    following = f"stage {stage}" if stage else f"version {manifest.version}"
    console.print(f"serving {following} ({manifest.version}) on http://{host}:{port} "
                  f"({_described(access, data)})", highlight=False)
    serve_forever(reg, settings, data, version, stage, host, port, access, environment,
                  otel, checks.ray_address())


def _described(access: Access, data: Path | None) -> str:
    guarded = "API keys required" if access.api_keys else "no API key asked"
    control = ", model control on (admin key)" if access.admin_keys else ""
    features = f"data {data}" if data else "features as the version's registry snapshot"
    return f"{guarded}{control}; {features}"


def _check_source(registry: str | None, model_dir: Path | None, version: str | None,
                  stage: Stage | None) -> None:
    """Everything a user typed is checked before Ray, torch and Feast are imported
    (about 15 s): a typo costs no wait."""
    checks.not_both("--registry", registry, "--model-dir", model_dir)
    checks.not_both("--version", version, "--stage", stage)
    if model_dir is not None:
        checks.not_both("--model-dir", model_dir, "--version", version)
        checks.not_both("--model-dir", model_dir, "--stage", stage)
    elif registry is None:
        fail("give --registry URI (a registry) or --model-dir DIR (one version)",
             EXIT_INVALID_INPUT)


def _resolve(registry: str | None, model_dir: Path | None, version: str | None,
             stage: Stage | None, settings: ServeConfig
             ) -> tuple[Registry, Manifest, list[Manifest]]:
    """The registry, the version to serve, and every version a variant serves (each
    must exist now)."""
    try:
        reg = single_version(model_dir) if model_dir else Registry(str(registry))
        manifest = reg.resolve(version, stage)
        served = [manifest] + [
            reg.resolve(variant.version, variant.stage) for variant in settings.variants
            if variant.version is not None or variant.stage is not None]
    except RegistryError as exc:
        fail(str(exc))
    return reg, manifest, served


def _features_from(data: Path | None, registry: Registry, manifest: Manifest,
                   served: list[Manifest], project: str) -> Path | None:
    """The data directory whose Feast registry serving reads: --data, else None when
    every served version carries a registry snapshot (of `project`), else the one the
    version was trained on."""
    if data is None and not all(FEATURE_REGISTRY_FILE in m.artifacts for m in served):
        data = trained_on(manifest)
    if data is not None:
        checks.data_dir("--data", data, hint="pass --data DIR")
    else:
        same_project(registry, served, project)
    return data


def same_project(registry: Registry, served: list[Manifest], project: str) -> None:
    """Each version's feature registry must hold the Feast project serving reads
    (RECSTACK_FEAST_PROJECT), or every replica would fail to start."""
    from stores.feature_store import snapshot_projects

    for manifest in served:
        held = snapshot_projects(registry.fetch(manifest.version) / FEATURE_REGISTRY_FILE)
        if project not in held:
            fail(f"the feature registry of version {manifest.version} holds Feast "
                 f"project(s) {', '.join(sorted(held)) or '(none)'}, not "
                 f"RECSTACK_FEAST_PROJECT={project!r}: serve it with a project it was "
                 "trained in", EXIT_INVALID_INPUT)


def trained_on(manifest: Manifest) -> Path:
    """The data directory a version older than registry snapshots was trained on."""
    return Path(manifest.data_snapshot.get("data_dir", ""))


def serve_access(model_control: bool) -> Access:
    """Who may call what, from the environment (serving/http_server.py)."""
    from serving.api_keys import ApiKeyError, ApiKeys
    from serving.http_server import (
        ADMIN_KEYS_FILE_VAR,
        ADMIN_KEYS_VAR,
        SERVE_KEYS_FILE_VAR,
        SERVE_KEYS_VAR,
        Access,
    )

    api_keys = ApiKeys.from_env(var=SERVE_KEYS_VAR, file_var=SERVE_KEYS_FILE_VAR)
    admin_keys = ApiKeys.from_env(var=ADMIN_KEYS_VAR, file_var=ADMIN_KEYS_FILE_VAR)
    if model_control and admin_keys is None:
        raise ApiKeyError(f"--model-control: set {ADMIN_KEYS_VAR} or {ADMIN_KEYS_FILE_VAR} "
                          "(the keys the load and unload routes ask for)")
    return Access(api_keys, admin_keys if model_control else None)
