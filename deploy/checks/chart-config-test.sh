#!/usr/bin/env bash
# chart-config-test.sh [OUTDIR]   (default target/chart-config-test)
#
# The real binaries ($BIN_DIR, default target/debug) accept exactly the
# command, arguments, environment and mounted files that every rendering of
# the chart and the kustomize build of k8s/ give each service (with the keys
# and passwords its secrets Job made, render-all.sh, in each TLS Secret the
# certificates `shopctl certs` makes for namespace "shop", and a CloudNativePG
# Cluster's password and CA files as its operator makes them, the CA a real
# certificate), and refuse deliberately broken ones (check_config.py says how).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the work tree
OUT=${1:-target/chart-config-test}
export HELM=${HELM:-helm} KUBECTL=${KUBECTL:-kubectl}
PY=${PY:-python3}
BIN_DIR=${BIN_DIR:-target/debug}
SERVICES=${SERVICES:-"productinfo order storefront"}
rm -rf "$OUT"
deploy/checks/render-all.sh "$OUT"
# The services' CA and certificates, as an admin makes them for the TLS Secrets.
"$BIN_DIR/shopctl" certs --dir "$OUT/shopctl-certs" --namespace shop productinfo order storefront
status=0
while IFS='|' read -r file mode values objs; do
  [ "$mode" = install ] || continue
  objects=(); for f in ${objs//,/ }; do objects+=(--objects "$f"); done
  $PY deploy/checks/check_config.py --bin-dir "$BIN_DIR" --services "${SERVICES// /,}" --tls-certs "$OUT/shopctl-certs" \
    "${objects[@]}" "$file" || status=1
done < "$OUT/renderings.txt"
exit $status
