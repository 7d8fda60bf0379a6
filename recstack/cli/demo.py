"""`recstack demo`: the end-to-end path a newcomer runs first (`make demo`)."""

from __future__ import annotations

from pathlib import Path

import typer

from recstack.cli.console import console


def demo(
    out: Path = typer.Option(Path("demo-data"), help="Data directory for the demo."),
    users: int = typer.Option(1000, help="Synthetic users."),
    items: int = typer.Option(500, help="Synthetic items."),
    days: int = typer.Option(30, help="Simulated days."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Generate a synthetic shop, build and apply its features, and read some online.

    Uses Redis when one answers at RECSTACK_REDIS, Feast's embedded SQLite otherwise."""
    import json

    from models.data.dataset import read_dataset
    from recstack.cli.data import generate
    from recstack.cli.features import read_online, run_apply

    console.rule("1/3 data: a synthetic shop")
    generate(out=out, users=users, items=items, days=days, seed=seed,
             start="2026-01-01T00:00:00Z", overwrite=True)
    console.rule("2/3 features: build, feast apply, materialize")
    store = run_apply(out, engine="feast", materialize=True)
    console.rule("3/3 online reads through the Feast SDK")
    dataset = read_dataset(out)
    busiest = dataset.events["user_id"].value_counts().index[:2]
    popular = dataset.events["item_id"].value_counts().index[:1]
    for user_id in busiest:
        features = read_online(store, str(user_id), None)["user"]
        shown = {k: features[k] for k in ("user_id", "top_category", "views_7d",
                                           "purchases_30d", "recent_items")}
        shown["recent_items"] = shown["recent_items"][:5]
        console.print_json(json.dumps(shown, default=str))
    features = read_online(store, None, str(popular[0]))["item"]
    console.print_json(json.dumps({k: features[k] for k in (
        "item_id", "title", "category", "price", "views_7d", "ctr_30d")}, default=str))
    console.print(f"\n[bold green]demo done.[/] Data in {out}/; try "
                  f"`recstack features get --data {out} --user {busiest[0]}`")
