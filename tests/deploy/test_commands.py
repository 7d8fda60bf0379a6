"""Every `recstack` command line the chart makes a pod run, taken from the rendered
manifests: each parses as the CLI does (default run), and the training path runs
here as it would on the cluster (slow): the first-run Job's script, then the RayJob's
entrypoint submitted to a Ray head, then the predictor's command on the version
it registered, answering a V1 request."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
import yaml

from recstack.cli import app
from recstack.processes import Service, free_port
from stores.registry import Registry
from tests.deploy.conftest import ENVIRONMENTS, VALUE_SETS, render
from tests.http_checks import wait_ok

Obj = dict[str, Any]
DEV = next(path for path in ENVIRONMENTS if path.parent.name == "dev")
RAY = str(Path(sys.executable).parent / "ray")
RECSTACK = str(Path(sys.executable).parent / "recstack")


def expand(line: str, env: dict[str, str]) -> str:
    """`$VAR` and `${VAR}` replaced from the container's literal env, as sh would."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), line)


def command_lines(objects: list[Obj]) -> Iterator[tuple[str, list[str], dict[str, str]]]:
    """(where, argv, literal env) of every recstack command a pod of the release runs:
    containers, `sh -c` scripts (their `recstack ...` lines) and RayJob entrypoints."""
    def containers(where: str, spec: Obj) -> Iterator[tuple[str, list[str], dict[str, str]]]:
        for c in spec.get("containers", []):
            argv = [*c.get("command", []), *c.get("args", [])]
            env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
            if argv[:2] == ["sh", "-c"]:
                for line in argv[2].splitlines():
                    if line.strip().startswith("recstack "):
                        yield where, shlex.split(expand(line.strip(), env)), env
            elif argv and argv[0] == "recstack":
                yield where, argv, env

    for obj in objects:
        where, kind, spec = f"{obj['kind']}/{obj['metadata']['name']}", obj["kind"], obj.get(
            "spec", {})
        if kind in ("Deployment", "Job"):
            yield from containers(where, spec["template"]["spec"])
        elif kind == "CronJob":
            yield from containers(where, spec["jobTemplate"]["spec"]["template"]["spec"])
        elif kind == "InferenceService":
            yield from containers(where, spec["predictor"])
            for canary in spec.get("canary", []):
                yield from containers(where + " canary", canary["predictor"])
        elif kind == "RayJob" or (kind == "ConfigMap" and "rayjob.yaml" in obj["data"]):
            rayjob = obj if kind == "RayJob" else yaml.safe_load(obj["data"]["rayjob.yaml"])
            yield where + " entrypoint", shlex.split(rayjob["spec"]["entrypoint"]), {}


def parse(argv: list[str]) -> None:
    """Parse argv as `recstack` would, down to the subcommand's options and their
    types, without running it."""
    assert argv[0] == "recstack", argv
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("recstack", argv[1:])
    while hasattr(command, "resolve_command"):
        # typer's own copy of click keeps the subcommand's words in _protected_args.
        words = [*getattr(ctx, "protected_args", ctx._protected_args), *ctx.args]
        name, command, rest = command.resolve_command(ctx, words)
        ctx = command.make_context(name, rest, parent=ctx)


VARIANTS = [*VALUE_SETS,
            pytest.param((DEV,), id="dev-version", marks=()),
            pytest.param((DEV,), id="dev-canary")]
SETS = {"dev-version": ("inferenceService.version=v20260101-000000-abc123",),
        "dev-canary": ("inferenceService.version=v20260101-000000-abc123",
                       "inferenceService.canary.version=v20260102-000000-def456",
                       "inferenceService.canary.trafficPercent=10")}


@pytest.mark.parametrize("values", VARIANTS)
def test_every_command_a_pod_runs_parses(helm: Path, values: tuple[Path, ...],
                                         request: pytest.FixtureRequest) -> None:
    sets = SETS.get(request.node.callspec.id, ())
    lines = list(command_lines(render(helm, values, *sets)))
    assert {argv[1] for _, argv, _ in lines} == {
        "serve", "collect", "consume", "features", "train", "retrain"} | (
        {"data"} if any("first-run" in where for where, _, _ in lines) else set()), lines
    for where, argv, _ in lines:
        try:
            parse(argv)
        except Exception as exc:  # click's usage errors, with the command they came from
            pytest.fail(f"{where}: {shlex.join(argv)}: {exc}")


def test_a_typo_in_a_command_is_caught(helm: Path) -> None:
    with pytest.raises(Exception, match="--dta"):
        parse(["recstack", "consume", "--dta", "/data"])


# -- the training path, run here as on the cluster ------------------------------------

def _here(argv: list[str], data: Path) -> list[str]:
    """A pod's argv with its paths moved to this machine: /data -> `data`."""
    return [RECSTACK if a == "recstack" else re.sub(r"^/data(?=/|$)", str(data), a)
            for a in argv]


