"""`recstack pipeline rehearse`: on one machine, the commands the promotion workflows
run, in their order, as subprocesses (exactly what a runner executes).

A generated world is cut at a date: two versions train on the part before it, one on
all its users (good), one on a tenth of them (weak). The good one goes dev -> staging
-> prod through the gates on the rest of the world; the weak one is refused for
staging, with the gates' table, and for prod by the stage order. Then the next
retrain goes to staging through the gates and into prod by a canary (serve.yaml
variants), twice, each time checked on simulated traffic whose true click rates are
known (models/evaluation/canary.py's simulator, in the events schema serving logs):
first the canary clicks 20% less than control and `rollout check` must roll it back,
then 20% more and the check must promote it. Every step's command is printed before
it runs; a step that does not end as the pipeline expects stops the rehearsal with
its exit code and output.
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
from recstack.cli.rollout import EXIT_ROLLBACK
from recstack.cli.usage import App

CUT = "2026-02-02T00:00:00Z"  # the world starts 2026-01-01: 32 days to train on, 8 fresh
CANARY_PERCENT = 50  # a rehearsal has no time to wait for a 10% arm
CANARY_IMPRESSIONS = 30_000  # per arm: a 20% lift decides in 100/100 runs by 24,000
CONTROL_CTR = 0.05
STEPS = 12


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
    through the gates and watches the weak one be refused (gates, stage order); then
    canaries the next retrain in prod twice on simulated traffic: rolled back when it
    clicks less, promoted when it clicks more."""
    if out.exists() and any(out.iterdir()):
        fail(f"--out {out}: not empty; the rehearsal writes a new world there", 2)
    world, registry = out / "world", out / "registry"
    reg = ["--registry", str(registry)]
    started = time.monotonic()
    _run(f"1/{STEPS} data", ["data", "generate", "--out", str(world), "--users", str(users),
                             "--items", str(items), "--days", "40", "--seed", str(seed)])
    for name, fraction in (("train", []), ("tenth", ["--users-fraction", "0.1"])):
        _run(f"2/{STEPS} training cut ({name})", ["data", "slice", "--data", str(world),
                                                  "--out", str(out / name), "--until", CUT,
                                                  *fraction])
    good, weak = (_train(f"3/{STEPS} train ({name})", out, name, reg)
                  for name in ("train", "tenth"))
    gated = [*reg, "--data", str(world)]
    _run(f"4/{STEPS} features of the fresh data", ["features", "apply", "--data", str(world)])
    _run(f"5/{STEPS} evaluate on the fresh week", ["evaluate", good, *gated])
    for stage in ("staging", "prod"):
        # dev now points at the weak one (trained last): staging takes what was in dev.
        shown = _run(f"6/{STEPS} promote {good} to {stage}", ["models", "promote", good,
                                                               "--to", stage, *gated])
        console.print(shown.split(f"{stage} ->")[0][-3000:], highlight=False, markup=False)
    refused = _run(f"7/{STEPS} promote {weak} to staging (refused)",
                   ["models", "promote", weak, "--to", "staging", *gated], expect=EXIT_REFUSED)
    console.print(refused[-4000:], highlight=False, markup=False)
    skipped = _run(f"8/{STEPS} promote {weak} to prod (out of order)",
                   ["models", "promote", weak, "--to", "prod", *gated], expect=EXIT_REFUSED)
    console.print(skipped[skipped.index("error:"):], highlight=False, markup=False)
    retrain = _train(f"9/{STEPS} the next retrain", out, "train", reg, record="retrain")
    _run(f"10/{STEPS} promote {retrain} to staging", ["models", "promote", retrain, "--to",
                                                       "staging", *gated])
    for step, lift, expect in ((11, -0.2, EXIT_ROLLBACK), (12, 0.2, 0)):
        _canary(f"{step}/{STEPS}", out, reg, good, retrain, lift, expect, seed + step)
    history = _run("history", ["models", "history", *reg])
    console.print(history, highlight=False, markup=False)
    console.print(f"[bold green]rehearsed[/] in {time.monotonic() - started:.0f} s: "
                  f"{weak} refused with its reasons; {retrain} rolled back from prod's "
                  "canary when it clicked less, promoted when it clicked more")


def _train(step: str, out: Path, data: str, reg: list[str], record: str | None = None
           ) -> str:
    """Train on a cut, register, point dev at it; the new version's id."""
    written = out / f"{record or data}.version"
    _run(step, ["train", "--data", str(out / data), *reg, "--promote", "dev",
                "--version-file", str(written)])
    return written.read_text().strip().removeprefix("version=")


def _canary(step: str, out: Path, reg: list[str], control: str, canary: str, lift: float,
            expect: int, seed: int) -> None:
    """A canary of `canary` in prod beside `control`, checked on simulated traffic in
    which it clicks `lift` more (relatively) than control."""
    serve = out / "serve.yaml"
    _run(f"{step} canary {canary} in prod ({CANARY_PERCENT}%)",
         ["rollout", "canary", canary, *reg, "--stage", "prod", "--percent",
          str(CANARY_PERCENT), "--serve-config", str(serve)])
    traffic = _simulate(out / f"canary-{seed}", control, canary, lift, seed)
    console.print(f"  simulated: {traffic}", style="dim", highlight=False)
    shown = _run(f"{step} check it on traffic where it clicks {lift:+.0%}",
                 ["rollout", "check", *reg, "--stage", "prod", "--events",
                  str(out / f"canary-{seed}")], expect=expect)
    console.print(shown[-2500:], highlight=False, markup=False)


def _simulate(data: Path, control: str, canary: str, lift: float, seed: int) -> str:
    """Seeded impressions, clicks and purchases of both arms from now on, written as a
    data directory's events.parquet; what was simulated, said in a line."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from contracts.schemas import EVENTS_SCHEMA
    from models.evaluation.canary import Traffic, simulate_traffic

    traffic = Traffic(control_ctr=CONTROL_CTR, canary_ctr=CONTROL_CTR * (1 + lift),
                      canary_share=CANARY_PERCENT / 100, control_version=control,
                      canary_version=canary)
    requests = traffic.requests_for(CANARY_IMPRESSIONS)
    events = simulate_traffic(traffic, requests, seed,
                              start=pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1))
    data.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(events, schema=EVENTS_SCHEMA, preserve_index=False),
                   data / "events.parquet")
    return (f"{requests:,} requests, true CTR control {traffic.control_ctr:.2%}, canary "
            f"{traffic.canary_ctr:.2%}, {traffic.minutes_for(CANARY_IMPRESSIONS):.0f} "
            f"minutes at {traffic.requests_per_minute:g} requests a minute")


app = App(help="The promotion pipeline, rehearsed on one machine.", no_args_is_help=True)
app.command(name="rehearse")(rehearse)
