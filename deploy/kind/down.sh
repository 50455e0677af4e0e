#!/usr/bin/env bash
# deploy/kind/down.sh — delete the kind cluster (and with it every volume).
set -euo pipefail
[ "$(docker info >/dev/null 2>&1 && echo docker || echo podman)" = podman ] && export KIND_EXPERIMENTAL_PROVIDER=podman
kind delete cluster --name "${CLUSTER:-shop}"
