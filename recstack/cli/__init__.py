"""The `recstack` command line: the composition root of the platform.

Heavy libraries (Feast, torch, Ray) are imported inside the commands that use
them, so `recstack --help` and the data commands start fast.
"""

from __future__ import annotations

import typer

from recstack.cli import collect, consume, data, demo, features, models, report, serve, train

app = typer.Typer(
    name="recstack",
    help="RecStack: events in, features in Feast, models out, recommendations served.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(models.app, name="models")
app.add_typer(report.app, name="report")
app.command(name="demo")(demo.demo)
app.command(name="train")(train.train)
app.command(name="recommend")(train.recommend)
app.command(name="evaluate")(train.evaluate)
app.command(name="serve")(serve.serve)
app.command(name="collect")(collect.collect)
app.command(name="consume")(consume.consume)

__all__ = ["app"]
