#!/usr/bin/env bash
# chart-test.sh [OUTDIR]   (default target/chart-test)
#
# Every check of the Helm chart and the plain manifests that needs no Rust
# build (deploy/README.md, "What the checks prove", says what each
# proves and what it cannot):
#   1. helm lint --strict, with the defaults and every test values file
#   2. helm template of every value combination, as install and as upgrade,
#      and the kustomize build of k8s/                      (render-all.sh)
#   3. values.schema.json rejects each file in values/bad/, for the reason
#      named in its first line
#   4. every rendered object is valid, strictly, against the API schemas of
#      Kubernetes 1.29 to 1.37                               (validate.py)
#   5. the cluster admin's checklist and the NetworkPolicy reachability
#      matrix on every rendering                             (assert_policy.py)
#   6. k8s/shop.yaml is what the chart renders now          (manifests-check)
#   7. every value is documented in deploy/README.md (docs_values.py)
#   8. generated keys and passwords survive upgrades; rotation and supplied
#      values work                                           (keep_test.py)
#   9. NOTES.txt names only objects and Secret keys that exist  (notes.py)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/chart-test}
export HELM=${HELM:-helm} KUBECTL=${KUBECTL:-kubectl}
PY=${PY:-python3}
K8S_VERSIONS=${K8S_VERSIONS:-"1.29.0 1.30.0 1.31.0 1.32.0 1.33.0 1.34.0 1.35.0 1.36.0 1.37.0"}
V=deploy/checks/values
pass=0 fail=0
step() { echo "== $*"; }
result() { if [ "$1" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi; }

step "1. helm lint --strict"
for values in "" $V/native-probes.yaml $V/external-db.yaml $V/hpa-ingress.yaml $V/supplied-secrets.yaml $V/kube-play.yaml k8s/chart-values.yaml; do
  if out=$("$HELM" lint --strict helm/shop ${values:+-f "$values"} 2>&1); then
    echo "  ok   helm lint --strict ${values:-(defaults)}"; result 0
  else
    echo "  FAIL helm lint --strict ${values:-(defaults)}"; echo "$out" | sed 's/^/       /'; result 1
  fi
done

step "2. render every combination"
rm -rf "$OUT"
if deploy/checks/render-all.sh "$OUT"; then result 0; else result 1; echo "chart-test: $pass passed, $((fail)) failed"; exit 1; fi

step "3. values.schema.json rejects bad values"
for f in $V/bad/*.yaml; do
  expect=$(head -1 "$f" | sed -n 's/^# expect: //p')
  if out=$("$HELM" template shop helm/shop -f "$f" 2>&1 >/dev/null); then
    echo "  FAIL $f was accepted"; result 1
  elif [ -n "$expect" ] && ! grep -qF -- "$expect" <<<"$out"; then
    echo "  FAIL $f was rejected, but not for $expect:"; echo "$out" | sed 's/^/       /'; result 1
  else
    echo "  ok   $(basename "$f") rejected: $(grep -m1 -E "at '|error" <<<"$out" | sed 's/^ *- *//')"; result 0
  fi
done

step "4. Kubernetes API schemas, strict"
kflags=(); for k in $K8S_VERSIONS; do kflags+=(-k "$k"); done
$PY deploy/checks/validate.py "${kflags[@]}" $(cut -f1 "$OUT/renderings.tsv") $V/*.objects.yaml; result $?

step "5. cluster admin's checklist and network policy"
while IFS=$'\t' read -r file mode values objects; do
  flags=(--mode "$mode")
  for f in ${values//,/ }; do flags+=(-f "$f"); done
  for f in ${objects//,/ }; do flags+=(--objects "$f"); done
  $PY deploy/checks/assert_policy.py "$file" "${flags[@]}"; result $?
done < "$OUT/renderings.tsv"

step "6. k8s/ in sync with the chart"
deploy/render-manifests.sh "$OUT/shop.yaml"
if diff -u k8s/shop.yaml "$OUT/shop.yaml" > "$OUT/shop.yaml.diff"; then
  echo "  ok   k8s/shop.yaml is what helm/shop renders"; result 0
else
  echo "  FAIL k8s/shop.yaml is stale: run \`make manifests\` and commit it"; head -40 "$OUT/shop.yaml.diff" | sed 's/^/       /'; result 1
fi

step "7. values documented"
$PY deploy/checks/docs_values.py helm/shop/values.yaml deploy/README.md; result $?

step "8. generated keys and passwords are kept on upgrades (lookup against a fake API server)"
$PY deploy/checks/keep_test.py "$OUT/keep"; result $?

step "9. NOTES.txt names what exists"
# helm renders NOTES.txt only on install; a copy of the chart renders it as a manifest.
rm -rf "$OUT/notes-chart"; cp -r helm/shop "$OUT/notes-chart"
printf 'notes: |\n{{ include "shop/templates/NOTES.txt" . | indent 2 }}\n' > "$OUT/notes-chart/templates/zz-notes.yaml"
while IFS=$'\t' read -r file mode values objects; do
  case "$file" in *k8s-kustomize*) continue ;; esac
  flags=(); for f in ${values//,/ }; do flags+=(-f "$f"); done
  oflags=(); for f in ${objects//,/ }; do oflags+=(--objects "$f"); done
  extra=(); [ "$mode" = upgrade ] && extra=(--is-upgrade)
  "$HELM" template shop "$OUT/notes-chart" --namespace shop "${flags[@]}" "${extra[@]}" \
      --show-only templates/zz-notes.yaml > "$file.notes.yaml"
  $PY -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["notes"])' "$file.notes.yaml" > "$file.NOTES.txt"
  $PY deploy/checks/notes.py "$file.NOTES.txt" "$file" "${oflags[@]}"; result $?
done < "$OUT/renderings.tsv"

echo "chart-test: $pass passed, $fail failed"
[ "$fail" = 0 ]
