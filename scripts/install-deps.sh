#!/usr/bin/env bash
# Installs the Debian packages skiff and its tests need, if any are missing.
# Safe to run repeatedly: it does nothing when everything is present.
set -euo pipefail

packages=(
  etcd-server        # the etcd datastore backend's tests and benchmarks run a real etcd
  protobuf-compiler  # etcd-client generates its gRPC code with protoc at build time
  libprotobuf-dev    # …and imports protobuf's well-known types (descriptor.proto) from it
  curl               # the API end-to-end tests send raw HTTPS requests with it
  skopeo             # the registry's tests push and inspect images with a real client
  busybox-static     # …built offline from this static busybox
  runc               # the node agent runs containers with it
  crun               # …or with crun (--runtime crun), which its tests run too
  iproute2           # …and wires pod networks with ip
  nftables           # …and programs Services into the kernel with nft
  unzip              # the tests' Helm and kubectl 1.35 come in a zip (install-test-clients.sh)
  openssl            # the certificate tests verify what the cluster CA signed with it
)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "error: missing packages ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} …" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
