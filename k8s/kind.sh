#!/usr/bin/env bash
# The whole RecStack platform on a local kind cluster, as `make kind-*` and
# .github/workflows/kind-e2e.yml run it:
#
#   k8s/kind.sh up       # cluster (k8s/kind-config.yaml), shared RWX volume, operators
#                        #   (k8s/bootstrap.sh), namespace under Pod Security `restricted`
#   k8s/kind.sh deploy   # image -> kind load -> helm install (dev values) -> first-run Job
#                        #   -> a RayJob trains a version -> the InferenceService serves it
#   k8s/kind.sh smoke    # through the cluster: V1, V2, an event, the next answer changes,
#                        #   then `helm test`
#   k8s/kind.sh dump     # get/describe/logs of everything, into $DUMP_DIR (on failure)
#   k8s/kind.sh down     # delete the cluster
#
# Needs docker, kind (v0.31.0), kubectl and helm (v3.8+ or v4); k8s/tools.sh puts helm
# and kubectl in .tools/bin, which is used when they are not on PATH. Every version and
# knob below is overridable from the environment (CLUSTER=dev2 k8s/kind.sh up).
# A failure in deploy or smoke dumps the cluster's state (DUMP_ON_FAILURE=0: don't).
# Bash 4.4 or newer (macOS: brew install bash).
set -euo pipefail

KIND_VERSION="${KIND_VERSION:-v0.31.0}"         # the node image in kind-config.yaml is its
CLUSTER="${CLUSTER:-recstack}"                  # node names are $CLUSTER-control-plane, -worker
NAMESPACE="${NAMESPACE:-recstack}"
RELEASE="${RELEASE:-recstack}"                  # object names below assume `recstack`
IMAGE="${IMAGE:-recstack:dev}"                  # docker/build.sh tags this; kind loads it
BUILD="${BUILD:-1}"                             # 0: use $IMAGE as it is in the local docker
VALUES="${VALUES:-k8s/environments/dev/values.yaml}"
HELM_EXTRA_ARGS="${HELM_EXTRA_ARGS:-}"           # more `helm upgrade` arguments, split on spaces
STORAGE_CLASS="${STORAGE_CLASS:-recstack-shared}" # k8s/kind-shared-volume.yaml
SHARED_DIR="${SHARED_DIR:-/var/local/recstack-shared}" # on the worker node (a container)
SHARED_UID="${SHARED_UID:-10001}"                # the chart's pod user; hostPath ignores fsGroup
REGISTRY_PATH="${REGISTRY_PATH:-/data/registry}" # the model registry on the shared volume
API_KEYS_SECRET="${API_KEYS_SECRET:-recstack-api-keys}" # the collector's keys (key api-keys)
API_KEY="${API_KEY:-}"                           # smoke: the collector key (default: the Secret's)
SERVE_API_KEY="${SERVE_API_KEY:-}"               # smoke: the predictor's key, if it has one
SMOKE_USER="${SMOKE_USER:-}"                     # smoke: a known user (default: smoke.py picks)
PREDICTOR_PORT="${PREDICTOR_PORT:-18080}"        # local ends of the port-forwards
COLLECTOR_PORT="${COLLECTOR_PORT:-18090}"
PREDICTOR_SERVICE_PORT="${PREDICTOR_SERVICE_PORT:-80}" # KServe Standard mode: 80 -> pod 8080
COLLECTOR_SERVICE_PORT="${COLLECTOR_SERVICE_PORT:-8090}"
INSTALL_TIMEOUT="${INSTALL_TIMEOUT:-30m}"        # helm --timeout (Helm 4 waits for Jobs too)
FIRST_RUN_TIMEOUT="${FIRST_RUN_TIMEOUT:-1800}"   # seconds: generate a world, build features
RETRAIN_TIMEOUT="${RETRAIN_TIMEOUT:-600}"        # seconds: the retrain Job creates a RayJob
RAYJOB_TIMEOUT="${RAYJOB_TIMEOUT:-2700}"         # seconds: Ray cluster up, training, registry
ISVC_TIMEOUT="${ISVC_TIMEOUT:-900}"              # seconds: the predictor loads the version
SMOKE_TIMEOUT="${SMOKE_TIMEOUT:-180}"            # seconds for the answer to change
HELM_TEST_TIMEOUT="${HELM_TEST_TIMEOUT:-10m}"
POLL_SECONDS="${POLL_SECONDS:-5}"                # between two looks at a Job or RayJob
DUMP_DIR="${DUMP_DIR:-${TMPDIR:-/tmp}/recstack-kind-dump}"
DUMP_ON_FAILURE="${DUMP_ON_FAILURE:-1}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PATH="$PATH:$root/.tools/bin"
command_name="${1:-}"
started=$SECONDS
worker="$CLUSTER-worker"
context="kind-$CLUSTER"

