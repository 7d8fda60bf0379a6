"""`recstack rollout canary` and `rollout check` end to end on a real local registry:
serve.yaml written and loadable, simulated traffic decided, the stage history kept,
the helm path with a stand-in helm, and the refusals."""

from __future__ import annotations

import os
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from contracts.schemas import EVENTS_SCHEMA
from models.evaluation.canary import Traffic, simulate_traffic
from recstack.cli.rollout import EXIT_ROLLBACK, EXIT_UNDECIDED, app, read_events
from serving.config import load_config
from stores.registry import Manifest, Registry

runner = CliRunner()
ENV = {"COLUMNS": "200", "GITHUB_ACTOR": "ci-bot"}


def _manifest(version: str, minutes: int) -> Manifest:
    return Manifest(version=version,
                    created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes),
                    code_revision="abc123", data_snapshot={"events": 10},
                    feature_service="ranker", params={"k": 1}, metrics={"ndcg@10": 0.1})


@pytest.fixture()
def registry(tmp_path: Path) -> Path:
    """v1 in prod; v2 through staging (may enter prod); v3 only in dev."""
    reg = Registry(tmp_path / "reg")
    artifacts = tmp_path / "artifacts"
    (artifacts / "ranker").mkdir(parents=True)
    (artifacts / "ranker" / "model.json").write_text('{"trees": []}')
    for n, version in enumerate(("v1", "v2", "v3")):
        reg.publish(_manifest(version, n), artifacts)
    for stage in ("dev", "staging", "prod"):
        reg.promote("v1", stage, by="ci")
    for stage in ("dev", "staging"):
        reg.promote("v2", stage, by="ci")
    reg.promote("v3", "dev", by="ci")
    return tmp_path / "reg"


def run(*args: str):
    return runner.invoke(app, list(args), env=ENV)


def _serve_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({
        "experiment": "home-feed", "cache": {"ttl_s": 60},
        "variants": [{"name": "control", "weight": 0.5},
                     {"name": "diverse", "weight": 0.5,
                      "rules": {"diversity_weight": 0.5}}]}))
    return path


def _traffic(tmp_path: Path, canary_ctr: float, canary_impressions: int,
             control: str = "control", canary: str = "canary") -> Path:
    """A data directory whose events.parquet holds seeded traffic from now on: 10% of
    users on the canary, control's CTR 5%."""
    traffic = Traffic(control_ctr=0.05, canary_ctr=canary_ctr, canary_share=0.1,
                      control=control, canary=canary,
                      control_version="v1", canary_version="v2")
    events = simulate_traffic(traffic, traffic.requests_for(canary_impressions), seed=11,
                              start=pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1))
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.Table.from_pandas(events, schema=EVENTS_SCHEMA, preserve_index=False),
                   data / "events.parquet")
    return data


def _start(registry: Path, serve: Path, *extra: str):
    started = run("canary", "v2", "--registry", str(registry), "--stage", "prod",
                  "--percent", "10", "--serve-config", str(serve), *extra)
    assert started.exit_code == 0, started.output
    return started


def test_a_better_canary_is_started_checked_and_promoted(registry: Path,
                                                         tmp_path: Path) -> None:
    serve = _serve_yaml(tmp_path)
    started = _start(registry, serve)
    assert "v2 takes 10% of prod, beside v1" in started.output
    assert f"recstack serve --registry {registry} --stage prod --config {serve}" in \
        started.output
    config = load_config(serve)  # as serve loads it
    assert [(v.name, v.weight, v.stage, v.version) for v in config.variants] == [
        ("control", 0.9, "prod", None), ("canary", 0.1, None, "v2")]
    assert config.experiment == "home-feed" and config.cache.ttl_s == 60  # kept
    reg = Registry(registry)
    opened = reg.canary("prod")
    assert opened is not None and opened.version == "v2" and opened.by == "ci-bot"
    assert opened.details["percent"] == 10 and opened.details["control"] == "v1"
    again = run("canary", "v2", "--registry", str(registry), "--serve-config", str(serve))
    assert again.exit_code == 1 and "a canary of v2 is open on prod" in again.stderr

    data = _traffic(tmp_path, canary_ctr=0.09, canary_impressions=3000)
    checked = run("check", "--registry", str(registry), "--events", str(data),
                  "--window", "30m", "--by", "alice")
    assert checked.exit_code == 0, checked.output
    assert "decision: promote" in checked.output and "prod -> v2" in checked.output
    for column in ("arm", "impressions", "CTR [95%]", "conversion", "revenue/session",
                   "errors", "p99"):
        assert column in checked.output
    assert reg.stage("prod") == "v2" and reg.canary("prod") is None
    promoted = reg.history()["prod"][-1]
    assert promoted.action == "promote" and promoted.by == "alice"
    assert promoted.note.startswith("canary: CTR ") and "lower bound clears" in promoted.note
    assert promoted.details["canary"]["impressions"] >= 2000
    assert promoted.details["action"] == "promote"
    assert [(v.name, v.weight, v.stage) for v in load_config(serve).variants] == [
        ("control", 1.0, "prod")]  # now following prod, which is v2


