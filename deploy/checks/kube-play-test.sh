#!/usr/bin/env bash
# kube-play-test.sh
#
# Builds the local test images (podman-images.sh) and runs the chart rendered
# with values/kube-play.yaml under `podman kube play` (kube_play.py says what
# is run and proved). Needs root, podman and runc (make tools), and the
# binaries in $BIN_DIR (default target/debug).
set -euo pipefail
cd "$(dirname "$0")/../.."
export HELM=${HELM:-helm}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/.tools/etc/containers.conf}
PY=${PY:-python3}
BIN_DIR=${BIN_DIR:-target/debug}
export SERVICES=${SERVICES:-"productinfo order storefront"} BIN_DIR
OUT=${OUT:-target/kube-play}
mkdir -p "$OUT"
deploy/checks/podman-images.sh
"$HELM" template shop helm/shop --namespace shop -f deploy/checks/values/kube-play.yaml > "$OUT/kube-play.yaml"
$PY deploy/checks/kube_play.py "$OUT/kube-play.yaml" --shopctl "$BIN_DIR/shopctl" --services "${SERVICES// /,}"
