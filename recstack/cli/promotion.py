"""Fresh evaluation and gated promotion: `recstack evaluate VERSION --data DIR` and
`recstack models promote VERSION --to STAGE`.

Both score versions on a window of events they have not seen
(models/evaluation/fresh.py); promote scores the candidate and the stage's current
version on the same window and decides with the gates (models/evaluation/gates.py)
and promotion.yaml (contracts/promotion.py). A version's figures on a window are
written beside it in the registry (`versions/<id>/evaluations/<window>/`), so a
second promotion on the same window reuses them.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.table import Table

from contracts.promotion import Policy, PolicyError, load_policy
from recstack.cli import checks
from recstack.cli.console import EXIT_INVALID_INPUT, console, errors, fail
from stores.registry import (
    EVALUATIONS,
    RECS_FILE,
    Manifest,
    Registry,
    RegistryError,
    StageConflict,
)

if TYPE_CHECKING:
    from contracts.settings import Settings

EXIT_REFUSED = 4  # a gate failed: said in `models promote --help`
GATED_STAGES = ("staging", "prod")  # dev takes any trained version


@dataclass(frozen=True)
class Fresh:
    """Everything one window needs, read once for all the versions scored on it."""

    data: Path
    events: pd.DataFrame
    who: Any  # models.evaluation.fresh.WindowUsers
    join: Any  # models.ranker.features.FeatureJoin
    policy: Policy


def policy_from(path: Path | None) -> Policy:
    try:
        return load_policy(path)
    except PolicyError as exc:
        fail(str(exc), EXIT_INVALID_INPUT)


def cutoff(manifest: Manifest) -> pd.Timestamp | None:
    """The version's last training event: fresh data starts after it."""
    last = manifest.data_snapshot.get("last_event")
    return checks.as_utc(pd.Timestamp(last)) if last else None


def open_window(data: Path, since: pd.Timestamp, until: pd.Timestamp | None,
                policy: Policy, settings: Settings) -> Fresh:
    from models.data.dataset import events_sha256
    from models.evaluation.fresh import Window, window_users
    from models.ranker.features import store_join
    from recstack.cli.features import ready_store

    events = pd.read_parquet(data / "events.parquet")
    items = pd.read_parquet(data / "items.parquet")
    users_file = data / "users.parquet"
    users = pd.read_parquet(users_file) if users_file.exists() else pd.DataFrame(
        {"user_id": pd.Series([], dtype=str)})
    window = Window(since, until, events_sha256(data))
    who = window_users(events, items, users, window, policy.window.max_users)
    if len(who.user_ids) < policy.window.min_users:
        fail(f"the window {window.since:%Y-%m-%d %H:%M} to "
             f"{'the end' if until is None else f'{until:%Y-%m-%d %H:%M}'} of {data} has "
             f"{len(who.user_ids)} users with a new interaction; the gates need "
             f"{policy.window.min_users} (promotion.yaml window.min_users): wait for more "
             "events or pass an earlier --since", EXIT_INVALID_INPUT)
    store = ready_store(data, settings, announce=errors.print)
    return Fresh(data, events, who, store_join(store), policy)


def scored_on(registry: Registry, manifest: Manifest, fresh: Fresh) -> Any:
    """The version's figures on the window: read from beside it when it was scored on
    this window before, else scored now and written there."""
    from models.bundle import load_bundle
    from models.evaluation.fresh import Scored, score_version

    key = f"{EVALUATIONS}/{fresh.who.window.key()}"
    saved = registry.read_beside(manifest.version, f"{key}/per_user.parquet")
    summary = registry.read_beside(manifest.version, f"{key}/result.json")
    if saved is not None and summary is not None:
        result = json.loads(summary)
        return Scored(manifest.version, pd.read_parquet(io.BytesIO(saved)), None,
                      result["figures"])
    since = fresh.who.window.since
    trained_until = cutoff(manifest)
    if trained_until is not None and trained_until >= since:
        errors.print(f"[yellow]note:[/] {manifest.version} was trained on events up to "
                     f"{trained_until:%Y-%m-%d %H:%M}, after the window's start: it has "
                     "seen part of this window, so its figures flatter it")
    try:
        bundle = load_bundle(registry.fetch(manifest.version))
    except FileNotFoundError as exc:
        fail(str(exc))
    scored = score_version(manifest.version, bundle, fresh.events, fresh.who, fresh.join,
                           fresh.policy.fairness.activity_buckets, progress=errors.print)
    buffer = io.BytesIO()
    scored.per_user.to_parquet(buffer, index=False)
    registry.write_beside(manifest.version, f"{key}/per_user.parquet", buffer.getvalue())
    registry.write_beside(manifest.version, f"{key}/result.json", json.dumps(
        {"version": manifest.version, "window": fresh.who.window.as_dict(),
         "data_dir": str(fresh.data), "figures": scored.summary}, indent=1).encode())
    return scored