def test_a_worse_canary_is_rolled_back_with_exit_3(registry: Path, tmp_path: Path) -> None:
    serve = _serve_yaml(tmp_path)
    _start(registry, serve)
    data = _traffic(tmp_path, canary_ctr=0.02, canary_impressions=3000)
    checked = run("check", "--registry", str(registry),
                  "--events", str(data / "events.parquet"))  # a file, too
    assert checked.exit_code == EXIT_ROLLBACK == 3, checked.output
    assert "decision: rollback" in checked.output and "upper bound stays below" in \
        checked.output
    reg = Registry(registry)
    stopped = reg.history()["prod"][-1]
    assert stopped.action == "canary_stop" and stopped.version == "v2"
    assert stopped.note.startswith("rolled back: CTR ")
    assert stopped.details["ctr_difference"]["high"] < stopped.details["threshold"]
    assert reg.stage("prod") == "v1" and reg.canary("prod") is None
    assert [(v.name, v.stage) for v in load_config(serve).variants] == [("control", "prod")]
    nothing_open = run("check", "--registry", str(registry), "--events", str(data))
    assert nothing_open.exit_code == 1 and "no canary is open on prod" in nothing_open.stderr


def test_failing_requests_roll_back_before_the_clicks_decide(registry: Path,
                                                             tmp_path: Path) -> None:
    serve = _serve_yaml(tmp_path)
    _start(registry, serve)
    data = _traffic(tmp_path, canary_ctr=0.09, canary_impressions=300)
    metrics = tmp_path / "metrics.txt"
    metrics.write_text(
        "# TYPE recstack_requests_total counter\n"
        'recstack_requests_total{outcome="ok",variant="control",version="v1"} 900\n'
        'recstack_requests_total{outcome="ok",variant="canary",version="v2"} 90\n'
        'recstack_requests_total{outcome="degraded",variant="canary",version="v2"} 10\n')
    checked = run("check", "--registry", str(registry), "--events", str(data),
                  "--metrics-url", str(metrics))
    assert checked.exit_code == 3, checked.output
    assert "canary failed 10.00% of 100 requests" in checked.output
    assert "10.00% of 100" in checked.output  # the table's errors column
    assert Registry(registry).history()["prod"][-1].action == "canary_stop"


def test_too_little_traffic_waits_and_records_the_numbers(registry: Path,
                                                          tmp_path: Path) -> None:
    serve = _serve_yaml(tmp_path)
    _start(registry, serve)
    data = _traffic(tmp_path, canary_ctr=0.05, canary_impressions=500)
    checked = run("check", "--registry", str(registry), "--events", str(data))
    assert checked.exit_code == 0, checked.output
    assert "decision: wait" in checked.output
    reg = Registry(registry)
    waited = reg.history()["prod"][-1]
    assert waited.action == "canary_wait" and waited.by == "ci-bot"
    assert "impressions of the 2,000 needed per arm" in waited.note
    assert waited.note.startswith(f"canary {waited.details['canary']['impressions']:,} ")
    assert 0 < waited.details["canary"]["impressions"] < 2000
    assert reg.canary("prod") is not None and reg.stage("prod") == "v1"  # still open
    assert len(load_config(serve).variants) == 2  # unchanged


def test_until_decided_looks_again_as_traffic_arrives(registry: Path,
                                                     tmp_path: Path) -> None:
    """The first looks find too little traffic; the events then grow (as the
    consumer's sink appends them) and a later look promotes."""
    serve = _serve_yaml(tmp_path)
    _start(registry, serve)
    data = _traffic(tmp_path, canary_ctr=0.05, canary_impressions=200)
    (tmp_path / "later").mkdir()
    grown = _traffic(tmp_path / "later", canary_ctr=0.09, canary_impressions=3000)

    def arrive() -> None:
        time.sleep(2.5)
        os.replace(grown / "events.parquet", data / "events.parquet")

    arriving = threading.Thread(target=arrive)
    started = time.monotonic()
    arriving.start()
    checked = run("check", "--registry", str(registry), "--events", str(data),
                  "--until-decided", "--every", "1s", "--timeout", "60s")
    arriving.join()
    assert checked.exit_code == 0, checked.output
    assert checked.output.count("decision: wait") >= 2
    assert "next look in 1 s" in checked.output and "decision: promote" in checked.output
    assert time.monotonic() - started < 30
    reg = Registry(registry)
    assert reg.stage("prod") == "v2"
    # Only the deciding look is recorded, not every wait before it.
    assert [e.action for e in reg.history()["prod"]][-2:] == ["canary_start", "promote"]


