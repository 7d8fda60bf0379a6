"""`recstack rollout ...`: a canary on part of a stage's traffic, checked on live
traffic, then promoted or rolled back.

`rollout canary VERSION` sends a share of the stage's traffic to VERSION beside the
stage's current version: serve.yaml variants `control` (the stage, followed) and
`canary` (the version) for `recstack serve`, or with --kubernetes the chart's KServe
canary (`helm upgrade --reuse-values --set inferenceService.canary...`). `rollout
check` decides on what was logged since (models/evaluation/canary.py holds the
rules; promotion.yaml `canary:` the thresholds) and acts: a promotion moves the stage
with the gates' compare-and-swap against the control version the canary ran beside;
a rollback sends all traffic back to control. Each start, wait and stop is an entry
in the stage's history with its figures, so the history says what every rollout saw.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import yaml
from rich.table import Table

from recstack.cli import checks
from recstack.cli.console import EXIT_INVALID_INPUT, console, errors, fail
from recstack.cli.models import BY, REGISTRY, who
from recstack.cli.usage import App
from stores.registry import (
    Action,
    Registry,
    RegistryError,
    Stage,
    StageConflict,
    StageEntry,
    current_version,
    open_canary,
)

if TYPE_CHECKING:
    import pandas as pd

    from contracts.promotion import Canary
    from models.evaluation.canary import Decision, ServingHealth

app = App(help="Canary rollouts: a new version on part of a stage's traffic.",
          no_args_is_help=True)

EXIT_ROLLBACK = 3  # said in `rollout check --help`: a workflow branches on it
EXIT_UNDECIDED = 5  # --until-decided --on-timeout wait, and the time ran out
CONTROL, CANARY = "control", "canary"  # the serve.yaml variants, and the arms' names
CHART = Path("charts/recstack")
SERVE_CONFIG = Path("serve.yaml")
METRICS_TIMEOUT_S = 10.0
_SPAN = re.compile(r"^(\d+)([smhd])$")
_SPAN_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# How the chart names a canary predictor (templates/inferenceservice.yaml).
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

STAGE = typer.Option("prod", "--stage", help="The stage; its current version is the "
                     "control.")
SERVE = typer.Option(None, "--serve-config", help="serve.yaml of `recstack serve`, "
                     "whose variants split the traffic (its other keys are kept).")
KUBERNETES = typer.Option(False, "--kubernetes", help="Split the traffic with the "
                          "chart's KServe canary (helm upgrade) instead of serve.yaml.")
RELEASE = typer.Option(None, "--release", help="The Helm release (with --kubernetes).")
NAMESPACE = typer.Option(None, "--namespace", help="Its namespace (default: helm's).")
CHART_OPTION = typer.Option(CHART, "--chart", help="The chart the release was installed "
                            "from.")
APPLY = typer.Option(False, "--apply", help="Run the helm command, not just print it.")
# rollout check's options; --chart also rollout finish's
EVENTS = typer.Option(..., "--events", help="A data directory (its events.parquet and the "
                      "consumer's events_stream/) or a parquet file of events.")
WINDOW = typer.Option(None, "--window", help="Only the last span of traffic (45s, 30m, 2h, "
                      "1d; default: all since the canary started).")
METRICS_URL = typer.Option(None, "--metrics-url", help="A /metrics URL of serve (or a "
                           "saved scrape), for errors and p99; repeat it for each pod.")
POLICY = typer.Option(None, "--policy", help="The thresholds (default: the repository's "
                      "promotion.yaml).")
RECORDED_CHART = typer.Option(None, "--chart", help="The chart (default: the one the "
                              "canary started with).")
UNTIL_DECIDED = typer.Option(False, "--until-decided", help="Look again every --every "
                             "until the canary is promoted or rolled back, or --timeout "
                             "has passed.")
EVERY = typer.Option("5m", "--every", help="With --until-decided: the time between looks "
                     "(45s, 5m, ...).")
TIMEOUT = typer.Option("2h", "--timeout", help="With --until-decided: how long to keep "
                       "looking.")
ON_TIMEOUT = typer.Option("rollback", "--on-timeout", help="With --until-decided, when "
                          "--timeout passes undecided: rollback (the stage keeps its "
                          "version) or wait (recorded; exit 5).")


# where the traffic is split ---------------------------------------------------------

@dataclass(frozen=True)
class Release:
    """A Helm release of charts/recstack, whose values split the traffic."""

    name: str
    namespace: str | None
    chart: Path

    def command(self, values: dict[str, object]) -> list[str]:
        """`helm upgrade` keeping every other value; version ids need no quoting."""
        scope = ["--namespace", self.namespace] if self.namespace else []
        settings = ",".join(f"{key}={_helm_value(value)}" for key, value in values.items())
        return ["helm", "upgrade", self.name, str(self.chart), "--reuse-values", *scope,
                "--set", settings]

    def as_dict(self) -> dict[str, str | None]:
        return {"release": self.name, "namespace": self.namespace, "chart": str(self.chart)}


def _helm_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


Target = Path | Release  # serve.yaml, or a release


def _target(kubernetes: bool, serve_config: Path | None, release: str | None,
            namespace: str | None, chart: Path, apply: bool) -> Target:
    """Where `rollout canary` splits the traffic, from its options."""
    if kubernetes and serve_config is not None:
        fail("give --serve-config or --kubernetes, not both", EXIT_INVALID_INPUT)
    if apply and not kubernetes:
        fail("--apply runs the helm command of --kubernetes; without it serve.yaml is "
             "written anyway", EXIT_INVALID_INPUT)
    if not kubernetes:
        path = serve_config or SERVE_CONFIG
        if path.is_dir() or not path.parent.is_dir():
            fail(f"--serve-config {path}: not a file in an existing directory",
                 EXIT_INVALID_INPUT)
        return path.resolve()
    if not release:
        fail("--kubernetes needs --release NAME (the Helm release)", EXIT_INVALID_INPUT)
    return Release(release, namespace, chart)


def _recorded_target(start: StageEntry, serve_config: Path | None, kubernetes: bool,
                     release: str | None, namespace: str | None, chart: Path | None
                     ) -> Target | None:
    """Where `rollout check` resets the traffic: its options, else what the canary's
    start recorded."""
    recorded = start.details.get("kubernetes")
    if kubernetes or (recorded and serve_config is None):
        known = recorded or {}
        name = release or known.get("release")
        if not name:
            fail("--kubernetes needs --release NAME: the canary's start recorded none",
                 EXIT_INVALID_INPUT)
        return Release(name, namespace or known.get("namespace"),
                       chart or Path(known.get("chart") or CHART))
    if serve_config is not None:
        return serve_config
    path = start.details.get("serve_config")
    return Path(path) if path else None


def canary_name(version: str) -> str:
    """The canary predictor's name as the chart derives it from the version."""
    name = version.lower().replace("_", "-").replace(".", "-")[:40].removesuffix("-")
    if not _DNS_LABEL.match(name):
        fail(f"{version} gives the canary predictor name {name!r}, not a DNS label that "
             "starts with a letter; the chart needs one", EXIT_INVALID_INPUT)
    return name


