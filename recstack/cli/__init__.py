"""The `recstack` command line: the composition root of the platform.

Heavy libraries (Feast, torch, Ray) are imported inside the commands that use
them, so `recstack --help` and the data commands start fast.
"""

from __future__ import annotations

from recstack.cli import (
    collect,
    consume,
    data,
    demo,
    features,
    models,
    pipeline,
    report,
    retrain,
    rollout,
    serve,
    train,
)
from recstack.cli.usage import App

app = App(
    name="recstack",
    help="RecStack: events in, features in Feast, models out, recommendations served.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(models.app, name="models")
app.add_typer(report.app, name="report")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(rollout.app, name="rollout")
app.command(name="demo")(demo.demo)
app.command(name="train")(train.train)
app.command(name="recommend")(train.recommend)
app.command(name="evaluate")(train.evaluate)
# Their docstrings open with a whole paragraph; the command list shows one line.
app.command(name="serve", short_help="Serve a version: KServe's V1/V2 routes on Ray Serve "
            "graphs.")(serve.serve)
app.command(name="collect", short_help="The event collector: events over HTTP into the "
            "Redis Stream.")(collect.collect)
app.command(name="retrain")(retrain.retrain)
app.command(name="consume", short_help="The stream consumer: events into history and "
            "online features.")(consume.consume)

__all__ = ["app"]