@pytest.mark.parametrize(("then", "code", "action"), [
    ("rollback", EXIT_ROLLBACK, "canary_stop"), ("wait", EXIT_UNDECIDED, "canary_wait")])
def test_a_canary_still_undecided_at_the_timeout(registry: Path, tmp_path: Path,
                                                 then: str, code: int, action: str) -> None:
    """Equal arms on little traffic never settle: after --timeout the canary is rolled
    back (the stage keeps its version), or left open and recorded as a wait."""
    serve = _serve_yaml(tmp_path)
    _start(registry, serve)
    data = _traffic(tmp_path, canary_ctr=0.05, canary_impressions=500)
    checked = run("check", "--registry", str(registry), "--events", str(data),
                  "--until-decided", "--every", "1s", "--timeout", "2s",
                  "--on-timeout", then)
    assert checked.exit_code == code, checked.output
    last = Registry(registry).history()["prod"][-1]
    assert last.action == action and Registry(registry).stage("prod") == "v1"
    if then == "rollback":
        assert "decision after 2s: rollback" in checked.output
        assert last.note.startswith("rolled back: no decision within 2s: canary ")
        assert last.details["timed_out"] == "2s"
        assert [(v.name, v.stage) for v in load_config(serve).variants] == [
            ("control", "prod")]
    else:
        assert Registry(registry).canary("prod") is not None


@pytest.mark.parametrize(("args", "said"), [
    (("--window", "30x"), "--window: '30x' is not a span such as 45s, 30m, 2h or 1d"),
    (("--window", "0m"), "--window: '0m' is not a span"),
    (("--events", "nowhere"), "--events nowhere: not found"),
    (("--every", "soon"), "--every: 'soon' is not a span"),
    (("--on-timeout", "promote"), "--on-timeout: 'promote' is not rollback or wait"),
])
def test_bad_input_is_exit_2_on_one_line(registry: Path, tmp_path: Path,
                                         args: tuple[str, ...], said: str) -> None:
    given = dict(zip(args[::2], args[1::2], strict=True))
    events = given.get("--events", str(_traffic(tmp_path, 0.05, 10)))
    window = given.get("--window", "1h")
    others = [arg for pair in given.items() if pair[0] not in ("--events", "--window")
              for arg in pair]
    checked = run("check", "--registry", str(registry), "--events", events,
                  "--window", window, *others)
    assert checked.exit_code == 2, checked.output
    assert checked.stderr.startswith(f"error: {said}") and checked.stderr.count("\n") == 1


def test_a_canary_is_refused_off_the_stage_order_or_without_a_control(
        registry: Path, tmp_path: Path) -> None:
    serve = tmp_path / "serve.yaml"
    skipped = run("canary", "v3", "--registry", str(registry), "--serve-config", str(serve))
    assert skipped.exit_code == 1 and "v3 has never been in staging" in skipped.stderr
    current = run("canary", "v1", "--registry", str(registry), "--serve-config", str(serve))
    assert current.exit_code == 1 and "v1 is prod's current version already" in current.stderr
    empty = run("canary", "v2", "--registry", str(tmp_path / "other"),
                "--serve-config", str(serve))
    assert empty.exit_code == 1 and "no version" in empty.stderr
    Registry(tmp_path / "bare").publish(_manifest("v1", 0), registry / "versions" / "v1")
    no_control = run("canary", "v1", "--registry", str(tmp_path / "bare"),
                     "--serve-config", str(serve))
    assert no_control.exit_code == 1 and "prod has no version yet" in no_control.stderr
    assert not serve.exists()  # nothing written by a refusal
    assert Registry(registry).canary("prod") is None


@pytest.mark.parametrize("unit", ["ns", "ms"])
@pytest.mark.parametrize("tz", ["UTC", None])
def test_events_in_any_time_unit_are_read_from_a_start(tmp_path: Path, unit: str,
                                                       tz: str | None) -> None:
    """A parquet file another tool wrote (pandas' nanoseconds, no zone) is read too."""
    events = simulate_traffic(Traffic(), requests=20, seed=1)
    table = pa.Table.from_pandas(events, preserve_index=False)
    times = table["timestamp"].cast(pa.timestamp(unit, tz=tz), safe=False)  # ms: truncated
    path = tmp_path / "events.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("timestamp"), "timestamp",
                                    times), path)
    since = events["timestamp"].iloc[100] + pd.Timedelta(microseconds=1, nanoseconds=7)
    written = pd.to_datetime(pd.Series(times.to_pandas()), utc=True)  # no zone: UTC
    assert len(read_events(path, since)) == (written >= since.floor("us")).sum() > 0


