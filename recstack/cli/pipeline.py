"""`recstack pipeline rehearse`: on one machine, the commands the promotion workflows
run, in their order, as subprocesses (exactly what a runner executes).

A generated world is cut at a date: two versions train on the part before it, one on
all its users (good), one on a tenth of them (weak). The good one goes dev -> staging
-> prod through the gates on the rest of the world; the weak one is refused for
staging, with the gates' table, and for prod by the stage order. Every step's
command is printed before it runs; a step that does not end as the pipeline expects
stops the rehearsal with its exit code and output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import typer

from recstack.cli.console import EXIT_FAILED, console, errors, fail
from recstack.cli.promotion import EXIT_REFUSED
from recstack.cli.usage import App

CUT = "2026-02-02T00:00:00Z"  # the world starts 2026-01-01: 32 days to train on, 8 fresh


def _run(step: str, argv: list[str], expect: int = 0, env: dict[str, str] | None = None
         ) -> str:
    console.print(f"[bold]{step}[/]: recstack {' '.join(argv)}", highlight=False)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "recstack", *argv], capture_output=True,
                          text=True, check=False, env={**os.environ, **(env or {})})
    seconds = time.monotonic() - start
    if done.returncode != expect:
        errors.print(done.stdout[-4000:] + done.stderr[-4000:], highlight=False)
        fail(f"{step}: exit {done.returncode}, expected {expect}", EXIT_FAILED)
    console.print(f"  exit {done.returncode} as expected, {seconds:.0f} s", style="dim")
    return done.stdout + done.stderr


def rehearse(
    out: Path = typer.Option(..., "--out", help="A new directory for the world, the "
                             "training cuts and the registry."),
    users: int = typer.Option(1000, min=100, help="Users of the generated world."),
    items: int = typer.Option(500, min=50, help="Items of the generated world."),
    seed: int = typer.Option(3, min=0, help="The world's seed."),
) -> None:
    """Rehearse the promotion pipeline on one machine.

    Trains a good and a weak version, takes the good one dev -> staging -> prod
    through the gates and watches the weak one be refused (gates, stage order)."""
    if out.exists() and any(out.iterdir()):
        fail(f"--out {out}: not empty; the rehearsal writes a new world there", 2)
    world, registry = out / "world", out / "registry"
    reg = ["--registry", str(registry)]
    started = time.monotonic()
    _run("1/8 data", ["data", "generate", "--out", str(world), "--users", str(users),
                      "--items", str(items), "--days", "40", "--seed", str(seed)])
    _run("2/8 training cuts", ["data", "slice", "--data", str(world), "--out",
                               str(out / "train"), "--until", CUT])
    _run("2/8 training cuts", ["data", "slice", "--data", str(world), "--out",
                               str(out / "tenth"), "--until", CUT, "--users-fraction", "0.1"])
    versions = {}
    for name in ("train", "tenth"):
        record = out / f"{name}.version"
        _run(f"3/8 train ({name})", ["train", "--data", str(out / name), *reg,
                                     "--promote", "dev", "--version-file", str(record)])
        versions[name] = record.read_text().strip().removeprefix("version=")
    good, weak = versions["train"], versions["tenth"]
    gated = [*reg, "--data", str(world)]
    _run("4/8 features of the fresh data", ["features", "apply", "--data", str(world)])
    _run("5/8 evaluate on the fresh week", ["evaluate", good, *gated])
    for stage in ("staging", "prod"):
        # dev now points at the weak one (trained last): staging takes what was in dev.
        shown = _run(f"6/8 promote {good} to {stage}", ["models", "promote", good, "--to",
                                                         stage, *gated])
        console.print(shown.split(f"{stage} ->")[0][-3000:], highlight=False, markup=False)
    refused = _run(f"7/8 promote {weak} to staging (refused)",
                   ["models", "promote", weak, "--to", "staging", *gated], expect=EXIT_REFUSED)
    console.print(refused[-4000:], highlight=False, markup=False)
    skipped = _run(f"8/8 promote {weak} to prod (out of order)",
                   ["models", "promote", weak, "--to", "prod", *gated], expect=EXIT_REFUSED)
    console.print(skipped[skipped.index("error:"):], highlight=False, markup=False)
    history = _run("history", ["models", "history", *reg])
    console.print(history, highlight=False, markup=False)
    console.print(f"[bold green]rehearsed[/] in {time.monotonic() - started:.0f} s: "
                  f"{good} in prod, {weak} refused with its reasons")


app = App(help="The promotion pipeline, rehearsed on one machine.", no_args_is_help=True)
app.command(name="rehearse")(rehearse)
