"""`recstack demo`: the end-to-end path a newcomer runs first (`make demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from recstack.cli import checks
from recstack.cli.console import EXIT_INVALID_INPUT, console, fail
from recstack.cli.train_config import check_workers

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

    from contracts.settings import Settings


def demo(
    out: Path = typer.Option(Path("demo-data"), help="Data directory for the demo."),
    users: int = typer.Option(1000, min=1, help="Synthetic users."),
    items: int = typer.Option(500, min=10, help="Synthetic items."),
    days: int = typer.Option(30, min=1, help="Simulated days."),
    seed: int = typer.Option(0, min=0, help="Random seed."),
    loop: bool = typer.Option(True, "--loop/--no-loop", help="Run steps 6-9 (serve, "
                              "collect, consume, simulated sessions, online report)."),
    sessions: int = typer.Option(300, min=1, help="Simulated user sessions in step 8."),
    workers: int = typer.Option(0, min=0, help="Ray Train workers for step 4, as in "
                                "`recstack train --workers`; 0 trains in this process, "
                                "faster on the demo's small shop."),
) -> None:
    """The whole loop on a synthetic shop, from data to online reports.

    Generate a synthetic shop, build and apply its features, read some online, train
    the two-stage model into OUT/registry, recommend for two users and a new one, and
    write the evaluation report to OUT/report.html. Then the real-time loop: start
    `recstack serve` (two A/B variants), `collect` and `consume`, show an event change
    a user's next recommendation, simulate user sessions over HTTP, and write the
    online A/B report to OUT/online-report.html.

    Uses Redis when one answers at RECSTACK_REDIS, Feast's embedded SQLite otherwise;
    without Redis the real-time loop (steps 6-9) is skipped."""
    from models.data.dataset import read_dataset
    from recstack.cli.features import run_apply
    from recstack.cli.train import train

    check_workers(workers)
    if out.exists() and not out.is_dir():
        fail(f"--out {out}: is a file; the demo writes a data directory there",
             EXIT_INVALID_INPUT)
    settings = checks.settings()
    total = 9
    console.rule(f"1/{total} data: a synthetic shop")
    _generate_shop(out, users, items, days, seed)
    console.rule(f"2/{total} features: build, feast apply, materialize")
    store = run_apply(out, engine="feast", materialize=True, settings=settings)
    console.rule(f"3/{total} online reads through the Feast SDK")
    events = read_dataset(out).events
    busiest = _online_reads(store, events)
    console.rule(f"4/{total} training: candidate generators, ranker, evaluation, registry")
    registry = out / "registry"
    console.print(training_path(workers), highlight=False)
    train(data=out, registry=str(registry), workers=workers, epochs=None, shards=None,
          config=None, version_file=None, promote="dev")
    console.rule(f"5/{total} recommendations (two busy users and a new one) and the report")
    report = _recommend_and_report(out, registry, busiest, events)
    online = _real_time_loop(loop, out, registry, busiest[0], sessions, seed, settings,
                             total)
    console.print(f"\n[bold green]demo done.[/] Data in {out}/, model in {registry}/, "
                  f"report in {report}"
                  + (f", online A/B report in {online}" if online else "")
                  + f"; try `recstack features get --data {out} --user {busiest[0]}` or "
                  f"`recstack models list --registry {registry}`")


def _generate_shop(out: Path, users: int, items: int, days: int, seed: int) -> None:
    """Step 1: `recstack data generate` into OUT, replacing what a previous run left."""
    import shutil

    from recstack.cli.data import generate

    # The previous run's streamed events belong to the shop this run replaces.
    shutil.rmtree(out / "events_stream", ignore_errors=True)
    generate(out=out, users=users, items=items, days=days, seed=seed,
             start="2026-01-01T00:00:00Z", workers=0, overwrite=True)


def _online_reads(store: FeatureStore, events: pd.DataFrame) -> list[str]:
    """Step 3: the two busiest users' and the most popular item's online features,
    some of each printed; returns the two users' ids."""
    import json

    from recstack.cli.features import read_online

    busiest = events["user_id"].value_counts().index[:2]
    popular = events["item_id"].value_counts().index[:1]
    for user_id in busiest:
        features = read_online(store, str(user_id), None)["user"]
        shown = {k: features[k] for k in ("user_id", "top_category", "views_7d",
                                           "purchases_30d", "recent_items")}
        shown["recent_items"] = shown["recent_items"][:5]
        console.print_json(json.dumps(shown, default=str))
    features = read_online(store, None, str(popular[0]))["item"]
    console.print_json(json.dumps({k: features[k] for k in (
        "item_id", "title", "category", "price", "views_7d", "ctr_30d")}, default=str))
    return [str(user_id) for user_id in busiest]


