"""`recstack train` and `recstack recommend`: the two-stage model into the registry, and
batch recommendations out of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import typer
from rich.table import Table

from recstack.cli import checks, features
from recstack.cli.console import EXIT_INVALID_INPUT, console, errors, fail, steps
from recstack.cli.train_config import check_workers, load_config, read_config
from stores.registry import (
    FALLBACK_FILE,
    RECS_FILE,
    Manifest,
    Registry,
    RegistryError,
    Stage,
)

if TYPE_CHECKING:
    from contracts.settings import Settings
    from models.pipeline import PipelineResult

SHORT = {"long_tail_share": "long-tail"}  # in a header; the manifest keeps the full name
SHOWN = ("ndcg@10", "recall@20", "precision@10", "map@10", "coverage@10", "long_tail_share@10")


# The two kinds of rows a recommendation file mixes, said wherever both are printed.
COLD_SCORES = ("note: cold-start users get the trending list, scored by trending weight "
               "(interactions, recent ones counting more); known users' scores are the "
               "model's (z-scores within their candidates). The scales differ: compare "
               "ranks, not scores.")


def _header(metric: str) -> str:
    """`precision@10` over two lines, `@10` under `precision`: six metric columns and
    the model's fit 80 columns with every header whole."""
    name, _, k = metric.partition("@")
    return f"{SHORT.get(name, name)}\n@{k}"


def metrics_table(metrics: dict[str, dict[str, float]], protocol: str) -> Table:
    """The held-out figures of the two-stage model (first, in bold) and of each
    baseline, best NDCG@10 first."""
    table = Table(title="Held-out evaluation", caption=protocol)
    table.add_column("model", no_wrap=True)
    for metric in SHOWN:
        table.add_column(_header(metric), justify="right")
    order = ["two_stage", *sorted((m for m in metrics if m != "two_stage"),
                                  key=lambda m: -metrics[m]["ndcg@10"])]
    for model in order:
        style = "bold green" if model == "two_stage" else None
        table.add_row(model, *(f"{metrics[model][m]:.4f}" for m in SHOWN), style=style)
    return table


def _print_training(result: PipelineResult, protocol: str) -> None:
    """The held-out figures, the stages' and the timings' summaries."""
    console.print(metrics_table(result.metrics, protocol))
    stages = result.stages
    console.print(f"candidates per user {stages['candidates_per_user']:.0f}, candidate recall "
                  f"{stages['candidate_recall']:.3f}, ranker lift on NDCG@10 "
                  f"{stages['ranker_lift_ndcg@10']:.2f}x the best single source")
    console.print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()))


def _against_truth(data: Path, result: PipelineResult, events: pd.DataFrame
                   ) -> dict[str, dict[str, float]] | None:
    """On generated data: the served lists, popularity and the truth's own lists, scored
    against the world's true next-choice probabilities (printed and kept)."""
    from models.publish import against_truth

    scores = against_truth(data, result, events)
    if scores is not None:
        console.print("against the generator's ground truth (true next-choice probabilities): "
                      + ", ".join(f"{name} gt-NDCG@10 {row['gt_ndcg@10']:.3f}"
                                  for name, row in scores.items()))
    return scores


def _after_publish(reg: Registry, version: str, version_file: Path | None,
                   promote: Stage | None) -> None:
    """--version-file and --promote dev, once the version is written."""
    if version_file is not None:
        with version_file.open("a") as handle:
            handle.write(f"version={version}\n")
    if promote:
        try:
            reg.promote(version, promote, by="recstack train")
        except RegistryError as exc:
            fail(str(exc))
        console.print(f"{promote} -> {version}")