def window_since(since: str | None, *manifests: Manifest | None) -> pd.Timestamp:
    """--since, else the newest training cutoff among the versions compared."""
    if since is not None:
        return checks.instant("--since", since)
    cutoffs = [c for c in (cutoff(m) for m in manifests if m is not None) if c is not None]
    if not cutoffs:
        fail("the versions' manifests name no training cutoff: pass --since",
             EXIT_INVALID_INPUT)
    return max(cutoffs) + pd.Timedelta(seconds=1)


# recstack evaluate -------------------------------------------------------------------

def evaluate_fresh(registry: Registry, manifest: Manifest, data: Path, since: str | None,
                   until: str | None, report: Path | None, policy_file: Path | None
                   ) -> None:
    from models.evaluation.fresh_report import render

    policy = policy_from(policy_file)
    start = window_since(since, manifest)
    end = checks.instant("--until", until) if until else None
    # This is `recstack evaluate`'s body: the environment is read here, once.
    fresh = open_window(data, start, end, policy, checks.settings())
    scored = scored_on(registry, manifest, fresh)
    key = f"{EVALUATIONS}/{fresh.who.window.key()}"
    page = render(manifest.version, fresh.who.window.as_dict(), scored.summary,
                  scored.per_user)
    where = registry.write_beside(manifest.version, f"{key}/report.html", page.encode())
    if report is not None:
        report.write_text(page)
    console.print_json(json.dumps({"version": manifest.version,
                                   "window": fresh.who.window.as_dict(),
                                   "fresh": scored.summary}))
    errors.print(f"written beside the version: {where.rsplit('/', 1)[0]}/"
                 + (f"; report also at {report}" if report else ""))


# recstack models promote --------------------------------------------------------------

def gated_promote(registry: Registry, version: str, stage: str, by: str, note: str,
                  data: Path | None, since: str | None, policy_file: Path | None,
                  force: bool, reason: str | None, dry_run: bool = False) -> None:
    if force and not reason:
        fail("--force needs --reason \"...\": the stage history keeps who forced what and "
             "why", EXIT_INVALID_INPUT)
    if dry_run and (stage not in GATED_STAGES or data is None):
        fail("--dry-run runs the gates: they are for staging and prod, with --data",
             EXIT_INVALID_INPUT)
    try:
        candidate = registry.manifest(version)
        current_id = registry.stage(stage)
    except RegistryError as exc:
        fail(str(exc))
    if stage not in GATED_STAGES or (force and data is None):
        _promote(registry, candidate.version, stage, by, note, current_id,
                 reason if force else None, {})
        return
    if data is None:
        fail(f"promoting to {stage} runs the gates on fresh data: pass --data DIR (a data "
             "directory with events after the versions' training), or --force --reason",
             EXIT_INVALID_INPUT)
    policy = policy_from(policy_file)
    current = registry.manifest(current_id) if current_id else None
    # This is `models promote`'s body: the environment is read here, once, and only
    # on the path that opens the feature store.
    gates = run_gates(registry, candidate, current, stage, data, since, policy,
                      checks.settings())
    console.print(gate_table(candidate.version, current_id, stage, gates))
    for gate in gates:
        if gate.note:
            console.print(f"  {gate.name}: {gate.note}", style="dim", highlight=False)
    failed = [g for g in gates if g.blocks()]
    details = {"gates": [g.as_dict() for g in gates], "against": current_id}
    if failed and not force:
        fail(f"{candidate.version} refused for {stage}: " + "; ".join(
            f"{g.name} {_cell(g.candidate)}, needs {g.threshold}" for g in failed),
            EXIT_REFUSED)
    if dry_run:
        console.print(f"{candidate.version} passes every gate for {stage} (dry run: "
                      "nothing changed)")
        return
    if failed:
        errors.print(f"[yellow]forced past {len(failed)} failing gate(s):[/] {reason}")
    _promote(registry, candidate.version, stage, by, note, current_id,
             reason if force else None, details)