say() { printf '==> [kind.sh %s %4ds] %s\n' "$command_name" "$((SECONDS - started))" "$*"; }
warn() { printf 'kind.sh: %s\n' "$*" >&2; }
die() { warn "$*"; exit 1; }
k() { kubectl --context "$context" "$@"; }
kn() { kubectl --context "$context" -n "$NAMESPACE" "$@"; }

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool not found on PATH$(hint "$tool")"
  done
}

hint() {
  case "$1" in
    kind) echo " (install kind $KIND_VERSION: https://kind.sigs.k8s.io/docs/user/quick-start/#installation)" ;;
    helm | kubectl) echo " (k8s/tools.sh puts it in .tools/bin)" ;;
    docker) echo " (kind runs its nodes as Docker containers)" ;;
    *) echo "" ;;
  esac
}

# On exit from deploy or smoke: stop the port-forwards; after a failure, dump the state.
finish() {
  local rc=$?
  stop_forwards
  if ((rc != 0)); then
    warn "'$command_name' failed (exit $rc) after $((SECONDS - started)) s"
    if [[ "$DUMP_ON_FAILURE" == 1 ]]; then
      dump || warn "the dump failed too"
    fi
  fi
  exit "$rc"
}

cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; }

# -- up ------------------------------------------------------------------------------------

up() {
  need docker kind kubectl helm
  docker info >/dev/null 2>&1 || die "docker is not running"
  local have
  have="$(kind version 2>/dev/null | awk '{print $2}')"
  [[ "$have" == "$KIND_VERSION" ]] ||
    warn "kind $have, not $KIND_VERSION: k8s/kind-config.yaml pins the node image $KIND_VERSION ships"

  if cluster_exists; then
    say "kind cluster $CLUSTER exists (created by helm/kind-action or an earlier run); using it"
  else
    say "creating kind cluster $CLUSTER from k8s/kind-config.yaml (a minute or two)"
    kind create cluster --name "$CLUSTER" --config k8s/kind-config.yaml --wait 180s
  fi
  k get node "$worker" >/dev/null ||
    die "no node $worker: k8s/kind-config.yaml must give the cluster one worker"

  say "shared volume: $SHARED_DIR on $worker, owned by $SHARED_UID; PersistentVolume $STORAGE_CLASS (ReadWriteMany)"
  docker exec "$worker" sh -c \
    "mkdir -p '$SHARED_DIR' && chown '$SHARED_UID:$SHARED_UID' '$SHARED_DIR' && chmod 0775 '$SHARED_DIR'"
  sed -e "s|recstack-worker|$worker|" -e "s|/var/local/recstack-shared|$SHARED_DIR|" \
    -e "s|: recstack-shared$|: $STORAGE_CLASS|" k8s/kind-shared-volume.yaml | k apply -f -

  say "operators: cert-manager, KubeRay, KServe (k8s/bootstrap.sh; several minutes)"
  KUBECONTEXT="$context" bash k8s/bootstrap.sh

  say "namespace $NAMESPACE under Pod Security restricted (enforce, warn, audit)"
  k create namespace "$NAMESPACE" --dry-run=client -o yaml | k apply -f -
  k label namespace "$NAMESPACE" --overwrite \
    pod-security.kubernetes.io/enforce=restricted \
    pod-security.kubernetes.io/enforce-version=latest \
    pod-security.kubernetes.io/warn=restricted \
    pod-security.kubernetes.io/audit=restricted
  say "cluster $CLUSTER is ready; next: make kind-deploy"
}

# -- deploy --------------------------------------------------------------------------------