def train(
    data: Path = typer.Option(..., "--data", help="Data directory (generated or imported)."),
    registry: str = typer.Option(..., "--registry", help="Registry directory or fsspec URI."),
    workers: int = typer.Option(0, min=0, help="Ray Train workers for the two-tower and the "
                                "ranker; 0 trains in this process (fastest on small data)."),
    epochs: int | None = typer.Option(None, min=1,
                                      help="Two-tower epochs (overrides the config)."),
    shards: int | None = typer.Option(
        None, min=1, help="User shards of the per-user work (candidates and feature "
        "joins), each a Ray task above 1 (overrides the config; default 1)."),
    config: Path | None = typer.Option(None, "--config", help="YAML/JSON PipelineConfig."),
    version_file: Path | None = typer.Option(
        None, "--version-file", help="Also append `version=<id>` to this file (a "
        "workflow's $GITHUB_OUTPUT)."),
    promote: Stage | None = typer.Option(None, help="Also point dev at the new version "
                                         "(staging and prod go through `recstack models "
                                         "promote`, which runs the gates)."),
) -> None:
    """Train the two-stage model into the registry as a new version.

    Trains the candidate generators and the ranker, evaluates them on a held-out later
    period, refits everything on all the data, and writes the version."""
    # Everything a user typed is checked before the imports and the work (tens of seconds).
    features.require_data(data)
    check_workers(workers)
    if promote not in (None, "dev"):
        fail(f"--promote {promote}: train promotes to dev only; {promote} takes a version "
             "through the gates: `recstack models promote VERSION --to "
             f"{promote} --data DIR`", EXIT_INVALID_INPUT)
    read_config(config)
    settings = checks.settings()
    from models.data.dataset import read_dataset
    from models.evaluation.split import PROTOCOLS
    from models.pipeline import run
    from models.publish import publish
    from models.text_embeddings import TextEmbedder

    pipeline_config = load_config(config, workers, epochs, shards)
    store = features.ready_store(data, settings, announce=console.print)
    dataset = read_dataset(data)
    embedder = TextEmbedder(cache_dir=data / "cache")
    with steps("training", 5) as step:
        result = run(dataset, store, pipeline_config, embedder, progress=step)
    protocol = PROTOCOLS[pipeline_config.split]
    _print_training(result, protocol)
    truth = _against_truth(data, result, dataset.events)
    reg = Registry(registry)
    version = publish(reg, result, store, data, dataset.events, protocol, truth)
    console.print(f"[bold]version {version}[/] written to {reg.version_uri(version)}")
    _after_publish(reg, version, version_file, promote)


def recommend(
    registry: str = typer.Option(..., "--registry", help="Registry directory or fsspec URI."),
    version: str | None = typer.Option(None, help="A version id or a unique prefix of one "
                                       "(default: latest)."),
    stage: Stage | None = typer.Option(None, help="Or a stage."),
    users: Path = typer.Option(..., "--users", help="A file with one user id per line."),
    k: int = typer.Option(10, "--k", min=1, help="Items per user."),
    out: Path = typer.Option(..., "--out", help="recs.parquet or recs.csv."),
    include_seen: bool = typer.Option(
        False, "--include-seen", help="Also recommend items a user already interacted "
        "with (repeat purchases, rewatching): scores every user on demand with the "
        "version's model, from the events in --data."),
    data: Path | None = typer.Option(
        None, "--data", help="With --include-seen: the data directory to read events "
        "and features from (default: the one the version was trained on)."),
) -> None:
    """Batch recommendations for the users in a file.

    Columns user_id, item_id, rank (from 1), score. Items a user already interacted
    with are excluded unless --include-seen; unknown users get the cold-start list
    (trending items).

    Without --include-seen the answer is the ranked lists the version stored at training
    time; with it, each user is scored on demand (models/served.py) as of the end of
    the data in --data."""
    wanted = _wanted_users(out, version, stage, users, data, include_seen)
    from models.batch import stored_lists, with_cold_start

    reg = Registry(registry)
    try:
        manifest = reg.resolve(version, stage)
        local = reg.fetch(manifest.version)
    except RegistryError as exc:
        fail(str(exc))
    fallback = pd.read_parquet(local / FALLBACK_FILE)
    served = int(manifest.params.get("serve_top", len(fallback)))
    if k > served and not include_seen:
        fail(f"--k {k} is more than the {served} items per user this version keeps",
             EXIT_INVALID_INPUT)
    if include_seen:
        known = _scored_on_demand(manifest, local, wanted, k, data, checks.settings())
    else:
        known = stored_lists(pd.read_parquet(local / RECS_FILE), wanted, k)
    batch = with_cold_start(known, wanted, fallback, k)
    if out.suffix == ".csv":
        batch.frame.to_csv(out, index=False)
    else:
        batch.frame.to_parquet(out, index=False)
    errors.print(f"{batch.known} known user(s), {len(batch.cold)} cold-start; "
                 f"{len(batch.frame)} rows from version {manifest.version} -> {out}")
    if batch.cold:
        errors.print(COLD_SCORES)


def _wanted_users(out: Path, version: str | None, stage: Stage | None, users: Path,
                  data: Path | None, include_seen: bool) -> list[str]:
    """`recommend`'s input checked, before any work; the user ids in the --users file."""
    checks.output_file("--out", out, (".parquet", ".csv"))
    checks.not_both("--version", version, "--stage", stage)
    if not users.exists():
        fail(f"{users}: file not found", EXIT_INVALID_INPUT)
    if data is not None and not include_seen:
        fail("--data is read only with --include-seen (the stored lists need no data)",
             EXIT_INVALID_INPUT)
    wanted = [line.strip() for line in users.read_text().splitlines() if line.strip()]
    if not wanted:
        fail(f"{users}: no user ids (one per line)", EXIT_INVALID_INPUT)
    return wanted