def _variants(stage: str, canary: str | None, percent: int) -> list[dict[str, Any]]:
    """serve.yaml variants: control follows the stage, the canary is pinned; no
    canary: all traffic to control."""
    if canary is None:
        return [{"name": CONTROL, "weight": 1.0, "stage": stage}]
    return [{"name": CONTROL, "weight": round(1 - percent / 100, 4), "stage": stage},
            {"name": CANARY, "weight": round(percent / 100, 4), "version": canary}]


def _staged(path: Path, variants: list[dict[str, Any]]) -> Path:
    """serve.yaml with its variants replaced (every other key kept; comments are not),
    written beside it and loaded as `recstack serve` loads it; `os.replace` puts it in
    place. A file serve could not load is refused before anything is recorded."""
    from serving.config import ConfigError, load_config

    raw: Any = {}
    if path.exists():
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            fail(f"--serve-config {path}: not readable YAML ({exc})", EXIT_INVALID_INPUT)
        if not isinstance(raw, dict):
            fail(f"--serve-config {path}: a mapping expected at the top level",
                 EXIT_INVALID_INPUT)
    staged = path.with_name(f".{path.name}.rollout")
    staged.write_text(yaml.safe_dump({**raw, "variants": variants}, sort_keys=False))
    try:
        load_config(staged)
    except ConfigError as exc:
        staged.unlink()
        fail(f"--serve-config: {str(exc).replace(str(staged), str(path))}",
             EXIT_INVALID_INPUT)
    return staged