@pytest.fixture()
def helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `helm` on PATH that logs its arguments (HELM_EXIT: its exit code)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "helm.log"
    bin_dir.mkdir()
    script = bin_dir / "helm"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit ${{HELM_EXIT:-0}}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_on_kubernetes_the_chart_canary_is_set_and_rolled_back(
        registry: Path, tmp_path: Path, helm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = run("canary", "v2", "--registry", str(registry), "--percent", "20",
                  "--kubernetes", "--release", "rs", "--namespace", "recstack", "--apply")
    assert started.exit_code == 0, started.output
    wanted = ("upgrade rs charts/recstack --reuse-values --namespace recstack --set "
              "inferenceService.version=v1,inferenceService.canary.enabled=true,"
              "inferenceService.canary.version=v2,inferenceService.canary.name=v2,"
              "inferenceService.canary.trafficPercent=20")
    assert f"running: helm {wanted}" in started.output
    assert helm.read_text().splitlines() == [wanted]
    opened = Registry(registry).canary("prod")
    assert opened is not None and opened.details["arms_by"] == "model_version"
    # Both predictors run the same serve.yaml: the arms differ by model version only.
    data = _traffic(tmp_path, canary_ctr=0.02, canary_impressions=3000,
                    control="default", canary="default")
    monkeypatch.setenv("HELM_EXIT", "1")
    failed = run("check", "--registry", str(registry), "--events", str(data), "--apply")
    assert failed.exit_code == 1 and "the canary still takes its share" in failed.stderr
    assert Registry(registry).canary("prod") is not None  # not recorded as stopped
    monkeypatch.setenv("HELM_EXIT", "0")
    checked = run("check", "--registry", str(registry), "--events", str(data), "--apply")
    assert checked.exit_code == 3, checked.output
    assert "v2" in checked.output and "v1" in checked.output  # the arms, by version
    assert helm.read_text().splitlines()[-1] == (
        "upgrade rs charts/recstack --reuse-values --namespace recstack --set "
        "inferenceService.canary.enabled=false,inferenceService.canary.trafficPercent=0")
    assert Registry(registry).canary("prod") is None


@pytest.mark.parametrize(("canary_ctr", "code", "values"), [
    (0.09, 0, "inferenceService.version=v2,inferenceService.canary.enabled=false"),
    (0.02, 3, "inferenceService.canary.enabled=false,inferenceService.canary.trafficPercent=0"),
])
def test_finish_applies_a_check_decided_elsewhere(registry: Path, tmp_path: Path,
                                                  helm: Path, canary_ctr: float, code: int,
                                                  values: str) -> None:
    """deploy.yml's split: the check runs beside the events (no helm there) and only
    records; `finish` in the runner then moves the traffic as the history says."""
    started = run("canary", "v2", "--registry", str(registry), "--kubernetes",
                  "--release", "rs", "--namespace", "recstack", "--apply")
    assert started.exit_code == 0, started.output
    refused = run("finish", "--registry", str(registry), "--apply")
    assert refused.exit_code == 1 and "is still open" in refused.stderr
    data = _traffic(tmp_path, canary_ctr=canary_ctr, canary_impressions=3000,
                    control="default", canary="default")
    checked = run("check", "--registry", str(registry), "--events", str(data))
    assert checked.exit_code == code, checked.output
    assert len(helm.read_text().splitlines()) == 1  # the check ran no helm
    done = run("finish", "--registry", str(registry), "--apply")
    assert done.exit_code == 0, done.output
    assert helm.read_text().splitlines()[-1] == (
        f"upgrade rs charts/recstack --reuse-values --namespace recstack --set {values}")
    assert ("was promoted" if code == 0 else "was rolled back") in done.output


def test_a_failed_helm_run_leaves_no_canary_open(registry: Path, helm: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELM_EXIT", "1")
    started = run("canary", "v2", "--registry", str(registry), "--kubernetes",
                  "--release", "rs", "--apply")
    assert started.exit_code == 1 and "helm upgrade failed" in started.stderr
    reg = Registry(registry)
    assert reg.canary("prod") is None
    assert [e.action for e in reg.history()["prod"]][-2:] == ["canary_start", "canary_stop"]
    printed = run("canary", "v2", "--registry", str(registry), "--kubernetes",
                  "--release", "rs")  # printed, not run
    assert printed.exit_code == 0 and "run: helm upgrade rs" in printed.output
    assert len(helm.read_text().splitlines()) == 1


def test_help_names_the_exit_codes() -> None:
    shown = runner.invoke(app, ["check", "--help"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0
    assert "3 rolled back" in " ".join(shown.output.split())
