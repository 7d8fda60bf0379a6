"""`recstack train` and `recstack recommend`: the two-stage model into the registry, and
batch recommendations out of it."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.table import Table

from recstack.cli import checks
from recstack.cli.console import EXIT_INVALID_INPUT, console, errors, fail, steps
from recstack.cli.train_config import check_workers, load_config, read_config
from stores.registry import (
    FALLBACK_FILE,
    FEATURE_REGISTRY_FILE,
    RECS_FILE,
    Manifest,
    Registry,
    RegistryError,
    Stage,
    code_revision,
    new_version_id,
)

SHORT = {"long_tail_share": "long-tail"}  # in a header; the manifest keeps the full name
SHOWN = ("ndcg@10", "recall@20", "precision@10", "map@10", "coverage@10", "long_tail_share@10")


def _snapshot(data: Path, events: pd.DataFrame) -> dict[str, Any]:
    from models.data.dataset import events_sha256

    digest = events_sha256(data)
    return {"data_dir": str(data.resolve()), "events": len(events),
            "users": int(events["user_id"].nunique()),
            "first_event": str(events["timestamp"].min()),
            "last_event": str(events["timestamp"].max()), "events_sha256": digest}


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


def _table(metrics: dict[str, dict[str, float]], protocol: str) -> Table:
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


def _against_truth(data: Path, result: Any, events: pd.DataFrame
                   ) -> dict[str, dict[str, float]] | None:
    """On generated data: the served lists, popularity and the truth's own lists, scored
    against the world's true next-choice probabilities (printed and kept)."""
    from models.data.synthetic import GroundTruth
    from models.evaluation.ground_truth import serving_against_truth

    try:
        truth = GroundTruth.load(data)
    except FileNotFoundError:
        return None
    scores = serving_against_truth(truth, result.serving_lists, result.fallback, events)
    console.print("against the generator's ground truth (true next-choice probabilities): "
                  + ", ".join(f"{name} gt-NDCG@10 {row['gt_ndcg@10']:.3f}"
                              for name, row in scores.items()))
    return scores


