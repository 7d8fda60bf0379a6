"""charts/recstack: renders the whole platform as we expect, hardened, and refuses values
it does not know. (Lint, API and CRD schemas, checkov: test_validate.py.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CHART, ENVIRONMENTS, VALUE_SETS, refused, render, run

Obj = dict[str, Any]


def values_of(values: tuple[Path, ...]) -> Obj:
    """The chart defaults with each values file merged over them, as helm does."""
    def merge(base: Obj, over: Obj) -> Obj:
        merged = dict(base)
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merged[key] = merge(base[key], value)
            else:
                merged[key] = value
        return merged

    merged: Obj = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in values:
        merged = merge(merged, yaml.safe_load(path.read_text()) or {})
    return merged


def only(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got " + str(
        [o["metadata"]["name"] for o in objects if o["kind"] == kind])
    return found[0]


def rayjob_template(objects: list[Obj]) -> Obj:
    template: Obj = yaml.safe_load(only(objects, "ConfigMap", "rel-recstack-rayjob")["data"][
        "rayjob.yaml"])
    return template


def rayjob_pods(rayjob: Obj, where: str) -> Iterator[tuple[str, Obj]]:
    spec = rayjob["spec"]
    yield f"{where} head", spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    for group in spec["rayClusterSpec"]["workerGroupSpecs"]:
        yield f"{where} {group['groupName']}", group["template"]["spec"]
    yield f"{where} submitter", spec["submitterPodTemplate"]["spec"]


def pod_specs(objects: list[Obj]) -> Iterator[tuple[str, Obj]]:
    """(where, pod spec) of every pod the release runs, directly or through an operator."""
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        kind, spec = obj["kind"], obj.get("spec", {})
        if kind in ("Deployment", "Job"):
            yield where, spec["template"]["spec"]
        elif kind == "CronJob":
            yield where, spec["jobTemplate"]["spec"]["template"]["spec"]
        elif kind == "Pod":
            yield where, spec
        elif kind == "InferenceService":
            yield f"{where} predictor", spec["predictor"]
            for canary in spec.get("canary", []):
                yield f"{where} canary", canary["predictor"]
        elif kind == "RayJob":
            yield from rayjob_pods(obj, where)
        elif kind == "ConfigMap" and "rayjob.yaml" in obj["data"]:
            yield from rayjob_pods(yaml.safe_load(obj["data"]["rayjob.yaml"]), where)


def container(spec: Obj, name: str | None = None) -> Obj:
    found = [c for c in spec["containers"] if name is None or c["name"] == name]
    assert len(found) == 1, spec["containers"]
    result: Obj = found[0]
    return result


def env_of(c: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in c.get("env", [])}


def test_environments_exist() -> None:
    assert [p.parent.name for p in ENVIRONMENTS] == ["dev", "prod", "staging"]


def test_the_release_recstack_gets_the_names_other_tools_rely_on(helm: Path) -> None:
    result = run(helm, "template", "recstack", CHART, "--namespace", "recstack", "-f",
                 CHART.parents[1] / "k8s" / "environments" / "dev" / "values.yaml",
                 "--set", "training.createAtInstall=true")
    assert result.returncode == 0, result.stderr
    names = {(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(result.stdout) if o}
    assert {("InferenceService", "recstack"), ("Deployment", "recstack-collector"),
            ("Service", "recstack-collector"), ("Deployment", "recstack-consumer"),
            ("Deployment", "recstack-redis"), ("Service", "recstack-redis"),
            ("Job", "recstack-first-run"), ("ConfigMap", "recstack-rayjob"),
            ("CronJob", "recstack-retrain"), ("CronJob", "recstack-materialize"),
            ("PersistentVolumeClaim", "recstack-data"), ("RayJob", "recstack-train")} <= names


@pytest.mark.parametrize("values", VALUE_SETS)
def test_objects_are_labelled_and_namespace_free(helm: Path, values: tuple[Path, ...]) -> None:
    objects = render(helm, values)
    kinds = {o["kind"] for o in objects}
    assert {"InferenceService", "Deployment", "Service", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "CronJob", "ConfigMap", "PersistentVolumeClaim",
            "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy", "Pod"} <= kinds
    for obj in objects:
        meta = obj["metadata"]
        where = f"{obj['kind']}/{meta['name']}"
        assert meta["labels"]["app.kubernetes.io/name"] == "recstack", where
        assert meta["labels"]["app.kubernetes.io/instance"] == "rel", where
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", where
        assert "namespace" not in meta, f"{where} hard-codes a namespace"


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_pod_is_hardened_and_bounded(helm: Path, values: tuple[Path, ...]) -> None:
    specs = list(pod_specs(render(helm, values, "training.createAtInstall=true")))
    assert len(specs) >= 12
    for where, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        if "retrain" not in where:
            assert spec["automountServiceAccountToken"] is False, where
        writable = {v["name"] for v in spec.get("volumes", [])
                    if "emptyDir" in v or "persistentVolumeClaim" in v}
        for c in spec["containers"]:
            security = c["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["runAsUser"] >= 10000, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security.get("privileged", False) is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
            for part in ("limits", "requests"):
                assert {"cpu", "memory"} <= c["resources"][part].keys(), (where, part)
            # A read-only root needs somewhere to write: /tmp (HOME) is an emptyDir in
            # every RecStack container; Redis writes to /data only.
            where_to_write = "/data" if c["name"] == "redis" else "/tmp"
            mounted = [m for m in c.get("volumeMounts", []) if m["mountPath"] == where_to_write]
            assert mounted and mounted[0]["name"] in writable, where
            # The image's entrypoint (tini) stays PID 1: it reaps Ray's children and
            # passes SIGTERM on. KubeRay sets its own command on the Ray nodes.
            if c["name"] != "redis" and not c["name"].startswith("ray-"):
                assert "command" not in c, where


@pytest.mark.parametrize("values", VALUE_SETS)
def test_only_the_retrain_pod_mounts_an_api_token(helm: Path, values: tuple[Path, ...]) -> None:
    objects = render(helm, values)
    mounting = [where for where, spec in pod_specs(objects)
                if spec.get("automountServiceAccountToken") is not False]
    assert mounting == ["CronJob/rel-recstack-retrain"]
    retrain = only(objects, "CronJob", "rel-recstack-retrain")
    spec = retrain["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "rel-recstack-retrain"
    for account in (o for o in objects if o["kind"] == "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False
    role = only(objects, "Role")
    assert role["rules"] == [{"apiGroups": ["ray.io"], "resources": ["rayjobs"],
                              "verbs": ["create", "get", "list"]}]
    binding = only(objects, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-recstack-retrain"}]
    c = container(spec)
    assert c["args"] == ["recstack", "retrain", "--rayjob-template",
                                        "/etc/recstack/rayjob.yaml"]
    volume = next(v for v in spec["volumes"] if v["name"] == "rayjob")
    assert volume["configMap"]["name"] == "rel-recstack-rayjob"


# --- the predictor ---------------------------------------------------------------------


def predictor(objects: list[Obj]) -> Obj:
    spec: Obj = only(objects, "InferenceService")["spec"]["predictor"]
    return spec


def test_the_predictor_follows_a_stage_when_no_version_is_given(helm: Path) -> None:
    objects = render(helm)
    isvc = only(objects, "InferenceService")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["name"] == "rel-recstack"
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Standard",
                                               "serving.kserve.io/autoscalerClass": "hpa"}
    c = container(predictor(objects), "kserve-container")
    assert c["args"] == [
        "recstack", "serve", "--registry", "/data/registry", "--stage", "dev", "--host",
        "0.0.0.0", "--port", "8080", "--config", "/etc/recstack/serve.yaml"]
    assert "STORAGE_URI" not in env_of(c)
    assert {m["mountPath"] for m in c["volumeMounts"]} == {
        "/etc/recstack", "/tmp", "/dev/shm", "/data"}


def test_a_stage_in_a_bucket_needs_no_data_volume(helm: Path) -> None:
    spec = predictor(render(helm, (), "registry.uri=s3://models/registry"))
    assert container(spec)["args"][2:4] == ["--registry", "s3://models/registry"]
    assert "data" not in {v["name"] for v in spec["volumes"]}


def test_a_version_is_served_from_its_storage_uri(helm: Path) -> None:
    objects = render(helm, (), "inferenceService.version=v20261207-010203")
    spec = predictor(objects)
    c = container(spec, "kserve-container")
    assert c["args"][:4] == ["recstack", "serve", "--model-dir", "/mnt/models"]
    env = env_of(c)
    assert env["STORAGE_URI"]["value"] == "pvc://rel-recstack-data/registry/versions/v20261207-010203"
    assert env["PROTOCOL"]["value"] == "v2"
    # KServe mounts the version itself; the data volume is not needed.
    assert "/data" not in {m["mountPath"] for m in c["volumeMounts"]}
    assert {"ConfigMap"} <= {o["kind"] for o in objects}
    serve_yaml = only(objects, "ConfigMap", "rel-recstack-serve")["data"]["serve.yaml"]
    assert yaml.safe_load(serve_yaml) == values_of(())["inferenceService"]["serveConfig"]
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"]


def test_probes_use_kserve_health_routes_and_wait_for_the_start(helm: Path) -> None:
    c = container(predictor(render(helm)), "kserve-container")
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8080}
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # ~40 s on 2 cores


def test_a_whole_storage_uri_wins_over_the_version(helm: Path) -> None:
    objects = render(helm, (), "inferenceService.version=v1",
                     "inferenceService.storageUri=gs://bucket/registry/versions/v9")
    env = env_of(container(predictor(objects), "kserve-container"))
    assert env["STORAGE_URI"]["value"] == "gs://bucket/registry/versions/v9"


def test_an_s3_registry_gives_credentials_to_kserve_and_the_pods(helm: Path) -> None:
    objects = render(helm, (), "registry.uri=s3://models/registry",
                     "registry.s3.existingSecret=s3-creds",
                     "registry.s3.endpointUrl=http://minio.minio:9000",
                     "inferenceService.version=v7", "training.createAtInstall=true")
    spec = predictor(objects)
    assert env_of(container(spec))["STORAGE_URI"]["value"] == "s3://models/registry/versions/v7"
    account = only(objects, "ServiceAccount", "rel-recstack-storage")
    assert spec["serviceAccountName"] == "rel-recstack-storage"
    assert account["secrets"] == [{"name": "s3-creds"}]
    assert account["metadata"]["annotations"] == {
        "serving.kserve.io/s3-endpoint": "minio.minio:9000",
        "serving.kserve.io/s3-usehttps": "0", "serving.kserve.io/s3-region": "us-east-1",
        "serving.kserve.io/s3-verifyssl": "1"}
    settings = only(objects, "ConfigMap", "rel-recstack")["data"]
    assert settings["AWS_ENDPOINT_URL"] == "http://minio.minio:9000"
    for where, pod in pod_specs(objects):
        if "Pod/" in where or "retrain" in where or "submitter" in where:
            continue
        env = env_of(pod["containers"][0])
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
            "name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}, where
    policy = only(objects, "NetworkPolicy", "rel-recstack-object-store")
    assert [p["port"] for p in policy["spec"]["egress"][0]["ports"]] == [443, 9000]
    train = only(objects, "RayJob")
    assert "--registry s3://models/registry" in train["spec"]["entrypoint"]


def test_standard_mode_canary_is_a_named_predictor(helm: Path) -> None:
    objects = render(helm, (), "inferenceService.version=v20261201-000000",
                     "inferenceService.canary.enabled=true",
                     "inferenceService.canary.version=v20261207-010203",
                     "inferenceService.canary.trafficPercent=20")
    spec = only(objects, "InferenceService")["spec"]
    assert "canaryTrafficPercent" not in spec["predictor"]
    (canary,) = spec["canary"]
    assert canary["trafficPercent"] == 20
    assert canary["predictor"]["name"] == "v20261207-010203"
    assert env_of(container(canary["predictor"]))["STORAGE_URI"]["value"].endswith(
        "/versions/v20261207-010203")
    assert env_of(container(spec["predictor"]))["STORAGE_URI"]["value"].endswith(
        "/versions/v20261201-000000")


def test_promoting_the_standard_canary_names_the_stable_predictor(helm: Path) -> None:
    objects = render(helm, (), "inferenceService.version=v20261207-010203",
                     "inferenceService.predictorName=v20261207-010203")
    spec = only(objects, "InferenceService")["spec"]
    assert spec["predictor"]["name"] == "v20261207-010203"
    assert "canary" not in spec


def test_knative_mode_canary_is_a_traffic_percent(helm: Path) -> None:
    objects = render(helm, (), "inferenceService.deploymentMode=Knative",
                     "inferenceService.scaleMetric=concurrency",
                     "inferenceService.version=v1", "inferenceService.canary.enabled=true",
                     "inferenceService.canary.version=v2")
    isvc = only(objects, "InferenceService")
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Knative"}
    spec = isvc["spec"]
    assert "canary" not in spec
    assert spec["predictor"]["canaryTrafficPercent"] == 10
    c = container(spec["predictor"])
    assert env_of(c)["STORAGE_URI"]["value"].endswith("/versions/v2")
    assert "startupProbe" not in c and c["livenessProbe"]["initialDelaySeconds"] >= 60


@pytest.mark.parametrize("sets", [
    ("inferenceService.canary.enabled=true",),
    ("inferenceService.canary.enabled=true", "inferenceService.canary.version=v2"),
], ids=["no-canary-version", "no-stable-version"])
def test_a_canary_without_two_versions_is_refused(helm: Path, sets: tuple[str, ...]) -> None:
    args = [a for s in sets for a in ("--set", s)]
    assert "inferenceService.canary" in refused(helm, *args)


@pytest.mark.parametrize("metric", ["concurrency", "rps"])
def test_standard_mode_with_hpa_scales_on_cpu_or_memory_only(helm: Path, metric: str) -> None:
    assert "scaleMetric" in refused(helm, "--set", f"inferenceService.scaleMetric={metric}")
    objects = render(helm, (), f"inferenceService.scaleMetric={metric}",
                     "inferenceService.autoscalerClass=keda")
    assert predictor(objects)["scaleMetric"] == metric


def test_serve_api_keys_are_a_mounted_file(helm: Path) -> None:
    spec = predictor(render(helm, (), "inferenceService.apiKeys.existingSecret=serve-keys"))
    c = container(spec)
    assert env_of(c)["RECSTACK_SERVE_API_KEYS_FILE"]["value"] == "/etc/recstack-keys/api-keys"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "api-keys")
    assert mount == {"name": "api-keys", "mountPath": "/etc/recstack-keys", "readOnly": True}
    volume = next(v for v in spec["volumes"] if v["name"] == "api-keys")
    assert volume["secret"]["secretName"] == "serve-keys"


# --- the event path ----------------------------------------------------------------------


def test_the_collector_listens_on_all_interfaces_behind_its_service(helm: Path) -> None:
    objects = render(helm, (), "collector.apiKeys.existingSecret=collector-keys")
    deployment = only(objects, "Deployment", "rel-recstack-collector")
    spec = deployment["spec"]["template"]["spec"]
    c = container(spec)
    assert c["args"] == ["recstack", "collect", "--host", "0.0.0.0", "--port",
                                        "8090"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert env_of(c)["RECSTACK_API_KEYS_FILE"]["value"] == "/etc/recstack-keys/api-keys"
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    service = only(objects, "Service", "rel-recstack-collector")
    assert service["spec"]["ports"] == [{"name": "http", "port": 8090, "targetPort": "http",
                                         "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    hpa = only(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rel-recstack-collector"
    pdb = only(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_a_collector_without_keys_says_so(helm: Path) -> None:
    c = container(only(render(helm), "Deployment", "rel-recstack-collector")["spec"]["template"][
        "spec"])
    assert c["args"][-1] == "--insecure-no-auth"


def test_one_consumer_at_a_time(helm: Path) -> None:
    consumer = only(render(helm), "Deployment", "rel-recstack-consumer")
    assert consumer["spec"]["replicas"] == 1
    assert consumer["spec"]["strategy"] == {"type": "Recreate"}  # never two during a rollout
    c = container(consumer["spec"]["template"]["spec"])
    # --wait: on a fresh install it waits for the first-run Job instead of crash-looping.
    assert c["args"] == ["recstack", "consume", "--data", "/data", "--group",
                         "recstack-consumers", "--compact-every", "10", "--wait", "3600"]
    assert "consumer" in refused(helm, "--set", "consumer.replicas=2")


@pytest.mark.parametrize("values", VALUE_SETS)
def test_redis_is_the_charts_own_in_dev_and_external_elsewhere(
        helm: Path, values: tuple[Path, ...]) -> None:
    expected = values_of(values)
    objects = render(helm, values)
    address = only(objects, "ConfigMap", "rel-recstack")["data"]["RECSTACK_REDIS"]
    deployed = [o for o in objects if o["metadata"]["name"] == "rel-recstack-redis"]
    if expected["redis"]["deploy"]:
        assert address == "rel-recstack-redis:6379,db=0"
        assert {o["kind"] for o in deployed} == {"Deployment", "Service"}
        c = container(only(deployed, "Deployment")["spec"]["template"]["spec"])
        assert re.fullmatch(r"docker\.io/library/redis:7\.4-alpine@sha256:[0-9a-f]{64}",
                            c["image"])
        assert c["readinessProbe"]["tcpSocket"]["port"] == "redis"
    else:
        assert deployed == []
        assert address.startswith(f"{expected['redis']['host']}:6379")


def test_a_deployed_redis_takes_the_password_secret(helm: Path) -> None:
    objects = render(helm, (), "redis.deploy=true", "redis.auth.existingSecret=redis-auth")
    c = container(only(objects, "Deployment", "rel-recstack-redis")["spec"]["template"]["spec"])
    assert c["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    assert "TLS" in refused(helm, "--set", "redis.deploy=true", "--set", "redis.ssl=true")


# --- the data volume and the jobs ------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
def test_the_data_claim_is_read_write_many(helm: Path, values: tuple[Path, ...]) -> None:
    claim = only(render(helm, values), "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "rel-recstack-data"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    storage_class = values_of(values)["persistence"]["storageClass"]
    assert claim["spec"].get("storageClassName", "") == storage_class


def test_a_read_write_once_claim_is_refused(helm: Path) -> None:
    stderr = refused(helm, "--set", "persistence.accessModes={ReadWriteOnce}")
    assert "accessModes" in stderr


def test_the_first_run_generates_only_when_there_is_no_data(helm: Path) -> None:
    objects = render(helm, (), "firstRun.enabled=true")
    job = only(objects, "Job", "rel-recstack-first-run")
    c = container(job["spec"]["template"]["spec"])
    assert c["args"][:2] == ["sh", "-c"]
    script = c["args"][2]
    assert 'if [ ! -f "$DATA/events.parquet" ]' in script
    assert ('recstack data generate --out "$DATA" --users "$USERS" --items "$ITEMS" '
            '--days "$DAYS" --seed "$SEED"') in script
    assert script.rstrip().endswith('recstack features apply --data "$DATA"')
    env = {k: v["value"] for k, v in env_of(c).items() if "value" in v}
    assert (env["DATA"], env["USERS"], env["ITEMS"], env["DAYS"]) == ("/data", "500", "300", "30")
    assert not [o for o in render(helm) if o["kind"] == "Job"]  # off by default


@pytest.mark.parametrize("values", VALUE_SETS)
def test_the_rayjob_template_trains_on_kuberay(helm: Path, values: tuple[Path, ...]) -> None:
    expected = values_of(values)
    template = rayjob_template(render(helm, values))
    assert template["apiVersion"] == "ray.io/v1" and template["kind"] == "RayJob"
    assert template["metadata"]["generateName"] == "rel-recstack-train-"
    assert "name" not in template["metadata"]
    spec = template["spec"]
    training = expected["training"]
    assert spec["entrypoint"] == (
        f"recstack train --data /data --registry {expected['registry']['uri']} "
        f"--workers {training['workers']} --shards {training['shards']} "
        f"--promote {training['promote']}")
    assert spec["shutdownAfterJobFinishes"] is True
    for key in ("ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit"):
        assert spec[key] == training[key]
    cluster = spec["rayClusterSpec"]
    (group,) = cluster["workerGroupSpecs"]
    assert group["replicas"] == training["worker"]["replicas"]
    assert group["rayStartParams"] == {"num-cpus": training["worker"]["numCpus"]}
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == training["head"]["numCpus"]
    # Ray 2.60's `ray start` asks for a token: KubeRay makes one and hands it to every pod.
    assert cluster["authOptions"] == {"mode": "token"}
    images = set()
    for where, pod in rayjob_pods(template, "rayjob"):
        c = container(pod)
        images.add(c["image"])
        if "submitter" not in where:
            assert {m["mountPath"] for m in c["volumeMounts"]} == {"/data", "/tmp", "/dev/shm"}
    assert len(images) == 1  # one image: the same Ray and Python on every node


def test_the_rayjob_is_created_at_install_only_when_asked(helm: Path) -> None:
    assert not [o for o in render(helm) if o["kind"] == "RayJob"]
    objects = render(helm, (), "training.createAtInstall=true")
    live = only(objects, "RayJob")
    assert live["metadata"]["name"] == "rel-recstack-train"
    assert live["spec"] == rayjob_template(objects)["spec"]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_materialize_runs_features_apply_on_the_data_path(
        helm: Path, values: tuple[Path, ...]) -> None:
    expected = values_of(values)
    cronjob = only(render(helm, values), "CronJob", "rel-recstack-materialize")
    assert cronjob["spec"]["schedule"] == expected["materialize"]["schedule"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    c = container(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    assert (c["args"])[:5] == ["recstack", "features", "apply", "--data",
                                              expected["materialize"]["dataPath"]]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"data": expected["persistence"]["mountPath"], "tmp": "/tmp"}


def test_data_path_and_extra_args_are_passed(helm: Path) -> None:
    objects = render(helm, (), "materialize.dataPath=/data/shop",
                     "materialize.extraArgs={--engine,feast}")
    cronjob = only(objects, "CronJob", "rel-recstack-materialize")
    c = container(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    assert c["args"] == ["recstack", "features", "apply", "--data", "/data/shop", "--engine",
                         "feast"]


def test_data_path_outside_the_volume_is_refused(helm: Path) -> None:
    assert "must lie under persistence.mountPath" in refused(
        helm, "--set", "materialize.dataPath=/srv/shop")


def test_configmap_holds_the_settings_without_secrets(helm: Path) -> None:
    data = only(render(helm), "ConfigMap", "rel-recstack")["data"]
    assert data == {"RECSTACK_ONLINE_STORE": "redis", "RECSTACK_FEAST_PROJECT": "recstack",
                    "RECSTACK_REDIS": "redis-master:6379,db=0"}


def test_redis_password_comes_from_the_secret(helm: Path) -> None:
    objects = render(helm, (), "redis.auth.existingSecret=redis-auth", "redis.ssl=true")
    assert "password" not in only(objects, "ConfigMap", "rel-recstack")["data"]["RECSTACK_REDIS"]
    for where, spec in pod_specs(objects):
        if where.startswith(("Pod/", "CronJob/rel-recstack-retrain")) or "submitter" in where:
            continue
        env = spec["containers"][0]["env"]
        names = [e["name"] for e in env]
        # Kubernetes expands $(REDIS_PASSWORD) only from entries listed before it.
        assert names.index("REDIS_PASSWORD") < names.index("RECSTACK_REDIS"), where
        assert env[names.index("REDIS_PASSWORD")]["valueFrom"]["secretKeyRef"] == {
            "name": "redis-auth", "key": "redis-password"}
        assert env[names.index("RECSTACK_REDIS")]["value"] == (
            "redis-master:6379,db=0,ssl=true,password=$(REDIS_PASSWORD)")


def test_registry_url_from_a_secret_wins(helm: Path) -> None:
    objects = render(helm, (), "feast.registry.url=/data/registry.db",
                     "feast.registry.existingSecret=feast-registry")
    assert "RECSTACK_FEAST_REGISTRY" not in only(objects, "ConfigMap", "rel-recstack")["data"]
    cronjob = only(objects, "CronJob", "rel-recstack-materialize")
    env = env_of(container(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    assert env["RECSTACK_FEAST_REGISTRY"]["valueFrom"]["secretKeyRef"] == {
        "name": "feast-registry", "key": "registry-url"}


def test_existing_claim_replaces_the_new_one(helm: Path) -> None:
    objects = render(helm, (), "persistence.existingClaim=shop-data")
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    for where, spec in pod_specs(objects):
        for volume in spec.get("volumes", []):
            if volume["name"] == "data":
                assert volume["persistentVolumeClaim"]["claimName"] == "shop-data", where


# --- policies, tests, images -----------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
def test_network_policies_deny_by_default_and_open_the_data_paths(
        helm: Path, values: tuple[Path, ...]) -> None:
    policies = {o["metadata"]["name"].removeprefix("rel-recstack-"): o["spec"]
                for o in render(helm, values) if o["kind"] == "NetworkPolicy"}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    (dns,) = policies["dns"]["egress"]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert [r["ports"] for r in policies["predictor"]["ingress"]] == [
        [{"protocol": "TCP", "port": 8080}]]
    assert [r["ports"] for r in policies["collector"]["ingress"]] == [
        [{"protocol": "TCP", "port": 8090}]]
    ray = policies["ray"]
    peer = [{"podSelector": ray["podSelector"]}]
    assert ray["ingress"] == [{"from": peer}] and ray["egress"] == [{"to": peer}]
    assert {p["port"] for p in policies["retrain"]["egress"][0]["ports"]} == {443, 6443}
    assert {p["port"] for r in policies["tests"]["egress"] for p in r["ports"]} == {8080, 8090}
    redis_ports = {p["port"] for r in policies["redis-egress"]["egress"] for p in r["ports"]}
    assert redis_ports == {6379}


def test_ingress_can_be_limited_to_given_peers(helm: Path) -> None:
    objects = render(helm, (), "networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.gw=yes")
    collector = only(objects, "NetworkPolicy", "rel-recstack-collector")
    peers = collector["spec"]["ingress"][0]["from"]
    assert peers[0] == {"namespaceSelector": {"matchLabels": {"gw": "yes"}}}
    assert peers[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "test"


def test_the_helm_test_pod_checks_both_endpoints(helm: Path) -> None:
    pod = only(render(helm), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = container(pod["spec"])
    assert c["args"][0] == "python" and c["image"].startswith("recstack:")
    assert c["args"][3:] == ["http://rel-recstack-collector:8090/readyz",
                             "http://rel-recstack-predictor/v2/health/ready"]


def test_prod_pins_every_image_by_digest(helm: Path) -> None:
    (prod,) = [p for p in ENVIRONMENTS if p.parent.name == "prod"]
    objects = render(helm, (prod,), "training.createAtInstall=true")
    for where, spec in pod_specs(objects):
        for c in spec["containers"]:
            assert re.search(r"@sha256:[0-9a-f]{64}$", c["image"]), where


# --- values ----------------------------------------------------------------------------


@pytest.mark.parametrize(("values_text", "bad_key"), [
    ("replicaCont: 2\n", "replicaCont"),
    ("persistance:\n  size: 1Gi\n", "persistance"),
    ("persistence:\n  sise: 1Gi\n", "sise"),
    ("materialize:\n  shedule: '*/5 * * * *'\n", "shedule"),
    ("feast:\n  onlineStore: memcached\n", "onlineStore"),
    ("inferenceService:\n  canary:\n    traficPercent: 5\n", "traficPercent"),
    ("inferenceService:\n  scaleMetric: qps\n", "scaleMetric"),
    ("consumer:\n  replicas: 2\n", "replicas"),
    ("containerSecurityContext:\n  privileged: true\n", "privileged"),
    ("containerSecurityContext:\n  readOnlyRootFilesystem: false\n", "readOnlyRootFilesystem"),
    ("persistence:\n  accessModes: [ReadWriteOnce]\n", "accessModes"),
    ("inferenceService:\n  protocol: v3\n", "protocol"),
], ids=["top-level", "misspelt-section", "nested", "cronjob", "enum", "canary", "qps",
        "two-consumers", "privileged", "writable-root", "read-write-once", "protocol"])
def test_schema_rejects_unknown_or_invalid_values(
        helm: Path, tmp_path: Path, values_text: str, bad_key: str) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(values_text)
    assert bad_key in refused(helm, "-f", values)


def test_every_value_is_documented() -> None:
    """Helm's convention: a comment above each value that starts with the value's name.

    Keys inside Kubernetes objects or files passed through verbatim are exempt."""
    passthrough = {"resources", "seccompProfile", "capabilities", "serveConfig"}
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


def test_recstack_retrain_posts_the_charts_template(helm: Path, tmp_path: Path) -> None:
    """The ConfigMap's rayjob.yaml, as the retrain pod mounts it, is what `recstack
    retrain` accepts and posts (to a local stand-in for the API server)."""
    import threading
    from http.server import ThreadingHTTPServer

    from typer.testing import CliRunner

    from recstack.cli import app
    from tests.cli.test_retrain import FakeApiServer

    template = only(render(helm), "ConfigMap", "rel-recstack-rayjob")["data"]["rayjob.yaml"]
    (tmp_path / "rayjob.yaml").write_text(template)
    (tmp_path / "token").write_text("token")
    FakeApiServer.received, FakeApiServer.answer = [], (201, {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = CliRunner().invoke(app, [
            "retrain", "--rayjob-template", str(tmp_path / "rayjob.yaml"), "--api-server",
            f"http://127.0.0.1:{server.server_address[1]}", "--token-file",
            str(tmp_path / "token"), "--namespace", "recstack"])
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    (request,) = FakeApiServer.received
    assert request["path"] == "/apis/ray.io/v1/namespaces/recstack/rayjobs"
    assert request["body"] == yaml.safe_load(template)
