#!/usr/bin/env bash
# Regenerates crates/skiff-api/data/kubernetes-1.33.protoset: the protobuf descriptors of the
# API groups skiff serves, compiled by protoc from Kubernetes' own generated.proto files.
# The .proto files come from the k8s-rs-pb crate (which ships upstream's files for each
# Kubernetes minor); only the compiled descriptors are committed. skiff-api reads them as its
# type schema: to decode `application/vnd.kubernetes.protobuf` bodies, to find unknown
# fields, and (comments kept with --include_source_info) for the field descriptions of the
# OpenAPI documents that `kubectl explain` reads. Run after changing the served groups.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
version=0.5.0
minor=v1_33
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
cargo init -q --name protoset-fetch
cargo add -q "k8s-rs-pb@=$version" --no-default-features
cargo fetch -q
src="$(cargo metadata --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "k8s-rs-pb":
        print(p["manifest_path"].rsplit("/", 1)[0])')/src/$minor"
# Every group version Kubernetes 1.33 serves by default (issue 15 serves them all).
groups=(core/v1 apps/v1 authentication/v1 authorization/v1 autoscaling/v1 autoscaling/v2
  batch/v1 certificates/v1 coordination/v1 discovery/v1 events/v1 networking/v1 node/v1
  policy/v1 rbac/v1 scheduling/v1 storage/v1 admissionregistration/v1 flowcontrol/v1)
protos=()
for g in "${groups[@]}"; do protos+=("api/$g/generated.proto"); done
protos+=(apiextensions_apiserver/pkg/apis/apiextensions/v1/generated.proto
  kube_aggregator/pkg/apis/apiregistration/v1/generated.proto)
(cd "$src" && protoc -I . --include_imports --include_source_info \
  --descriptor_set_out="$here/crates/skiff-api/data/kubernetes-1.33.protoset" "${protos[@]}" 2>/dev/null)
echo "wrote crates/skiff-api/data/kubernetes-1.33.protoset from k8s-rs-pb $version ($minor)"
