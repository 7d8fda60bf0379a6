#!/usr/bin/env bash
# Install the operators RecStack builds on into the current kubectl context:
#   cert-manager  (KServe's webhook certificates)
#   KubeRay       (RayJob / RayService for training and serving, later stages)
#   KServe        (InferenceService, Standard deployment mode: plain Deployments, no Knative)
#
#   k8s/bootstrap.sh            # e.g. right after `kind create cluster --config k8s/kind-config.yaml`
#
# Versions are pinned; override one with its variable (CERT_MANAGER_VERSION=... k8s/bootstrap.sh).
# Needs python3 too (to edit KServe's JSON config).
# KUBECONTEXT=name installs into that context instead of the current one (k8s/kind.sh
# passes kind-recstack). Re-running upgrades in place. Needs helm (v3.8+ for OCI charts,
# v4 works) and kubectl; k8s/tools.sh puts both in .tools/bin, which is used when they
# are not on PATH.
#
# KServe's Standard mode needs no Knative and no Istio. Left to itself it creates an
# Ingress of class `istio` for every InferenceService, which nothing here would serve:
# KSERVE_INGRESS=none (the default) turns that off, and clients reach the predictor
# Service `<isvc>-predictor` inside the cluster (or through `kubectl port-forward`, as
# the kind smoke test does). On a cluster with an Ingress controller, set
# KSERVE_INGRESS=ingress and KSERVE_INGRESS_CLASS to its class (e.g. nginx).
set -euo pipefail

# cert-manager 1.19 supports Kubernetes 1.31-1.35; KServe needs >= 1.15.
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.19.4}"
KUBERAY_VERSION="${KUBERAY_VERSION:-1.7.0}"
KSERVE_VERSION="${KSERVE_VERSION:-v0.20.0}"
KSERVE_INGRESS="${KSERVE_INGRESS:-none}"   # none | ingress
KSERVE_INGRESS_CLASS="${KSERVE_INGRESS_CLASS:-nginx}"
TIMEOUT="${TIMEOUT:-10m}"
KUBECONTEXT="${KUBECONTEXT:-}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PATH="$PATH:$root/.tools/bin"
for tool in helm kubectl python3; do
  command -v "$tool" >/dev/null || { echo "bootstrap.sh: $tool not found (helm, kubectl: run k8s/tools.sh)" >&2; exit 1; }
done
case "$KSERVE_INGRESS" in
  none) ingress=(--set kserve.controller.gateway.disableIngressCreation=true) ;;
  ingress) ingress=(--set kserve.controller.gateway.disableIngressCreation=false
                    --set kserve.controller.gateway.ingressGateway.className="$KSERVE_INGRESS_CLASS") ;;
  *) echo "bootstrap.sh: KSERVE_INGRESS=$KSERVE_INGRESS: none or ingress" >&2; exit 1 ;;
esac

# Every helm and kubectl call goes to KUBECONTEXT when it is set.
if [[ -n "$KUBECONTEXT" ]]; then
  helm() { command helm --kube-context "$KUBECONTEXT" "$@"; }
  kubectl() { command kubectl --context "$KUBECONTEXT" "$@"; }
fi

kubectl cluster-info >/dev/null || { echo "bootstrap.sh: no cluster in the context" >&2; exit 1; }

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
# Standard mode serves through Deployments + HPA (see the header on ingress). The
# istio virtual host is a Knative-mode feature, off here.
helm upgrade --install kserve oci://ghcr.io/kserve/charts/kserve-resources \
  --version "$KSERVE_VERSION" \
  --namespace kserve \
  --set kserve.controller.deploymentMode=Standard \
  --set kserve.controller.gateway.disableIstioVirtualHost=true \
  "${ingress[@]}" \
  --wait --timeout "$TIMEOUT"

# The same two settings in the controller's ConfigMap itself, whatever the chart's value
# names of this KServe release are: `deploy` (the default mode, for an InferenceService
# without the annotation) and `ingress.disableIngressCreation`. Other keys are kept (the
# controller refuses an ingress config without its gateway keys).
echo "== KServe inferenceservice-config: Standard mode, ingress creation $KSERVE_INGRESS"
patch="$(kubectl -n kserve get configmap inferenceservice-config -o json |
  python3 -c '
import json, sys
disable = sys.argv[1] == "none"
data = json.load(sys.stdin).get("data", {})
ingress = json.loads(data.get("ingress") or "{}")
deploy = json.loads(data.get("deploy") or "{}")
patch = {}
if ingress.get("disableIngressCreation") is not disable:
    ingress["disableIngressCreation"] = disable
    patch["ingress"] = json.dumps(ingress, indent=1)
if deploy.get("defaultDeploymentMode") != "Standard":
    deploy["defaultDeploymentMode"] = "Standard"
    patch["deploy"] = json.dumps(deploy, indent=1)
print(json.dumps({"data": patch}) if patch else "")
' "$KSERVE_INGRESS")"
if [[ -n "$patch" ]]; then
  kubectl -n kserve patch configmap inferenceservice-config --type merge -p "$patch"
  kubectl -n kserve rollout restart deployment/kserve-controller-manager
  kubectl -n kserve rollout status deployment/kserve-controller-manager --timeout=300s
fi

echo "== waiting for the CRDs, KServe's webhook certificate and controller"
kubectl wait --for=condition=Established --timeout=120s \
  crd/rayjobs.ray.io crd/rayclusters.ray.io crd/rayservices.ray.io \
  crd/inferenceservices.serving.kserve.io
# An InferenceService is admitted by KServe's webhooks, whose TLS certificate
# cert-manager issues: wait for it, or the first `helm install` of the chart can fail.
if kubectl -n kserve get certificates.cert-manager.io -o name | grep -q .; then
  kubectl -n kserve wait --for=condition=Ready certificates.cert-manager.io --all --timeout=300s
fi
kubectl -n kserve wait --for=condition=Available deployment/kserve-controller-manager \
  --timeout=300s
kubectl -n kuberay-system wait --for=condition=Available deployment --all --timeout=300s
helm list --all-namespaces
