#!/usr/bin/env bash
# kube-play-test.sh
#
# Builds the local test images (podman-images.sh) and runs the chart rendered
# with values/kube-play.yaml (TLS on, certificates from `shopctl certs`) under
# `podman kube play` (kube_play.py says what is run and proved). Needs root,
# podman and runc (make tools), and the binaries in $BIN_DIR (default
# target/debug).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the work tree
export HELM=${HELM:-helm}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/.tools/etc/containers.conf}
PY=${PY:-python3}
BIN_DIR=${BIN_DIR:-target/debug}
export SERVICES=${SERVICES:-"productinfo order storefront"} BIN_DIR
OUT=${OUT:-target/kube-play}
mkdir -p "$OUT"
deploy/checks/podman-images.sh
"$HELM" template shop helm/shop --namespace shop -f deploy/checks/values/kube-play.yaml > "$OUT/kube-play.yaml"
# podman has no API server for the secrets Job: its steps run here instead
# (secrets_job.py: the Job's script, openssl, a kubectl stand-in), and the
# Secrets and ConfigMap it made are played with the rest.
$PY deploy/checks/secrets_job.py run "$OUT/kube-play.yaml" --out "$OUT/kube-play.made.yaml"
# The services' TLS Secrets, made as the deploy guide tells an admin to:
# `shopctl certs`, then one Secret per service with tls.crt, tls.key, ca.crt.
rm -rf "$OUT/tls"
"$BIN_DIR/shopctl" certs --dir "$OUT/tls" --namespace shop productinfo order storefront
$PY deploy/checks/tls_secrets.py "$OUT/kube-play.yaml" --certs "$OUT/tls" --out "$OUT/kube-play.tls.yaml" \
  --objects "$OUT/kube-play.made.yaml"
$PY deploy/checks/kube_play.py "$OUT/kube-play.yaml" --objects "$OUT/kube-play.made.yaml" --objects "$OUT/kube-play.tls.yaml" \
  --shopctl "$BIN_DIR/shopctl" --services "${SERVICES// /,}"
