"""Strict offline validation of custom resources against the CRDs in ../shared/crds.

Each CRD's openAPIV3Schema is made strict (additionalProperties: false wherever an
object lists properties and does not preserve unknown fields), so a misspelt or
misplaced field (`rayClusterConfig` in a RayJob, `qps` as a scale metric) is an error
here instead of a field the API server prunes in silence. Webhook and CEL rules are
not checked (see ../shared/crds/README.md).

    python -m tests.deploy.crds RENDERED.yaml...   # exit 1 on the first invalid file
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRD_DIR = Path(__file__).resolve().parents[3] / "shared" / "crds"
# The CRDs the chart renders custom resources of (one file per kind).
CRD_FILES = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve-v0.20.0-inferenceservices.yaml",
    ("ray.io/v1", "RayJob"): "kuberay-v1.7.0-rayjobs.yaml",
}
# A RayJob spec rendered into a ConfigMap key: validated like a live RayJob.
TEMPLATE_KEYS = {"rayjob.yaml"}


def strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema that rejects the properties it does not list."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    # libyaml: the CRDs are megabytes (the pure-Python loader takes seconds each).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((CRD_DIR / CRD_FILES[(api_version, kind)]).read_text(), Loader=loader)
    version = api_version.split("/")[1]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = strict(served["schema"]["openAPIV3Schema"])
    # metadata is an ObjectMeta the API server checks itself; leave it open here.
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def custom_resources(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, object) for each custom resource, including RayJob templates in ConfigMaps."""
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata'].get('name')}"
        if (obj.get("apiVersion"), obj.get("kind")) in CRD_FILES:
            yield name, obj
        elif obj.get("kind") == "ConfigMap":
            for key, text in (obj.get("data") or {}).items():
                if key in TEMPLATE_KEYS:
                    yield f"{name} key {key}", yaml.safe_load(text)


def errors(objects: list[dict[str, Any]]) -> list[str]:
    """One line per schema violation of every custom resource in objects."""
    found = []
    for where, obj in custom_resources(objects):
        for error in validator(obj["apiVersion"], obj["kind"]).iter_errors(obj):
            path = ".".join(str(p) for p in error.absolute_path) or "(root)"
            found.append(f"{where}: {path}: {error.message}")
    return found


def main(paths: list[str]) -> int:
    status = 0
    for path in paths:
        objects = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
        problems = errors(objects)
        count = len(list(custom_resources(objects)))
        for line in problems:
            print(f"{path}: {line}", file=sys.stderr)
        print(f"{path}: {count} custom resources, {len(problems)} errors")
        status = status or int(bool(problems))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