def _run_helm(command: list[str]) -> bool:
    """Run helm; False (said on stderr) when it failed or is not installed."""
    try:
        done = subprocess.run(command, check=False)
    except OSError as exc:
        errors.print(f"[red]helm did not run:[/] {exc}")
        return False
    return done.returncode == 0


# rollout canary ---------------------------------------------------------------------

@app.command()
def canary(version: str = typer.Argument(..., help="The version to send traffic to: its "
                                         "id or a unique prefix of it."),
           registry: str = REGISTRY, stage: Stage = STAGE,
           percent: int = typer.Option(10, "--percent", min=1, max=99, help="The share of "
                                       "requests (users, in serve.yaml) for the canary."),
           serve_config: Path | None = SERVE, kubernetes: bool = KUBERNETES,
           release: str | None = RELEASE, namespace: str | None = NAMESPACE,
           chart: Path = CHART_OPTION, apply: bool = APPLY,
           note: str = typer.Option("", help="Why, for the stage's history."),
           by: str | None = BY) -> None:
    """Send a share of a stage's traffic to a new version.

    Refused unless the stage has a current version, VERSION may enter the stage (prod
    takes only versions that have been in staging) and no canary is open there. Without
    --kubernetes, --serve-config (default serve.yaml) gets two variants, control (the
    stage, followed) and canary (VERSION), and the command to restart `recstack serve`
    with is printed. With --kubernetes, the helm upgrade that turns on the chart's KServe
    canary (pinning the stable predictor to the current version, as the chart needs) is
    printed, and run with --apply. `canary_start` goes into the stage's history; then
    run `recstack rollout check`. Exit codes: 0 started, 1 refused or failed, 2 bad
    input."""
    actor = who(by)
    target = _target(kubernetes, serve_config, release, namespace, chart, apply)
    reg = Registry(registry)
    try:
        version = reg.find(version)
        current = _refuse_start(reg, version, stage)
    except RegistryError as exc:
        fail(str(exc))
    details: dict[str, Any] = {"percent": percent, "control": current}
    if isinstance(target, Path):
        staged = _staged(target, _variants(stage, version, percent))
        _record_start(reg, stage, version, actor, note,
                      details | {"arms_by": "variant", "serve_config": str(target)},
                      staged.unlink)
        os.replace(staged, target)
        console.print(f"wrote {target}; restart serve with:\n  recstack serve --registry "
                      f"{shlex.quote(registry)} --stage {stage} --config "
                      f"{shlex.quote(str(target))}", highlight=False, soft_wrap=True)
        return
    name = canary_name(version)
    _record_start(reg, stage, version, actor, note,
                  details | {"arms_by": "model_version", "kubernetes": target.as_dict()})
    command = target.command({
        "inferenceService.version": current,
        "inferenceService.canary.enabled": True,
        "inferenceService.canary.version": version,
        "inferenceService.canary.name": name,
        "inferenceService.canary.trafficPercent": percent})
    _helm(command, apply, on_failure=lambda: reg.record(
        stage, version, "canary_stop", by=actor, note="helm upgrade failed: no canary "
        "was started", details=details))