# Wait for Job $1 to complete within $2 seconds; its pods' logs when it fails.
wait_job() {
  local job="$1" timeout="$2" conditions="" phase="" last="" absent=0
  say "waiting for Job $job (up to ${timeout} s)"
  local began=$SECONDS
  while true; do
    if ! conditions="$(kn get job "$job" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {end}' 2>/dev/null)"; then
      absent=$((absent + 1))
      ((absent < 12)) || die "Job $job not found"
      sleep "$POLL_SECONDS"
      continue
    fi
    case " $conditions " in
      *" Complete=True "*) say "Job $job complete ($((SECONDS - began)) s)"; return 0 ;;
      *" Failed=True "*)
        warn "Job $job failed"
        kn describe job "$job" || true
        kn logs "job/$job" --all-containers --tail=300 || true
        return 1 ;;
    esac
    phase="$(kn get pods -l "job-name=$job" -o jsonpath='{range .items[*]}{.status.phase} {end}' 2>/dev/null || true)"
    if [[ "$phase" != "$last" ]]; then
      say "Job $job: pods ${phase:-none yet}"
      last="$phase"
    fi
    if ((SECONDS - began > timeout)); then
      warn "Job $job not complete in $timeout s"
      kn describe job "$job" || true
      kn logs "job/$job" --all-containers --tail=300 || true
      return 1
    fi
    sleep "$POLL_SECONDS"
  done
}

rayjobs() { kn get rayjobs -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' 2>/dev/null || true; }

rayjob_diagnostics() {
  local job="$1" cluster
  kn describe rayjob "$job" || true
  kn logs "job/$job" --all-containers --tail=300 || true # the submitter (K8sJobMode)
  cluster="$(kn get rayjob "$job" -o jsonpath='{.status.rayClusterName}' 2>/dev/null || true)"
  if [[ -n "$cluster" ]]; then
    kn describe raycluster "$cluster" || true
    kn logs -l "ray.io/cluster=$cluster,ray.io/node-type=head" --all-containers --tail=300 || true
  fi
}

# Wait for RayJob $1 to reach jobStatus SUCCEEDED within $2 seconds.
wait_rayjob() {
  local job="$1" timeout="$2" status="" last="" began=$SECONDS
  say "waiting for RayJob $job to succeed (up to ${timeout} s: Ray cluster, training, registry)"
  while true; do
    status="$(kn get rayjob "$job" -o jsonpath='{.status.jobDeploymentStatus}/{.status.jobStatus}' 2>/dev/null || true)"
    if [[ "$status" != "$last" ]]; then
      say "RayJob $job: deployment/job status ${status:-(none yet)}"
      last="$status"
    fi
    # Terminal: Complete, Failed, ValidationFailed. A failed attempt with retries left
    # (backoffLimit) is Retrying/FAILED, then starts over: keep waiting.
    case "$status" in
      */SUCCEEDED) return 0 ;;
      Failed/* | ValidationFailed/* | Complete/*)
        warn "RayJob $job ended $status"
        rayjob_diagnostics "$job"
        return 1 ;;
    esac
    if ((SECONDS - began > timeout)); then
      warn "RayJob $job not SUCCEEDED in $timeout s (status $status)"
      rayjob_diagnostics "$job"
      return 1
    fi
    sleep "$POLL_SECONDS"
  done
}

# The version RayJob $1 wrote: from its driver log (`recstack train` prints
# "version <id> written to <uri>"), else the newest in the registry on the volume.
trained_version() {
  local job="$1" version
  version="$(kn logs "job/$job" --tail=-1 2>/dev/null |
    sed -n 's/.*version \([A-Za-z0-9][A-Za-z0-9._-]*\) written to.*/\1/p' | tail -n 1 || true)"
  if [[ -z "$version" ]]; then
    warn "no 'version <id> written to' line in the logs of job/$job; reading $REGISTRY_PATH"
    version="$(newest_version)"
  fi
  [[ -n "$version" ]] || die "no version found for RayJob $job"
  printf '%s\n' "$version"
}

