"""The offline checks of every rendering: helm lint --strict with Helm 3 and Helm 4 (and
the same objects from both), core objects against the Kubernetes API schemas
(kubernetes-validate --strict), custom resources strictly against ../shared/crds, and
checkov with 0 failed checks (skips: k8s/checkov.yaml). Each check is shown to catch the
mistake it is there for."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy import crds
from tests.deploy.conftest import (
    CHART,
    ENVIRONMENTS,
    KUBE_VERSION,
    LOADER,
    ROOT,
    VALUE_SETS,
    output,
    render,
    render_text,
    run,
    template_args,
)

CHECKOV_CONFIG = ROOT / "k8s" / "checkov.yaml"
# Renderings beyond the value sets: the switches that add or change objects.
EVERYTHING_ON = ("training.createAtInstall=true", "firstRun.enabled=true", "redis.deploy=true",
                 "inferenceService.version=v20261201-000000",
                 "inferenceService.canary.enabled=true",
                 "inferenceService.canary.version=v20261207-010203",
                 "inferenceService.apiKeys.existingSecret=serve-keys",
                 "collector.apiKeys.existingSecret=collector-keys",
                 "networkPolicy.extraEgress[0].ports[0].port=5432")
CASES: list[tuple[str, tuple[Path, ...], tuple[str, ...]]] = [
    ("defaults", (), ()),
    *[(p.parent.name, (p,), ()) for p in ENVIRONMENTS],
    ("everything-on", (), EVERYTHING_ON),
    ("knative-canary", (), ("inferenceService.deploymentMode=Knative",
                            "inferenceService.version=v1", "inferenceService.canary.enabled=true",
                            "inferenceService.canary.version=v2",
                            "inferenceService.scaleMetric=rps")),
    ("s3", (), ("registry.uri=s3://models/registry", "registry.s3.existingSecret=s3",
                "registry.s3.endpointUrl=https://s3.example.com", "inferenceService.version=v1",
                "training.createAtInstall=true")),
]
VARIANTS = [pytest.param(values, sets, id=name) for name, values, sets in CASES]


@pytest.mark.parametrize("which", ["helm", "helm3"])
@pytest.mark.parametrize("values", VALUE_SETS)
def test_lint_strict(helm: Path, helm3: Path, which: str, values: tuple[Path, ...]) -> None:
    args: list[str | Path] = [helm if which == "helm" else helm3, "lint", "--strict", CHART]
    for path in values:
        args += ["-f", path]
    result = run(*args)
    assert result.returncode == 0, output(result)


@pytest.mark.parametrize(("values", "sets"), VARIANTS)
def test_helm3_renders_the_same_objects(helm: Path, helm3: Path, values: tuple[Path, ...],
                                        sets: tuple[str, ...]) -> None:
    result = run(*template_args(helm3, values, sets))
    assert result.returncode == 0, output(result)
    assert [d for d in yaml.load_all(result.stdout, Loader=LOADER) if d] == render(
        helm, values, *sets)


def test_each_template_renders_one_object(helm: Path) -> None:
    sources = re.findall(r"^# Source: recstack/templates/(\S+)$",
                         render_text(helm, (), *EVERYTHING_ON), re.MULTILINE)
    assert len(sources) == len(set(sources)), sorted(s for s in sources if sources.count(s) > 1)


@pytest.mark.parametrize(("values", "sets"), VARIANTS)
def test_core_objects_pass_the_api_schemas(helm: Path, values: tuple[Path, ...],
                                           sets: tuple[str, ...]) -> None:
    checked = 0
    for obj in render(helm, values, *sets):
        if (obj["apiVersion"], obj["kind"]) in crds.CRD_FILES:
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {list(exc.path)}: "
                        f"{exc.message}")
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize(("values", "sets"), VARIANTS)
def test_custom_resources_pass_the_crds_strictly(helm: Path, values: tuple[Path, ...],
                                                 sets: tuple[str, ...]) -> None:
    objects = render(helm, values, *sets)
    assert len(list(crds.custom_resources(objects))) >= 2  # the InferenceService, the template
    assert crds.errors(objects) == []


def deployment(helm: Path, name: str) -> dict[str, Any]:
    return next(o for o in render(helm, (), "redis.deploy=true")
                if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


def test_the_api_schemas_catch_a_misspelt_field(helm: Path) -> None:
    obj = deployment(helm, "rel-recstack-collector")
    obj["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(("mistake", "expected"), [
    ("rayClusterConfig", "'rayClusterConfig' was unexpected"),
    ("qps", "'qps' is not one of ['cpu', 'memory', 'concurrency', 'rps']"),
    ("storageUri", "'storageUri' was unexpected"),
], ids=["rayjob-field-of-rayservice", "qps-scale-metric", "storage-uri-on-custom-predictor"])
def test_the_crds_catch_a_wrong_field(helm: Path, mistake: str, expected: str) -> None:
    objects = render(helm, (), "training.createAtInstall=true")
    rayjob = next(o for o in objects if o["kind"] == "RayJob")
    predictor = next(o for o in objects if o["kind"] == "InferenceService")["spec"]["predictor"]
    if mistake == "rayClusterConfig":
        rayjob["spec"]["rayClusterConfig"] = rayjob["spec"].pop("rayClusterSpec")
    elif mistake == "qps":
        predictor["scaleMetric"] = "qps"
    else:  # a custom predictor takes STORAGE_URI in its container's env, not storageUri
        predictor["storageUri"] = "pvc://data/registry/versions/v1"
    found = crds.errors(objects)
    assert len(found) == 1 and expected in found[0], found


@pytest.fixture(scope="module")
def checkov_report(checkov: Path, helm: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> dict[str, Any]:
    """One checkov run (it takes seconds to start) over every rendering (good/) and over
    two pods that break the rules (bad/): a privileged collector and a Redis whose root
    filesystem is writable. The schema refuses those values; this shows that a template
    which hard-coded them would be caught."""
    top = tmp_path_factory.mktemp("checkov")
    (top / "good").mkdir()
    (top / "bad").mkdir()
    for name, values, sets in CASES:
        (top / "good" / f"{name}.yaml").write_text(render_text(helm, values, *sets))
    privileged = deployment(helm, "rel-recstack-collector")
    privileged["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "privileged"] = True
    writable = deployment(helm, "rel-recstack-redis")
    del writable["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFilesystem"]
    (top / "bad" / "bad.yaml").write_text(yaml.safe_dump_all([privileged, writable]))
    result = run(checkov, "--config-file", CHECKOV_CONFIG, "-d", top, "-o", "json")
    assert result.returncode in (0, 1), output(result)
    report = json.loads(result.stdout)
    assert isinstance(report, dict) and report["check_type"] == "kubernetes", result.stdout[:500]
    return report


def test_checkov_finds_nothing_in_any_rendering(checkov_report: dict[str, Any]) -> None:
    failed = [(f["file_path"], f["check_id"], f["resource"])
              for f in checkov_report["results"]["failed_checks"]
              if f["file_path"].startswith("/good/")]
    assert failed == []
    assert checkov_report["summary"]["passed"] > 1000
    assert checkov_report["summary"]["parsing_errors"] == 0


def test_checkov_catches_a_privileged_pod_and_a_writable_root(
        checkov_report: dict[str, Any]) -> None:
    failed = {(f["check_id"], f["resource"]) for f in checkov_report["results"]["failed_checks"]
              if f["file_path"].startswith("/bad/")}
    assert ("CKV_K8S_16", "Deployment.default.rel-recstack-collector") in failed  # privileged
    assert ("CKV_K8S_22", "Deployment.default.rel-recstack-redis") in failed  # writable root
