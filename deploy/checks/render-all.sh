#!/usr/bin/env bash
# render-all.sh OUTDIR
#
# Renders helm/shop with every value combination the checks use, each as a
# first install and as an upgrade (hooks differ), plus the kustomize build of
# k8s/ with freshly made test secrets. Writes OUTDIR/<name>-<mode>.yaml and
# OUTDIR/renderings.tsv: file, mode, values files, files of objects an admin
# creates beforehand (comma-separated).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$1
HELM=${HELM:-helm}
KUBECTL=${KUBECTL:-kubectl}
V=deploy/checks/values
mkdir -p "$OUT"
: > "$OUT/renderings.tsv"

# name | values files | objects files
COMBOS=(
  "default||"
  "native-probes|$V/native-probes.yaml|"
  "external-db|$V/external-db.yaml|$V/external-db.objects.yaml"
  "hpa-ingress|$V/hpa-ingress.yaml|"
  "supplied-secrets|$V/supplied-secrets.yaml|$V/supplied-secrets.objects.yaml"
)
for combo in "${COMBOS[@]}"; do
  IFS='|' read -r name values objects <<<"$combo"
  flags=()
  for f in ${values//,/ }; do flags+=(-f "$f"); done
  for mode in install upgrade; do
    extra=()
    [ "$mode" = upgrade ] && extra=(--is-upgrade)
    "$HELM" template shop helm/shop --namespace shop "${flags[@]}" "${extra[@]}" > "$OUT/$name-$mode.yaml"
    printf '%s\t%s\t%s\t%s\n' "$OUT/$name-$mode.yaml" "$mode" "$values" "$objects" >> "$OUT/renderings.tsv"
  done
done

# The plain manifests as an admin applies them: k8s/ with its generated secrets.
rm -rf "$OUT/k8s"
cp -r k8s "$OUT/k8s"
rm -rf "$OUT/k8s/secrets"
"$OUT/k8s/make-secrets.sh" "$OUT/k8s/secrets" 2>/dev/null
"$KUBECTL" kustomize "$OUT/k8s" > "$OUT/k8s-kustomize-install.yaml"
printf '%s\t%s\t%s\t%s\n' "$OUT/k8s-kustomize-install.yaml" install k8s/chart-values.yaml "" >> "$OUT/renderings.tsv"
echo "  ok   rendered $(wc -l < "$OUT/renderings.tsv") manifest sets into $OUT"
