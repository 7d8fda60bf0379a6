#!/usr/bin/env bash
# Builds the RecStack image (docker/Dockerfile) from the repository root and prints its size.
#
#   docker/build.sh                      # tags ${IMAGE:-recstack:dev}
#   IMAGE=registry.example/recstack:1 docker/build.sh --pull   # extra args go to docker build
#
# Environment:
#   IMAGE            tag to build (recstack:dev)
#   BASE_IMAGE       base for both stages; default: local/debian:bookworm when that image
#                    exists (a machine without registry access), else the Dockerfile's
#                    digest-pinned upstream debian:bookworm-slim
#   CA_BUNDLE        CA bundle that pip in the builder stage needs behind a TLS-intercepting
#                    proxy (default /etc/ssl/certs/ca-certificates.crt when it exists;
#                    CA_BUNDLE= to stage none). Copied into the context for the builder
#                    stage only and removed after the build; never in the final image.
#   TORCH_WHEEL_DIR  where a local CPU torch wheel lies (default /opt/wheels); a
#                    torch-*+cpu-*.whl found there is staged the same way and the CPU index
#                    (download.pytorch.org) is not asked; without one, it is.
#   CONTAINER_ENGINE_SCRIPT  started when docker is not up
#                    (default ../shared/tools/container-engine.sh, if present)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
IMAGE=${IMAGE:-recstack:dev}
CA_BUNDLE=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
TORCH_WHEEL_DIR=${TORCH_WHEEL_DIR:-/opt/wheels}
engine=${CONTAINER_ENGINE_SCRIPT:-$root/../shared/tools/container-engine.sh}

if ! docker info >/dev/null 2>&1; then
  if [ -x "$engine" ]; then
    echo "build.sh: docker is not up; running $engine"
    "$engine"
  else
    echo "build.sh: docker is not up and there is no $engine to start it" >&2
    exit 1
  fi
fi

args=()
if [ -z "${BASE_IMAGE:-}" ] && docker image inspect local/debian:bookworm >/dev/null 2>&1; then
  BASE_IMAGE=local/debian:bookworm
fi
[ -n "${BASE_IMAGE:-}" ] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")

stage=docker/build  # ignored by git (build/); only these two paths pass .dockerignore
cleanup() { rm -rf "${root:?}/${stage:?}"; }
trap cleanup EXIT
cleanup
mkdir -p "$stage/wheels"
if [ -n "$CA_BUNDLE" ] && [ -f "$CA_BUNDLE" ]; then
  cp "$CA_BUNDLE" "$stage/ca-certificates.crt"
fi
shopt -s nullglob
torch_wheels=("$TORCH_WHEEL_DIR"/torch-*+cpu-cp311-*.whl)
shopt -u nullglob
if [ ${#torch_wheels[@]} -gt 0 ]; then
  for wheel in "${torch_wheels[@]}"; do
    ln "$wheel" "$stage/wheels/" 2>/dev/null || cp "$wheel" "$stage/wheels/"
  done
  args+=(--build-arg TORCH_INDEX_URL=)
fi

ca=none
[ -f "$stage/ca-certificates.crt" ] && ca=staged
echo "build.sh: building $IMAGE; base ${BASE_IMAGE:-of the Dockerfile}," \
  "${#torch_wheels[@]} local torch wheel(s), CA bundle $ca"
start=$SECONDS
docker build --network host -f docker/Dockerfile -t "$IMAGE" "${args[@]}" "$@" .
size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
human=$(awk -v b="$size" 'BEGIN { printf "%.2f GB", b / 1e9 }')
echo "build.sh: built $IMAGE in $((SECONDS - start)) s; size $size bytes, $human uncompressed"