# The newest version in the registry, read by a short pod that mounts the data claim
# read-only (it passes Pod Security restricted; it needs no network and no API token).
newest_version() {
  local pod=recstack-registry-probe repo="${IMAGE%:*}" tag="${IMAGE##*:}"
  kn delete pod "$pod" --ignore-not-found --wait=true >/dev/null
  kn apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $pod
  labels: {app.kubernetes.io/part-of: recstack, app.kubernetes.io/component: registry-probe}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext:
    runAsNonRoot: true
    runAsUser: $SHARED_UID
    runAsGroup: $SHARED_UID
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: probe
      image: $repo:$tag
      imagePullPolicy: Never
      command: [python, -c, "from stores.registry import Registry; print(Registry('$REGISTRY_PATH').latest().version)"]
      env: [{name: HOME, value: /tmp}]
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {drop: [ALL]}
      resources:
        requests: {cpu: 100m, memory: 256Mi}
        limits: {cpu: "1", memory: 1Gi}
      volumeMounts:
        - {name: data, mountPath: /data, readOnly: true}
        - {name: tmp, mountPath: /tmp}
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: $RELEASE-data, readOnly: true}
    - name: tmp
      emptyDir: {sizeLimit: 64Mi}
EOF
  kn wait "pod/$pod" --for=jsonpath='{.status.phase}'=Succeeded --timeout=300s >/dev/null ||
    { kn describe pod "$pod" >&2 || true; kn logs "$pod" >&2 || true; return 1; }
  kn logs "$pod" | tail -n 1
  kn delete pod "$pod" --wait=false >/dev/null
}

# Wait for the InferenceService to be Ready for its current spec: KServe has seen the
# new generation (a Ready condition of the previous one does not count), the predictor
# Deployment has rolled out, and the condition is True.
wait_isvc() {
  local isvc="inferenceservice/$RELEASE" generation observed began=$SECONDS
  say "waiting for InferenceService $RELEASE to be Ready (up to ${ISVC_TIMEOUT} s)"
  generation="$(kn get "$isvc" -o jsonpath='{.metadata.generation}')"
  while true; do
    observed="$(kn get "$isvc" -o jsonpath='{.status.observedGeneration}' 2>/dev/null || true)"
    [[ -n "$observed" && "$observed" -lt "$generation" ]] || break
    ((SECONDS - began < 120)) || break # then the Ready wait below decides
    sleep 2
  done
  # Standard mode's Deployment is <isvc>-predictor (Knative mode has revisions instead).
  if kn get "deployment/$RELEASE-predictor" >/dev/null 2>&1 &&
    ! kn rollout status "deployment/$RELEASE-predictor" --timeout="${ISVC_TIMEOUT}s"; then
    kn describe "$isvc" || true
    die "the predictor Deployment $RELEASE-predictor did not roll out in $ISVC_TIMEOUT s"
  fi
  if ! kn wait "$isvc" --for=condition=Ready --timeout="${ISVC_TIMEOUT}s"; then
    kn describe "$isvc" || true
    die "InferenceService $RELEASE not Ready in $ISVC_TIMEOUT s"
  fi
}

