#!/usr/bin/env bash
# render-all.sh OUTDIR
#
# Renders helm/shop with every value combination the checks use, each as a
# first install and as an upgrade (hooks differ), plus the kustomize build of
# k8s/ with freshly made test secrets. Where a rendering has the secrets Job,
# runs it (secrets_job.py run: its script, this machine's openssl, a kubectl
# stand-in) and keeps what it made in OUTDIR/<name>-<mode>.made.yaml. Where
# its pods mount TLS Secrets that neither the chart nor cert-manager makes,
# makes them as the admin would (tls_secrets.py, from certificates that
# k8s/make-secrets.sh made with openssl) in OUTDIR/<name>-<mode>.tls.yaml.
# Writes OUTDIR/<name>-<mode>.yaml and OUTDIR/renderings.txt, a line each:
# file|mode|values files|files of the objects that exist before the release's
# own (the admin's, the secrets Job's); lists comma-separated.
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
  "cert-manager|$V/cert-manager.yaml|"
  "cert-manager-issuer|$V/cert-manager-issuer.yaml|"
  "no-tls|$V/no-tls.yaml|"
  "no-tls-native-probes|$V/no-tls.yaml,$V/native-probes.yaml|"
  "faults|$V/faults.yaml|"
  "cloudnativepg|$V/cloudnativepg.yaml|"
  "mixed-db|$V/mixed-db.yaml|"
  "external-db-read-url|$V/external-db-read-url.yaml|$V/external-db.objects.yaml"
  "external-db-read-secret|$V/external-db-read-secret.yaml|$V/external-db-read-secret.objects.yaml"
)
fail=0
# The admin's TLS certificates (CA, and per service <service>.pem and
# <service>-key.pem, the layout of `shopctl certs`), for release "shop" in "shop".
"$PWD/k8s/make-secrets.sh" "$OUT/admin-secrets" 2>/dev/null
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
    mflags=(); for f in ${made//,/ }; do mflags+=(--objects "$f"); done
    $PY deploy/checks/tls_secrets.py "$OUT/$name-$mode.yaml" --certs "$OUT/admin-secrets/tls" \
      --out "$OUT/$name-$mode.tls.yaml" "${mflags[@]}" || fail=1
    [ -s "$OUT/$name-$mode.tls.yaml" ] && made=${made:+$made,}$OUT/$name-$mode.tls.yaml
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