def _promote(registry: Registry, version: str, stage: str, by: str, note: str,
             current: str | None, force_reason: str | None, details: dict[str, Any]) -> None:
    try:
        entry = registry.promote(version, stage, by=by, note=note, force_reason=force_reason,
                                 details=details, expected=current)
    except StageConflict as exc:
        fail(str(exc))
    except RegistryError as exc:
        fail(str(exc), EXIT_REFUSED if "never been in" in str(exc) else 1)
    console.print(f"{stage} -> {entry.version}" + (" (forced)" if entry.forced else ""))


def run_gates(registry: Registry, candidate: Manifest, current: Manifest | None,
              stage: str, data: Path, since: str | None, policy: Policy,
              settings: Settings) -> list[Any]:
    from models.evaluation import gates

    fresh = open_window(data, window_since(since, candidate, current), None, policy,
                        settings)
    ours = scored_on(registry, candidate, fresh)
    theirs = scored_on(registry, current, fresh) if current else None
    found = [gates.order_gate(registry.order_problem(candidate.version, stage), stage),
             *gates.accuracy_gates(ours, theirs, policy),
             *gates.catalog_gates(ours, theirs, policy),
             *gates.fairness_gates(ours, theirs, policy)]
    requests = _latency_users(fresh)
    p99 = _latency(registry, candidate, current, fresh, requests, settings)
    found.append(gates.latency_gate(p99[candidate.version],
                                    p99.get(current.version) if current else None,
                                    len(requests), policy))
    estimate = _off_policy(registry, candidate, current, fresh)
    if estimate is not None:
        gate = gates.off_policy_gate(*estimate, policy)
        if gate is not None:
            found.append(gate)
    return found


def _latency_users(fresh: Fresh) -> list[str]:
    users = list(fresh.who.user_ids)
    step = max(1, len(users) // fresh.policy.latency.requests)
    return users[::step][:fresh.policy.latency.requests]


def _latency(registry: Registry, candidate: Manifest, current: Manifest | None,
             fresh: Fresh, users: list[str], settings: Settings) -> dict[str, float]:
    from serving.features import open_serving_store
    from serving.scoring_latency import alternated_p99_ms

    dirs = {m.version: registry.fetch(m.version) for m in (candidate, current) if m}
    store = open_serving_store(fresh.data, settings)
    errors.print(f"timing {len(users)} in-process answers per version")
    return alternated_p99_ms(dirs, store, users)


def _off_policy(registry: Registry, candidate: Manifest, current: Manifest | None,
                fresh: Fresh) -> tuple[Any, Any] | None:
    """Each version's SNIPS estimate on the logged exploration impressions of the
    window, from the lists it stored; None without logged exploration."""
    from models.evaluation import off_policy

    log = off_policy.exploration_log(fresh.events)
    if log.empty:
        return None

    def estimate(manifest: Manifest) -> tuple[float, float, float, int]:
        lists = pd.read_parquet(registry.fetch(manifest.version) / RECS_FILE)
        ranked = {str(u): list(part.sort_values("rank")["item_id"].astype(str))
                  for u, part in lists.groupby("user_id")}
        found = off_policy.snips(log, ranked)
        return found.value, found.low, found.high, found.matched

    return estimate(candidate), estimate(current) if current else None


def gate_table(candidate: str, current: str | None, stage: str, gates: list[Any]) -> Table:
    table = Table(title=f"Gates for {candidate} -> {stage}",
                  caption=f"against {current or 'nothing (the stage is empty)'}")
    for column in ("gate", "candidate", "current", "threshold", "result"):
        table.add_column(column, justify="right" if column in ("candidate", "current")
                         else "left")
    for gate in gates:
        result = ("[green]pass[/]" if gate.passed else "[red]FAIL[/]") if gate.gated \
            else "[dim]shown[/]"
        table.add_row(gate.name, _cell(gate.candidate), _cell(gate.current),
                      gate.threshold, result)
    return table


def _cell(value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return "nan" if math.isnan(value) else f"{value:.4f}"
