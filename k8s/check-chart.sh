#!/usr/bin/env bash
# Offline checks of charts/recstack, as CI runs them (no cluster needed):
# helm lint --strict, then helm template with the defaults and with each
# k8s/environments/*/values.yaml, each rendering validated against the Kubernetes
# API schemas by kubernetes-validate (pip install kubernetes-validate).
#
#   k8s/check-chart.sh          # KUBE_VERSION=1.35.0 by default (the kind node's version)
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.35.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PATH="$PATH:$root/.tools/bin"
chart="$root/charts/recstack"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

command -v kubernetes-validate >/dev/null \
  || { echo "check-chart.sh: kubernetes-validate not found (pip install kubernetes-validate)" >&2; exit 1; }
helm version --short

check() {
  local name="$1"; shift
  echo "== $name"
  helm lint --strict "$chart" "$@"
  helm template recstack "$chart" --kube-version "$KUBE_VERSION" "$@" >"$out/$name.yaml"
  kubernetes-validate --strict --quiet -k "$KUBE_VERSION" "$out/$name.yaml"
}

check defaults
for values in "$root"/k8s/environments/*/values.yaml; do
  check "$(basename "$(dirname "$values")")" -f "$values"
done
echo "check-chart.sh: all renderings valid for Kubernetes $KUBE_VERSION"