def _one(lines: list[tuple[str, list[str], dict[str, str]]], where: str
         ) -> list[tuple[list[str], dict[str, str]]]:
    found = [(argv, env) for w, argv, env in lines if where in w]
    assert found, f"no {where} in {[w for w, _, _ in lines]}"
    return found


@contextlib.contextmanager
def ray_head(log: Path, env: dict[str, str]) -> Iterator[str]:
    """A Ray head with a job server, in its own process group (stopping it must not
    `ray stop` every Ray on the machine); the job server's address."""
    port, dashboard = free_port(), free_port()
    short = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # socket paths are limited
    with log.open("wb") as out:
        head = subprocess.Popen(
            [RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
             "--include-dashboard=true", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={dashboard}", "--disable-usage-stats", f"--temp-dir={short}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        jobs = f"http://127.0.0.1:{dashboard}"
        try:
            deadline = time.monotonic() + 180
            while (listed := subprocess.run([RAY, "job", "list", f"--address={jobs}"],
                                            env=env, capture_output=True, text=True,
                                            check=False)).returncode != 0:
                assert head.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, f"no job server: {listed.stderr[-2000:]}"
                time.sleep(2)
            yield jobs
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGTERM)
            try:
                head.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
            shutil.rmtree(short, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_first_run_then_rayjob_then_predictor(helm: Path, tmp_path: Path) -> None:
    from tests.conftest import TEST_REDIS

    data = tmp_path / "data"
    version = "v20260101-000000-abc123"  # replaced by the trained one below
    objects = render(helm, (DEV,), "firstRun.users=300", "firstRun.items=200",
                     "firstRun.days=30", f"inferenceService.version={version}")
    lines = list(command_lines(objects))
    # Ray 2.60's `ray start` asks for a token; KubeRay's authOptions hand out one.
    env = {**os.environ, "RECSTACK_REDIS": TEST_REDIS, "RECSTACK_ONLINE_STORE": "redis",
           "RECSTACK_FEAST_PROJECT": "recstack_test_chart", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": os.urandom(16).hex(), "COLUMNS": "200"}
    env.pop("RAY_ADDRESS", None)
    env.pop("RECSTACK_FEAST_REGISTRY", None)

    for argv, _ in _one(lines, "-first-run"):  # the Job's script, line by line
        done = subprocess.run(_here(argv, data), env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stdout[-2000:]}{done.stderr}"
    assert (data / "events.parquet").exists()

    ((entrypoint, _),) = _one(lines, "-rayjob entrypoint")
    with ray_head(tmp_path / "ray-head.log", env) as jobs:
        started = time.monotonic()
        submitted = subprocess.run(
            [RAY, "job", "submit", f"--address={jobs}", "--submission-id", "train-1", "--",
             *_here(entrypoint, data)], env=env, capture_output=True, text=True,
            timeout=1200, check=False)
        print(f"RayJob entrypoint: {time.monotonic() - started:.0f} s on the local head")
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-2000:]
    assert "Job 'train-1' succeeded" in submitted.stdout
    registry = Registry(_here([entrypoint[entrypoint.index("--registry") + 1]], data)[0])
    trained = registry.resolve(stage="dev")

    ((serve_argv, _),) = _one(lines, "InferenceService/")
    assert serve_argv[1:4] == ["serve", "--model-dir", "/mnt/models"], serve_argv
    models = tmp_path / "mnt" / "models"  # what KServe's storage initializer leaves
    shutil.copytree(registry.fetch(trained.version), models)
    port = free_port()
    argv = [RECSTACK if a == "recstack" else a for a in serve_argv]
    argv = [str(models) if a == "/mnt/models" else a for a in argv]
    argv[argv.index("--port") + 1] = str(port)
    argv[argv.index("--host") + 1] = "127.0.0.1"
    config = tmp_path / "serve.yaml"
    config.write_text(only_config(objects))
    argv[argv.index("--config") + 1] = str(config)
    predictor = Service("predictor", argv, tmp_path / "predictor.log", env)
    try:
        wait_ok(predictor, f"http://127.0.0.1:{port}/v2/health/ready", 300, every=2)
        user = str(pd.read_parquet(data / "events.parquet")["user_id"]
                   .value_counts().index[0])
        body = json.dumps({"instances": [{"user_id": user, "k": 5}]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/recommender:predict", body,
            {"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            (prediction,) = json.loads(answer.read())["predictions"]
        assert len(prediction["items"]) == 5 and prediction["degraded"] is False
        assert prediction["model_version"] == trained.version
    finally:
        predictor.stop(60)


def only_config(objects: list[Obj]) -> str:
    """The serve.yaml the predictor mounts."""
    (text,) = [o["data"]["serve.yaml"] for o in objects
               if o["kind"] == "ConfigMap" and "serve.yaml" in o.get("data", {})]
    return str(text)