def _recommend_and_report(out: Path, registry: Path, busiest: list[str],
                          events: pd.DataFrame) -> Path:
    """Step 5: `recstack recommend` for the busiest users and a new one, printed with
    the list each row comes from, and the evaluation report; returns the report's path."""
    import pandas as pd

    from recstack.cli.train import COLD_SCORES, recommend

    users_file, recs = out / "demo-users.txt", out / "demo-recs.csv"
    users_file.write_text("\n".join([*busiest, "someone-new"]) + "\n")
    recommend(registry=str(registry), version=None, stage="dev", users=users_file, k=5,
              out=recs, include_seen=False, data=None)
    console.print(shown_recommendations(pd.read_csv(recs, dtype={"user_id": str,
                                                                  "item_id": str}),
                                        set(events["user_id"].astype(str))))
    console.print(COLD_SCORES, highlight=False)
    report = out / "report.html"
    _write_report(str(registry), report)
    console.print(f"evaluation report: {report}")
    return report


def _real_time_loop(loop: bool, out: Path, registry: Path, busy_user: str, sessions: int,
                    seed: int, settings: Settings, total: int) -> Path | None:
    """Steps 6 to 9 (recstack/cli/demo_loop.py), or the line that says they are
    skipped; the online A/B report's path when they ran."""
    if not loop:
        console.print(f"6-{total}/{total} serving, events and the online report skipped "
                      "(--no-loop)")
        return None
    from recstack.cli.demo_loop import run_or_skip

    result = run_or_skip(out, registry, busy_user, sessions, seed, settings,
                         first_step=6, total=total)
    return None if result is None else result.report


def training_path(workers: int) -> str:
    """Which path step 4 trains on, and why: the README says Ray Train jobs produce
    the models, and by default the demo does not run them."""
    if workers:
        return (f"training on Ray Train, {workers} worker(s): the two-tower on "
                "TorchTrainer (DDP) and the ranker on XGBoostTrainer, as `recstack train "
                f"--workers {workers}` and a RayJob run them")
    return ("training in this process (--workers 0), not on Ray Train: the step fits the "
            "two-tower and the ranker three times each, and each Ray Train job costs more "
            "to start than these fits take on the demo's small shop; `recstack demo "
            "--workers 2` (or `recstack train --workers N`) runs the same pipeline on Ray "
            "Train")


def shown_recommendations(recs: pd.DataFrame, known: set[str]) -> str:
    """The recommendations as a table, scores to 3 decimals, each row saying which
    list it comes from: the model's for known users, trending for new ones."""
    shown = recs.assign(score=recs["score"].map("{:.3f}".format),
                        list=["model" if u in known else "trending (cold start)"
                              for u in recs["user_id"]])
    return shown.to_string(index=False)


def _write_report(registry: str, report: Path) -> None:
    from models.evaluation.compare import KS
    from models.evaluation.report import render
    from stores.registry import Registry

    manifest = Registry(registry).resolve(stage="dev")
    report.write_text(render(manifest.version, manifest.metrics, list(KS)))