def _record_start(reg: Registry, stage: str, version: str, by: str, note: str,
                  details: dict[str, Any], cleanup: Callable[[], object] | None = None
                  ) -> None:
    """`canary_start` in the stage's history; on a conflict nothing else happens."""
    try:
        reg.record(stage, version, "canary_start", by=by, note=note, details=details)
    except RegistryError as exc:  # StageConflict too: nothing was changed
        if cleanup is not None:
            cleanup()
        fail(str(exc))
    console.print(f"canary: {version} takes {details['percent']}% of {stage}, beside "
                  f"{details['control']}", highlight=False)


def _refuse_start(reg: Registry, version: str, stage: str) -> str:
    """The stage's current version (the control), unless a canary may not start."""
    current = reg.stage(stage)
    if current is None:
        fail(f"{stage} has no version yet: a canary runs beside the stage's current "
             f"version (`recstack models promote VERSION --to {stage}` first)")
    if version == current:
        fail(f"{version} is {stage}'s current version already")
    already = reg.canary(stage)
    if already is not None:
        fail(f"a canary of {already.version} is open on {stage} since "
             f"{already.at:%Y-%m-%d %H:%M} UTC: `recstack rollout check` decides it first")
    problem = reg.order_problem(version, stage)
    if problem:
        fail(problem)
    return current


def _helm(command: list[str], apply: bool, on_failure: Callable[[], object] | None = None,
          meanwhile: str = "") -> None:
    """Print the helm command; with --apply run it, and on failure undo what was
    recorded (`on_failure`), say what stands (`meanwhile`) and exit 1."""
    console.print(("running: " if apply else "run: ") + shlex.join(command),
                  highlight=False, soft_wrap=True)
    if apply and not _run_helm(command):
        if on_failure is not None:
            on_failure()
        fail(f"helm upgrade failed{meanwhile}: run it again: {shlex.join(command)}")


# rollout check ----------------------------------------------------------------------

def parse_window(text: str | None, option: str = "--window") -> pd.Timedelta | None:
    """A span of time: 45s, 30m, 2h, 1d."""
    import pandas as pd

    if text is None:
        return None
    span = _SPAN.match(text.strip())
    if not span or int(span.group(1)) == 0:
        fail(f"{option}: {text!r} is not a span such as 45s, 30m, 2h or 1d",
             EXIT_INVALID_INPUT)
    return pd.Timedelta(**{_SPAN_UNITS[span.group(2)]: int(span.group(1))})


def _check_events_path(path: Path) -> None:
    if not path.exists():
        fail(f"--events {path}: not found", EXIT_INVALID_INPUT)
    if path.is_dir() and not ((path / "events.parquet").exists()
                              or (path / "events_stream").is_dir()):
        fail(f"--events {path}: not a data directory (no events.parquet or "
             "events_stream/)", EXIT_INVALID_INPUT)
    if path.is_file() and path.suffix != ".parquet":
        fail(f"--events {path}: a data directory or a .parquet file of events expected",
             EXIT_INVALID_INPUT)


