#!/usr/bin/env bash
# Install the operators RecStack builds on into the current kubectl context:
#   cert-manager  (KServe's webhook certificates)
#   KubeRay       (RayJob / RayService for training and serving, later stages)
#   KServe        (InferenceService, Standard deployment mode: plain Deployments, no Knative)
#
#   k8s/bootstrap.sh            # e.g. right after `kind create cluster --config k8s/kind-config.yaml`
#
# Versions are pinned; override one with its variable (CERT_MANAGER_VERSION=... k8s/bootstrap.sh).
# Re-running upgrades in place. Needs helm (v3.8+ for OCI charts, v4 works) and kubectl;
# k8s/tools.sh puts both in .tools/bin, which is used when they are not on PATH.
set -euo pipefail

# cert-manager 1.19 supports Kubernetes 1.31-1.35; KServe needs >= 1.15.
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.19.4}"
KUBERAY_VERSION="${KUBERAY_VERSION:-1.7.0}"
KSERVE_VERSION="${KSERVE_VERSION:-v0.20.0}"
TIMEOUT="${TIMEOUT:-10m}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PATH="$PATH:$root/.tools/bin"
for tool in helm kubectl; do
  command -v "$tool" >/dev/null || { echo "bootstrap.sh: $tool not found (run k8s/tools.sh)" >&2; exit 1; }
done

kubectl cluster-info >/dev/null || { echo "bootstrap.sh: no cluster in the current context" >&2; exit 1; }

# --repo instead of `helm repo add`: nothing is written to the caller's repository list.
echo "== cert-manager $CERT_MANAGER_VERSION"
helm upgrade --install cert-manager cert-manager \
  --repo https://charts.jetstack.io --version "$CERT_MANAGER_VERSION" \
  --namespace cert-manager --create-namespace \
  --set crds.enabled=true \
  --wait --timeout "$TIMEOUT"

echo "== KubeRay operator $KUBERAY_VERSION"
helm upgrade --install kuberay-operator kuberay-operator \
  --repo https://ray-project.github.io/kuberay-helm/ --version "$KUBERAY_VERSION" \
  --namespace kuberay-system --create-namespace \
  --wait --timeout "$TIMEOUT"

# KServe's CRDs ship as their own chart so an upgrade of the controller never drops them.
echo "== KServe $KSERVE_VERSION (Standard mode)"
helm upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd \
  --version "$KSERVE_VERSION" \
  --namespace kserve --create-namespace \
  --wait --timeout "$TIMEOUT"
# Standard mode serves through Deployments + HPA. External traffic needs an Ingress
# controller or Gateway API on top; nothing in the end-to-end test needs it yet.
helm upgrade --install kserve oci://ghcr.io/kserve/charts/kserve-resources \
  --version "$KSERVE_VERSION" \
  --namespace kserve \
  --set kserve.controller.deploymentMode=Standard \
  --wait --timeout "$TIMEOUT"

kubectl wait --for=condition=Established --timeout=120s \
  crd/rayjobs.ray.io crd/rayservices.ray.io crd/inferenceservices.serving.kserve.io
helm list --all-namespaces
