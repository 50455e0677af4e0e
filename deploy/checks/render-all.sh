#!/usr/bin/env bash
# render-all.sh OUTDIR
#
# Renders helm/shop with every value combination the checks use, each as a
# first install and as an upgrade (hooks differ), plus the kustomize build of
# k8s/ with freshly made test secrets. Where a rendering has the secrets Job,
# runs it (secrets_job.py run: its script, this machine's openssl, a kubectl
# stand-in) and keeps what it made in OUTDIR/<name>-<mode>.made.yaml. Writes
# OUTDIR/<name>-<mode>.yaml and OUTDIR/renderings.txt, a line each:
# file|mode|values files|files of the objects that exist before the release's
# own (the admin's and the secrets Job's); lists comma-separated.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the work tree
OUT=$1
HELM=${HELM:-helm}
KUBECTL=${KUBECTL:-kubectl}
PY=${PY:-python3}
V=deploy/checks/values
mkdir -p "$OUT"
: > "$OUT/renderings.txt"

# name | values files | objects files
COMBOS=(
  "default||"
  "native-probes|$V/native-probes.yaml|"
  "external-db|$V/external-db.yaml|$V/external-db.objects.yaml"
  "hpa-ingress|$V/hpa-ingress.yaml|"
  "supplied-secrets|$V/supplied-secrets.yaml|$V/supplied-secrets.objects.yaml"
  "mixed-secrets|$V/mixed-secrets.yaml|$V/supplied-secrets.objects.yaml"
)
fail=0
for combo in "${COMBOS[@]}"; do
  IFS='|' read -r name values objects <<<"$combo"
  flags=()
  for f in ${values//,/ }; do flags+=(-f "$f"); done
  for mode in install upgrade; do
    extra=()
    [ "$mode" = upgrade ] && extra=(--is-upgrade)
    "$HELM" template shop helm/shop --namespace shop "${flags[@]}" "${extra[@]}" > "$OUT/$name-$mode.yaml"
    oflags=(); for f in ${objects//,/ }; do oflags+=(--objects "$f"); done
    $PY deploy/checks/secrets_job.py run "$OUT/$name-$mode.yaml" --out "$OUT/$name-$mode.made.yaml" "${oflags[@]}" || fail=1
    made=$objects
    [ -s "$OUT/$name-$mode.made.yaml" ] && made=${objects:+$objects,}$OUT/$name-$mode.made.yaml
    printf '%s|%s|%s|%s\n' "$OUT/$name-$mode.yaml" "$mode" "$values" "$made" >> "$OUT/renderings.txt"
  done
done

# The plain manifests as an admin applies them: k8s/ with its generated secrets.
rm -rf "$OUT/k8s"
cp -r k8s "$OUT/k8s"
rm -rf "$OUT/k8s/secrets"
"$OUT/k8s/make-secrets.sh" "$OUT/k8s/secrets" 2>/dev/null
"$KUBECTL" kustomize "$OUT/k8s" > "$OUT/k8s-kustomize-install.yaml"
printf '%s|%s|%s|%s\n' "$OUT/k8s-kustomize-install.yaml" install k8s/chart-values.yaml "" >> "$OUT/renderings.txt"
echo "  ok   rendered $(wc -l < "$OUT/renderings.txt") manifest sets into $OUT"
exit $fail