deploy() {
  need docker kind kubectl helm
  cluster_exists || die "no kind cluster $CLUSTER: run k8s/kind.sh up (make kind-up) first"
  trap finish EXIT
  local repo="${IMAGE%:*}" tag="${IMAGE##*:}" extra=() before job version
  read -r -a extra <<<"$HELM_EXTRA_ARGS"

  if [[ "$BUILD" == 1 ]]; then
    say "building $IMAGE (docker/build.sh, as make image; minutes the first time)"
    IMAGE="$IMAGE" docker/build.sh
  else
    say "BUILD=0: using $IMAGE from the local docker"
  fi
  say "loading $IMAGE into the kind nodes"
  kind load docker-image "$IMAGE" --name "$CLUSTER"

  if ! kn get secret "$API_KEYS_SECRET" >/dev/null 2>&1; then
    say "Secret $API_KEYS_SECRET: a generated collector API key (key api-keys)"
    kn create secret generic "$API_KEYS_SECRET" \
      --from-literal=api-keys="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >/dev/null
  fi

  say "helm upgrade --install $RELEASE charts/recstack ($VALUES, image $IMAGE, --wait)"
  helm --kube-context "$context" upgrade --install "$RELEASE" charts/recstack \
    --namespace "$NAMESPACE" -f "$VALUES" \
    --set image.repository="$repo" --set image.tag="$tag" --set image.pullPolicy=Never \
    --set persistence.storageClass="$STORAGE_CLASS" \
    --set redis.deploy=true --set firstRun.enabled=true \
    --set collector.apiKeys.existingSecret="$API_KEYS_SECRET" \
    "${extra[@]}" --wait --timeout "$INSTALL_TIMEOUT"
  kn get pvc "$RELEASE-data"

  say "first run: generate a small world and build its features (Job $RELEASE-first-run)"
  wait_job "$RELEASE-first-run" "$FIRST_RUN_TIMEOUT"

  say "training now: Job retrain-now from CronJob $RELEASE-retrain creates a RayJob"
  before="$(rayjobs)"
  kn delete job retrain-now --ignore-not-found --wait=true
  kn create job --from="cronjob/$RELEASE-retrain" retrain-now
  wait_job retrain-now "$RETRAIN_TIMEOUT"
  # `recstack retrain` prints "created RayJob <name> in namespace <ns>"; else the new one.
  job="$(kn logs job/retrain-now --tail=-1 2>/dev/null |
    sed -n 's/.*created RayJob \([a-z0-9.-]*\) in namespace.*/\1/p' | tail -n 1 || true)"
  [[ -n "$job" ]] || job="$(comm -13 <(sort <<<"$before") <(rayjobs | sort) | tail -n 1)"
  if [[ -z "$job" ]]; then
    kn logs job/retrain-now --all-containers --tail=100 || true
    die "Job retrain-now created no new RayJob"
  fi
  wait_rayjob "$job" "$RAYJOB_TIMEOUT"
  version="$(trained_version "$job")"
  say "RayJob $job trained version $version"

  say "serving $version: helm upgrade --reuse-values --set inferenceService.version=$version"
  helm --kube-context "$context" upgrade "$RELEASE" charts/recstack --namespace "$NAMESPACE" \
    --reuse-values --set inferenceService.version="$version" --wait --timeout "$INSTALL_TIMEOUT"
  wait_isvc
  kn get inferenceservice,deploy,svc
  say "deployed. Reach it with:"
  echo "    kubectl -n $NAMESPACE port-forward svc/$RELEASE-predictor 8080:$PREDICTOR_SERVICE_PORT"
  echo "    kubectl -n $NAMESPACE port-forward svc/$RELEASE-collector 8090:$COLLECTOR_SERVICE_PORT"
  echo "  next: make kind-smoke"
}

# -- smoke ---------------------------------------------------------------------------------

forwards=()
stop_forwards() {
  local pid
  for pid in "${forwards[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true # gone, and its port free, before the script ends
  done
}

# kubectl port-forward svc/$1 $2:$3 in the background, once the local port accepts.
forward() {
  local service="$1" local_port="$2" remote_port="$3" log pid
  if (exec 3<>"/dev/tcp/127.0.0.1/$local_port") 2>/dev/null; then
    die "127.0.0.1:$local_port is in use already; pick another (PREDICTOR_PORT, COLLECTOR_PORT)"
  fi
  log="$(mktemp)"
  # kubectl itself in the background (not through kn, a function, whose subshell would
  # be what `kill` stops), so that stop_forwards ends the port-forward.
  kubectl --context "$context" -n "$NAMESPACE" port-forward "svc/$service" \
    "$local_port:$remote_port" >"$log" 2>&1 &
  pid=$!
  forwards+=("$pid")
  for _ in $(seq 60); do
    kill -0 "$pid" 2>/dev/null || break # it exited: its log says why
    if (exec 3<>"/dev/tcp/127.0.0.1/$local_port") 2>/dev/null; then
      say "port-forward svc/$service -> 127.0.0.1:$local_port"
      return 0
    fi
    sleep 1
  done
  cat "$log" >&2
  die "port-forward to svc/$service did not open 127.0.0.1:$local_port"
}