def train(
    data: Path = typer.Option(..., "--data", help="Data directory (generated or imported)."),
    registry: str = typer.Option(..., "--registry", help="Registry directory or fsspec URI."),
    workers: int = typer.Option(0, min=0, help="Ray Train workers for the two-tower and the "
                                "ranker; 0 trains in this process (fastest on small data)."),
    epochs: int | None = typer.Option(None, min=1,
                                      help="Two-tower epochs (overrides the config)."),
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
    from recstack.cli.features import _require_data

    # Everything a user typed is checked before the imports and the work (tens of seconds).
    _require_data(data)
    check_workers(workers)
    if promote not in (None, "dev"):
        fail(f"--promote {promote}: train promotes to dev only; {promote} takes a version "
             "through the gates: `recstack models promote VERSION --to "
             f"{promote} --data DIR`", EXIT_INVALID_INPUT)
    read_config(config)
    from models.bundle import save_bundle
    from models.data.dataset import read_dataset
    from models.pipeline import run
    from models.text_embeddings import TextEmbedder
    from recstack.cli.features import _features_stale, run_build
    from stores.feature_store import apply_definitions, open_store, registry_snapshot

    pipeline_config = load_config(config, workers, epochs)
    if _features_stale(data):
        run_build(data)
    store = open_store(data, checks.settings(), announce=console.print)
    apply_definitions(store, data)
    dataset = read_dataset(data)
    embedder = TextEmbedder(cache_dir=data / "cache")
    with steps("training", 5) as step:
        result = run(dataset, store, pipeline_config, embedder, progress=step)
    from models.evaluation.split import PROTOCOLS

    protocol = PROTOCOLS[pipeline_config.split]
    console.print(_table(result.metrics, protocol))
    stages = result.stages
    console.print(f"candidates per user {stages['candidates_per_user']:.0f}, candidate recall "
                  f"{stages['candidate_recall']:.3f}, ranker lift on NDCG@10 "
                  f"{stages['ranker_lift_ndcg@10']:.2f}x the best single source")
    console.print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()))
    truth = _against_truth(data, result, dataset.events)

    version = new_version_id(suffix=hashlib.blake2b(str(result.timings).encode(),
                                                    digest_size=3).hexdigest())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        save_bundle(result.bundle, out)  # generators, ranker: on-demand scoring
        result.serving_lists.to_parquet(out / RECS_FILE, index=False)
        result.fallback.to_parquet(out / FALLBACK_FILE, index=False)
        (out / "metrics.json").write_text(json.dumps(result.metrics, indent=1))
        # Serving reads its feature views from here: no data directory in a pod.
        (out / FEATURE_REGISTRY_FILE).write_bytes(registry_snapshot(store))
        manifest = Manifest(
            version=version, created_at=pd.Timestamp.now(tz="UTC").to_pydatetime(),
            code_revision=code_revision(), data_snapshot=_snapshot(data, dataset.events),
            feature_service="ranker",
            params={**result.config, "two_tower_training": result.two_tower},
            metrics={"protocol": protocol, "test": result.metrics["two_stage"],
                     "baselines": {k: v for k, v in result.metrics.items()
                                   if k != "two_stage"},
                     "stages": stages, "timings": result.timings,
                     "segments": result.segments,
                     **({"ground_truth": truth} if truth else {}),
                     "exposure": result.exposure.to_dict(orient="list"),
                     "ranker_importance": result.bundle.ranker.importance()})
        reg = Registry(registry)
        reg.publish(manifest, out)
    console.print(f"[bold]version {version}[/] written to {reg.version_uri(version)}")
    if version_file is not None:
        with version_file.open("a") as handle:
            handle.write(f"version={version}\n")
    if promote:
        try:
            reg.promote(version, promote, by="recstack train")
        except RegistryError as exc:
            fail(str(exc))
        console.print(f"{promote} -> {version}")


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
        known = _scored_on_demand(manifest, local, wanted, k, data)
    else:
        lists = pd.read_parquet(local / RECS_FILE)
        known = lists[lists["user_id"].isin(set(wanted)) & (lists["rank"] <= k)]
    cold = [u for u in dict.fromkeys(wanted) if u not in set(known["user_id"])]
    cold_rows = fallback.head(k)
    cold_frame = pd.DataFrame({
        "user_id": [u for u in cold for _ in range(len(cold_rows))],
        "item_id": list(cold_rows["item_id"]) * len(cold),
        "rank": list(cold_rows["rank"]) * len(cold),
        "score": list(cold_rows["score"]) * len(cold)})
    order = {u: n for n, u in enumerate(dict.fromkeys(wanted))}
    result = pd.concat([known, cold_frame], ignore_index=True)
    result = result.assign(_order=result["user_id"].map(order)).sort_values(
        ["_order", "rank"]).drop(columns="_order")
    result = result[["user_id", "item_id", "rank", "score"]].reset_index(drop=True)
    if out.suffix == ".csv":
        result.to_csv(out, index=False)
    else:
        result.to_parquet(out, index=False)
    errors.print(f"{len(order) - len(cold)} known user(s), {len(cold)} cold-start; "
                 f"{len(result)} rows from version {manifest.version} -> {out}")
    if cold:
        errors.print(COLD_SCORES)


def _scored_on_demand(manifest: Manifest, local: Path, wanted: list[str], k: int,
                      data: Path | None) -> pd.DataFrame:
    """The version's bundle over the wanted users' events, seen items included."""
    from models.bundle import load_bundle
    from models.ranker.features import store_join
    from models.served import ServedModel
    from recstack.cli.features import _features_stale, run_build
    from stores.feature_store import apply_definitions, open_store

    if data is None:
        data = Path(manifest.data_snapshot.get("data_dir", ""))
        if not (data / "events.parquet").exists():
            fail(f"version {manifest.version} was trained on {data}, which holds no "
                 "events.parquet now; pass --data DIR", EXIT_INVALID_INPUT)
    elif not (data / "events.parquet").exists():
        fail(f"--data {data}: no events.parquet there; --include-seen reads each user's "
             "events and features from a data directory", EXIT_INVALID_INPUT)
    try:
        bundle = load_bundle(local)
    except FileNotFoundError as exc:
        fail(str(exc))
    from models.data.dataset import events_sha256

    if events_sha256(data) != manifest.data_snapshot.get("events_sha256"):
        errors.print(f"[yellow]note:[/] {data} is not the data version {manifest.version} "
                     "was trained on; scoring from the events it holds")
    if _features_stale(data):
        run_build(data)
    store = open_store(data, checks.settings(), announce=errors.print)
    apply_definitions(store, data)
    events = pd.read_parquet(data / "events.parquet")
    at = events["timestamp"].max() + pd.Timedelta(seconds=1)
    return ServedModel(bundle, search=False, history=events).recommend(
        events, list(dict.fromkeys(wanted)), at, store_join(store), k, include_seen=True)


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
    if data is not None:
        checks.data_dir("--data", data)
    for option, value in (("--since", since), ("--until", until)):
        if value is not None:
            if data is None:
                fail(f"{option} sets the fresh window: it needs --data", EXIT_INVALID_INPUT)
            checks.instant(option, value)
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