def _scored_on_demand(manifest: Manifest, local: Path, wanted: list[str], k: int,
                      data: Path | None, settings: Settings) -> pd.DataFrame:
    """The version's bundle over the wanted users' events, seen items included."""
    from models.batch import scored_on_demand
    from models.bundle import load_bundle
    from models.data.dataset import events_sha256
    from models.ranker.features import store_join

    data = _on_demand_data(manifest, data)
    try:
        bundle = load_bundle(local)
    except FileNotFoundError as exc:
        fail(str(exc))
    if events_sha256(data) != manifest.data_snapshot.get("events_sha256"):
        errors.print(f"[yellow]note:[/] {data} is not the data version {manifest.version} "
                     "was trained on; scoring from the events it holds")
    store = features.ready_store(data, settings, announce=errors.print)
    events = pd.read_parquet(data / "events.parquet")
    return scored_on_demand(bundle, events, wanted, store_join(store), k)


def _on_demand_data(manifest: Manifest, data: Path | None) -> Path:
    """--data, else the directory the version was trained on; either must hold events."""
    if data is None:
        data = Path(manifest.data_snapshot.get("data_dir", ""))
        if not (data / "events.parquet").exists():
            fail(f"version {manifest.version} was trained on {data}, which holds no "
                 "events.parquet now; pass --data DIR", EXIT_INVALID_INPUT)
    elif not (data / "events.parquet").exists():
        fail(f"--data {data}: no events.parquet there; --include-seen reads each user's "
             "events and features from a data directory", EXIT_INVALID_INPUT)
    return data


def evaluate(
    ref: str | None = typer.Argument(None, metavar="[VERSION]", help="A version id or a "
                                     "unique prefix of one (default: latest)."),
    registry: str = typer.Option(..., "--registry", help="Registry directory or fsspec URI."),
    version: str | None = typer.Option(None, help="The same as VERSION."),
    stage: Stage | None = typer.Option(None, help="Or a stage."),
    data: Path | None = typer.Option(None, "--data", help="Score the version on fresh data "
                                     "from this directory: the events after --since."),
    since: str | None = typer.Option(None, "--since", help="With --data: the window's start "
                                     "(ISO 8601; default: the version's last training "
                                     "event)."),
    until: str | None = typer.Option(None, "--until", help="With --data: the window's end "
                                     "(default: the end of the data)."),
    policy: Path | None = typer.Option(None, "--policy", help="With --data: promotion.yaml "
                                       "(window sizes, activity buckets)."),
    k: str = typer.Option("10,20,50", "--k", help="Cut-offs, comma-separated (the figures "
                          "from training)."),
    report: Path | None = typer.Option(None, "--report", help="Write an HTML report here."),
) -> None:
    """A version's evaluation as JSON, and an HTML report.

    With --data, the version ranks each user of a window it has not seen (events after
    its training, or after --since) as of the window's start, and is scored on what
    they did in it; the figures, per-user rows and the report are written beside the
    version (versions/ID/evaluations/WINDOW/), so two versions scored on one window
    compare directly. Without --data, the figures `recstack train` measured before its
    refit, and the report adds the plots."""
    ks = checks.cutoffs("--k", k)
    checks.not_both("VERSION", ref, "--version", version)
    version = version or ref
    checks.not_both("--version", version, "--stage", stage)
    _check_window(data, since, until)
    if report is not None:
        checks.output_file("--report", report)
    try:
        reg = Registry(registry)
        manifest = reg.resolve(version, stage)
    except RegistryError as exc:
        fail(str(exc))
    if data is not None:
        from recstack.cli.promotion import evaluate_fresh

        evaluate_fresh(reg, manifest, data, since, until, report, policy)
        return
    _print_measured(manifest, ks, report)


def _check_window(data: Path | None, since: str | None, until: str | None) -> None:
    """--data, and --since and --until, which set its window and need it."""
    if data is not None:
        checks.data_dir("--data", data)
    for option, value in (("--since", since), ("--until", until)):
        if value is not None:
            if data is None:
                fail(f"{option} sets the fresh window: it needs --data", EXIT_INVALID_INPUT)
            checks.instant(option, value)


def _print_measured(manifest: Manifest, ks: list[int], report: Path | None) -> None:
    """The figures `recstack train` measured, as JSON, and the HTML report with the
    plots; refused for a cut-off training did not measure."""
    from models.evaluation.report import render

    measured = {key for key in manifest.metrics.get("test", {}) if "@" in key}
    missing = [c for c in ks if f"ndcg@{c}" not in measured]
    if missing:
        fail(f"version {manifest.version} was evaluated at k in "
             f"{sorted({int(m.split('@')[1]) for m in measured})}; not at {missing}",
             EXIT_INVALID_INPUT)
    console.print_json(json.dumps({"version": manifest.version, **{
        key: manifest.metrics[key] for key in ("protocol", "test", "baselines", "stages",
                                                "segments", "ground_truth")
        if key in manifest.metrics}}))
    if report is not None:
        report.write_text(render(manifest.version, manifest.metrics, ks))
        errors.print(f"report written to {report}")