def read_events(path: Path, since: pd.Timestamp) -> pd.DataFrame:
    """The events from `since` on of a data directory's whole history (events.parquet
    and what the consumer streamed) or of one parquet file; filtered in Arrow, before
    months of history become a DataFrame."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from models.data.event_log import read_history

    try:
        table = read_history(path) if path.is_dir() else pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        fail(f"--events {path}: not readable as events ({exc})", EXIT_INVALID_INPUT)
    missing = {"event_type", "request_id", "item_id", "user_id", "timestamp", "context",
               "value"} - set(table.column_names)
    if missing or not pa.types.is_timestamp(table.schema.field("timestamp").type):
        fail(f"--events {path}: not an events table ("
             + (f"no {', '.join(sorted(missing))}" if missing else "timestamp is not a time")
             + ")", EXIT_INVALID_INPUT)
    utc = pa.timestamp("us", tz="UTC")  # the schema's; a naive time is taken as UTC
    times = pc.cast(table["timestamp"], utc, safe=False)  # ns truncated to us: harmless
    return table.filter(pc.greater_equal(times, pa.scalar(since.floor("us").to_pydatetime(), utc))
                        ).to_pandas()


def _scrape(url: str) -> str:
    """A /metrics page; a plain path is a saved scrape (an incident's, a test's)."""
    if "://" not in url:
        return Path(url).read_text()
    with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT_S) as answer:
        return str(answer.read().decode())


def _health(urls: list[str], control: str, canary: str, arms_by: str) -> ServingHealth:
    """Serving health from the /metrics of every URL (each predictor's, for KServe)."""
    from models.evaluation.canary import METRIC_LABEL, serving_health

    texts = []
    for url in urls:
        try:
            texts.append(_scrape(url))
        except (OSError, ValueError, urllib.error.URLError) as exc:
            fail(f"--metrics-url {url}: {exc}")
    try:
        return serving_health("\n".join(texts), control, canary, METRIC_LABEL[arms_by])
    except ValueError as exc:
        fail(f"--metrics-url: not Prometheus text ({exc})")


@app.command()
def check(registry: str = REGISTRY, stage: Stage = STAGE, events: Path = EVENTS,
          window: str | None = WINDOW, metrics_url: list[str] | None = METRICS_URL,
          policy: Path | None = POLICY, serve_config: Path | None = SERVE,
          kubernetes: bool = KUBERNETES, release: str | None = RELEASE,
          namespace: str | None = NAMESPACE, chart: Path | None = RECORDED_CHART,
          apply: bool = APPLY, until_decided: bool = UNTIL_DECIDED, every: str = EVERY,
          timeout: str = TIMEOUT, on_timeout: str = ON_TIMEOUT, by: str | None = BY) -> None:
    """Promote, wait or roll back a stage's open canary, on live traffic.

    Compares the canary's impressions and clicks with control's since the canary started
    (or the last --window of them), with errors and p99 from --metrics-url, by the rules
    in models/evaluation/canary.py and promotion.yaml `canary:`. A wait is recorded as
    canary_wait, with the numbers. A promotion moves the stage to the canary (refused if
    the stage moved meanwhile) and sends all traffic to it. A rollback sends all traffic
    back to control (serve.yaml, or the helm command, run with --apply) and records
    canary_stop. serve.yaml or the release is the one the canary started with unless
    --serve-config or --kubernetes says otherwise. Exit codes: 0 promoted or waiting, 3
    rolled back, 1 another error (no open canary, a failed helm run, a concurrent change
    of the stage: run again), 2 bad input, 5 still undecided at --timeout with
    --on-timeout wait.

    With --until-decided the check is repeated every --every (each look printed, only
    the last one recorded) until it promotes or rolls back; a canary still undecided
    after --timeout is rolled back (or, with --on-timeout wait, recorded as a wait).
    Each look is a new test on the same, grown traffic: the more looks, the likelier a
    chance crossing of a bound (benchmarks/canary_decisions.py measures how often at
    the default margin and cadence)."""
    actor = who(by)
    span = parse_window(window)
    pause, limit = parse_window(every, "--every"), parse_window(timeout, "--timeout")
    if on_timeout not in ("rollback", "wait"):
        fail(f"--on-timeout: {on_timeout!r} is not rollback or wait", EXIT_INVALID_INPUT)
    _check_events_path(events)
    from recstack.cli.promotion import policy_from

    thresholds = policy_from(policy).canary
    reg = Registry(registry)
    start = _open_canary(reg, stage)
    target = _recorded_target(start, serve_config, kubernetes, release, namespace, chart)
    if apply and not isinstance(target, Release):
        errors.print("[yellow]note:[/] --apply runs helm, for a canary on Kubernetes only")
    def look() -> tuple[Decision, str]:
        return _decide(start, stage, reg, events, span, metrics_url or [], thresholds)

    decision, control = (_looks(look, pause, limit, timeout, on_timeout) if until_decided
                         else look())
    if decision.action == "wait":
        _record(reg, stage, start.version, "canary_wait", actor, decision.reasons[0],
                decision.figures)
        if until_decided:
            raise typer.Exit(EXIT_UNDECIDED)
    elif decision.action == "promote":
        _promote(reg, stage, start.version, control, actor, decision)
        _finish(target, registry, stage, start.version, apply, promoted=True)
    else:
        _finish(target, registry, stage, start.version, apply, promoted=False)
        _record(reg, stage, start.version, "canary_stop", actor,
                f"rolled back: {decision.reasons[0]}", decision.figures)
        raise typer.Exit(EXIT_ROLLBACK)


def _open_canary(reg: Registry, stage: str) -> StageEntry:
    """The `canary_start` of the stage's open canary; none open is an error."""
    try:
        start = reg.canary(stage)
    except RegistryError as exc:
        fail(str(exc))
    if start is None:
        fail(f"no canary is open on {stage}: `recstack rollout canary VERSION` starts one")
    return start


def _looks(look: Callable[[], tuple[Decision, str]], pause: pd.Timedelta | None,
           limit: pd.Timedelta | None, timeout: str, on_timeout: str
           ) -> tuple[Decision, str]:
    """Look until a look decides or the time is up; the last look, as timed out."""
    from models.evaluation.canary import timed_out

    assert pause is not None and limit is not None  # parse_window of given options
    deadline = time.monotonic() + limit.total_seconds()
    while True:
        decision, control = look()
        left = deadline - time.monotonic()
        if decision.action != "wait":
            return decision, control
        if left <= 0:
            if on_timeout == "wait":
                return decision, control
            decision = timed_out(decision, timeout)
            console.print(f"decision after {timeout}: [bold]{decision.action}[/]",
                          highlight=False)
            return decision, control
        wait_s = min(pause.total_seconds(), left)
        console.print(f"next look in {wait_s:.0f} s ({left / 60:.1f} min left)",
                      highlight=False)
        time.sleep(wait_s)


def _decide(start: StageEntry, stage: str, reg: Registry, path: Path,
            span: pd.Timedelta | None, urls: list[str], thresholds: Canary
            ) -> tuple[Decision, str]:
    """Run the check on the canary's traffic and print it; (decision, control version)."""
    import pandas as pd

    from models.evaluation.canary import check as decide

    control = str(start.details.get("control") or reg.stage(stage))
    arms_by = start.details.get("arms_by", "variant")
    arms = (CONTROL, CANARY) if arms_by == "variant" else (control, start.version)
    since = checks.as_utc(pd.Timestamp(start.at))
    if span is not None:
        since = max(since, pd.Timestamp.now(tz="UTC") - span)
    health = _health(urls, *arms, arms_by) if urls else None
    decision = decide(read_events(path, since), *arms, thresholds, since, health,
                      arms=arms_by)
    console.print(_table(decision, control, start.version, health, since))
    console.print(f"decision: [bold]{decision.action}[/]", highlight=False)
    for reason in decision.reasons:
        console.print(f"  - {reason}", highlight=False, soft_wrap=True)
    return decision, control


def _table(decision: Decision, control: str, canary: str, health: ServingHealth | None,
           since: pd.Timestamp) -> Table:
    from models.evaluation.canary import milliseconds, percent_interval

    table = Table(title=f"Canary {canary} against {control}",
                  caption=f"since {since:%Y-%m-%d %H:%M:%S} UTC; 95% intervals")
    for column in ("arm", "impressions", "CTR [95%]", "conversion", "revenue/session",
                   "errors", "p99"):
        table.add_column(column, justify="left" if column in ("arm", "CTR [95%]")
                         else "right")
    arms = ((decision.control, None if health is None else health.control),
            (decision.canary, None if health is None else health.canary))
    for arm, served in arms:
        rate = None if served is None else served.error_rate
        table.add_row(arm.name, f"{arm.impressions:,}", percent_interval(arm.ctr),
                      percent_interval(arm.conversion),
                      "n/a" if arm.sessions == 0 else f"{arm.revenue_per_session.value:.2f}",
                      "-" if served is None else
                      ("n/a" if rate is None else f"{rate:.2%} of {served.requests:,}"),
                      "-" if served is None else milliseconds(served.p99_s))
    return table


def _record(reg: Registry, stage: str, version: str, action: Action, by: str, note: str,
            figures: dict[str, Any]) -> None:
    try:
        reg.record(stage, version, action, by=by, note=note, details=figures)
    except RegistryError as exc:
        fail(f"{exc} (the decision above was not recorded)")
    console.print(f"recorded {action} of {version} in {stage}'s history", highlight=False)


def _promote(reg: Registry, stage: str, version: str, control: str, by: str,
             decision: Decision) -> None:
    """The stage to the canary, only if it still stands on the control it was
    checked against."""
    try:
        entry = reg.promote(version, stage, by=by, note=f"canary: {decision.reasons[0]}",
                            details=decision.figures, expected=control)
    except (StageConflict, RegistryError) as exc:
        fail(str(exc))
    console.print(f"{stage} -> {entry.version}", highlight=False)


@app.command()
def finish(registry: str = REGISTRY, stage: Stage = STAGE,
           serve_config: Path | None = SERVE, kubernetes: bool = KUBERNETES,
           release: str | None = RELEASE, namespace: str | None = NAMESPACE,
           chart: Path | None = RECORDED_CHART, apply: bool = APPLY) -> None:
    """Send all traffic where the last canary's check decided.

    For a check that ran where it could not change the traffic: on the cluster, beside
    the event history, while helm runs elsewhere (deploy.yml runs the check in the
    consumer's pod and this in the runner). Reads the stage's history: after a
    promotion all traffic goes to the canary's version, after a rollback back to
    control; serve.yaml or the release is the one the canary started with unless
    given. Refused while the canary is still open. Exit codes: 0 done (or printed), 1
    refused or a failed helm run, 2 bad input."""
    reg = Registry(registry)
    try:
        entries = reg.history()[stage]  # read once: the open canary, its start, the stage
    except RegistryError as exc:
        fail(str(exc))
    opened = open_canary(entries)
    start = next((e for e in reversed(entries) if e.action == "canary_start"), None)
    now = current_version(entries)
    if opened is not None:
        fail(f"the canary of {opened.version} on {stage} is still open: `recstack rollout "
             "check` decides it first")
    if start is None or now is None:
        fail(f"no canary has run on {stage}: nothing to finish")
    target = _recorded_target(start, serve_config, kubernetes, release, namespace, chart)
    promoted = now == start.version
    console.print(f"{stage} stands on {now}: the canary of {start.version} was "
                  f"{'promoted' if promoted else 'rolled back'}", highlight=False)
    _finish(target, registry, stage, start.version, apply, promoted=promoted)


def _finish(target: Target | None, registry: str, stage: str, canary: str, apply: bool,
            promoted: bool) -> None:
    """All traffic to one arm: control, which follows the stage (now the canary's
    version after a promotion). With serve.yaml, one variant; with a release, the
    canary off (and the stable predictor on the canary's version after a promotion)."""
    if target is None:
        errors.print("[yellow]note:[/] the canary's start recorded no serve.yaml or "
                     "release: send all traffic to control yourself")
        return
    if isinstance(target, Release):
        values: dict[str, object] = ({"inferenceService.version": canary,
                                      "inferenceService.canary.enabled": False}
                                     if promoted else
                                     {"inferenceService.canary.enabled": False,
                                      "inferenceService.canary.trafficPercent": 0})
        _helm(target.command(values), apply, meanwhile=(
            f" after {stage} moved to {canary}; the canary still takes its share"
            if promoted else "; the canary still takes its share"))
        return
    os.replace(_staged(target, _variants(stage, None, 0)), target)
    console.print(f"wrote {target} (all traffic to {CONTROL}, following {stage}); restart "
                  f"serve with:\n  recstack serve --registry {shlex.quote(registry)} "
                  f"--stage {stage} --config {shlex.quote(str(target))}", highlight=False,
                  soft_wrap=True)