smoke() {
  need kubectl helm python3
  trap finish EXIT
  local key="$API_KEY" smoke_args=()
  if [[ -z "$key" ]]; then
    key="$(kn get secret "$API_KEYS_SECRET" -o jsonpath='{.data.api-keys}' | base64 -d |
      grep -Ev '^[[:space:]]*(#|$)' | head -n 1 || true)"
    [[ -n "$key" ]] || die "no API key in Secret $API_KEYS_SECRET (key api-keys); set API_KEY"
  fi
  kn wait "inferenceservice/$RELEASE" --for=condition=Ready --timeout=60s
  forward "$RELEASE-predictor" "$PREDICTOR_PORT" "$PREDICTOR_SERVICE_PORT"
  forward "$RELEASE-collector" "$COLLECTOR_PORT" "$COLLECTOR_SERVICE_PORT"
  [[ -z "$SMOKE_USER" ]] || smoke_args+=(--user "$SMOKE_USER")
  [[ -z "$SERVE_API_KEY" ]] || smoke_args+=(--serve-api-key "$SERVE_API_KEY")

  say "k8s/smoke.py: V1, V2, an event to the collector, the next answer changes"
  python3 k8s/smoke.py --serve "http://127.0.0.1:$PREDICTOR_PORT" \
    --collect "http://127.0.0.1:$COLLECTOR_PORT" --api-key "$key" \
    --timeout "$SMOKE_TIMEOUT" "${smoke_args[@]}"

  say "helm test $RELEASE"
  helm --kube-context "$context" test "$RELEASE" --namespace "$NAMESPACE" --logs \
    --timeout "$HELM_TEST_TIMEOUT"
  say "smoke passed"
}

# -- dump ----------------------------------------------------------------------------------

# Everything a failed run leaves behind: printed, and written under $DUMP_DIR (the
# workflow uploads it).
dump() {
  need kubectl
  mkdir -p "$DUMP_DIR/logs"
  say "dumping the cluster's state into $DUMP_DIR"
  local kinds=all,rayjobs,rayclusters,inferenceservices,pvc,jobs,cronjobs,networkpolicies
  {
    k get all -A -o wide || true
    k get rayjobs,rayclusters,inferenceservices -A -o wide || true
    k get pv,pvc,storageclass -A -o wide || true
  } 2>&1 | tee "$DUMP_DIR/get.txt"
  k get events -A --sort-by=.lastTimestamp >"$DUMP_DIR/events.txt" 2>&1 || true
  echo "--- events in $NAMESPACE"
  kn get events --sort-by=.lastTimestamp 2>&1 | tail -n 60 || true
  kn describe "$kinds" >"$DUMP_DIR/describe.txt" 2>&1 ||
    kn describe all >"$DUMP_DIR/describe.txt" 2>&1 || true
  echo "--- kubectl -n $NAMESPACE describe $kinds"
  cat "$DUMP_DIR/describe.txt"

  local pod container
  for pod in $(kn get pods -o jsonpath='{.items[*].metadata.name}' 2>/dev/null); do
    for container in $(kn get pod "$pod" -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}'); do
      kn logs "$pod" -c "$container" >"$DUMP_DIR/logs/$pod.$container.log" 2>&1 || true
      kn logs "$pod" -c "$container" --previous >"$DUMP_DIR/logs/$pod.$container.previous.log" 2>/dev/null ||
        rm -f "$DUMP_DIR/logs/$pod.$container.previous.log"
      echo "--- logs $pod/$container (last 200 lines; all in $DUMP_DIR/logs)"
      tail -n 200 "$DUMP_DIR/logs/$pod.$container.log"
    done
  done
  local ns deploy ns_deploy
  for ns_deploy in kserve/kserve-controller-manager kuberay-system/kuberay-operator \
    cert-manager/cert-manager; do
    ns="${ns_deploy%%/*}" deploy="${ns_deploy#*/}"
    k -n "$ns" logs "deploy/$deploy" --all-containers --tail=2000 \
      >"$DUMP_DIR/logs/operator.$deploy.log" 2>&1 || true
  done
  helm --kube-context "$context" status "$RELEASE" -n "$NAMESPACE" >"$DUMP_DIR/helm-status.txt" 2>&1 || true
  helm --kube-context "$context" history "$RELEASE" -n "$NAMESPACE" >>"$DUMP_DIR/helm-status.txt" 2>&1 || true
  if command -v kind >/dev/null && cluster_exists; then
    kind export logs "$DUMP_DIR/kind" --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  say "dump in $DUMP_DIR"
}

# -- down ----------------------------------------------------------------------------------

down() {
  need kind
  if cluster_exists; then
    say "deleting kind cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER"
  else
    say "no kind cluster $CLUSTER"
  fi
}

case "$command_name" in
  up) up ;;
  deploy) deploy ;;
  smoke) smoke ;;
  dump) dump ;;
  down) down ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    [[ "$command_name" =~ ^(-h|--help|help)$ ]] || exit 2 ;;
esac
