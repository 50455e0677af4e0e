#!/usr/bin/env bash
# chart-test.sh [OUTDIR]   (default target/chart-test)
#
# Every check of the Helm chart and the plain manifests that needs no Rust
# build (deploy/README.md, "What the checks prove", says what each
# proves and what it cannot):
#   1. helm lint --strict, with the defaults and every test values file
#   2. helm template of every value combination, as install and as upgrade,
#      the secrets Job of each run here, the admin's TLS Secrets made, and
#      the kustomize build of k8s/                            (render-all.sh)
#   3. helm template renders the same objects twice; no template generates
#      anything or looks anything up while rendering
#   4. values.schema.json rejects each file in values/bad/, for the reason
#      named in its first line
#   5. every rendered object is valid, strictly, against the API schemas of
#      Kubernetes 1.29 to 1.37, cert-manager's objects against
#      cert-manager-v1.schema.json and CloudNativePG's Clusters against
#      cnpg-cluster-v1.schema.json                           (validate.py)
#   6. checkov over every rendering, with the skips of checkov-skips.yaml,
#      and a deliberately insecure control it must catch  (checkov_scan.py)
#   7. the chart's own wiring and the NetworkPolicy reachability matrix on
#      every rendering                                   (assert_policy.py)
#   8. the secrets Job never replaces a Secret: run twice, rotation, a
#      release of the old chart, controls                 (secrets_job.py)
#   9. k8s/shop.yaml is what the chart renders now          (manifests-check)
#  10. every value is documented in deploy/README.md (docs_values.py)
#  11. NOTES.txt names only objects and Secret keys that exist  (notes.py)
#  12. fault flags change the ConfigMap <release>-faults and nothing else,
#      so no pod restarts when they change
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/chart-test}
export HELM=${HELM:-helm} KUBECTL=${KUBECTL:-kubectl} CHECKOV=${CHECKOV:-checkov}
export PY=${PY:-python3} PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the work tree
K8S_VERSIONS=${K8S_VERSIONS:-"1.29.0 1.30.0 1.31.0 1.32.0 1.33.0 1.34.0 1.35.0 1.36.0 1.37.0"}
V=deploy/checks/values
pass=0 fail=0
step() { echo "== $*"; }
result() { if [ "$1" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi; }
# renderings FUNCTION: FUNCTION FILE MODE VALUES OBJECTS for each line of renderings.txt
renderings() { while IFS='|' read -r file mode values objects; do "$1" "$file" "$mode" "$values" "$objects"; done < "$OUT/renderings.txt"; }
flags() { # -f/--objects flags of a VALUES and an OBJECTS list
  vflags=(); for f in ${1//,/ }; do vflags+=(-f "$f"); done
  oflags=(); for f in ${2//,/ }; do oflags+=(--objects "$f"); done
}

step "1. helm lint --strict"
for values in "" $V/native-probes.yaml $V/external-db.yaml $V/hpa-ingress.yaml $V/supplied-secrets.yaml $V/mixed-secrets.yaml \
              $V/cert-manager.yaml $V/cert-manager-issuer.yaml $V/no-tls.yaml $V/faults.yaml $V/kube-play.yaml \
              $V/cloudnativepg.yaml $V/mixed-db.yaml $V/external-db-read-url.yaml $V/external-db-read-secret.yaml k8s/chart-values.yaml; do
  if out=$("$HELM" lint --strict helm/shop ${values:+-f "$values"} 2>&1); then
    echo "  ok   helm lint --strict ${values:-(defaults)}"; result 0
  else
    echo "  FAIL helm lint --strict ${values:-(defaults)}"; echo "$out" | sed 's/^/       /'; result 1
  fi
done

step "2. render every combination (and run its secrets Job here)"
rm -rf "$OUT"
if deploy/checks/render-all.sh "$OUT"; then result 0; else result 1; echo "chart-test: $pass passed, $((fail)) failed"; exit 1; fi

step "3. helm template renders the same objects twice"
again() {
  case "$1" in *k8s-kustomize*) return ;; esac
  flags "$3" ""
  extra=(); [ "$2" = upgrade ] && extra=(--is-upgrade)
  "$HELM" template shop helm/shop --namespace shop "${vflags[@]}" "${extra[@]}" > "$1.again"
  if diff -q "$1" "$1.again" >/dev/null; then
    echo "  ok   $(basename "$1"): the same objects, byte for byte, when rendered again"; result 0
  else
    echo "  FAIL $(basename "$1") differs when rendered again:"; diff "$1" "$1.again" | head -20 | sed 's/^/       /'; result 1
  fi
}
renderings again
# `lookup` answers nothing under `helm template`, so rendering twice cannot see it.
if hits=$(grep -nE '\{\{[^}]*\b(lookup|genPrivateKey|genCA|genSelfSignedCert|genSignedCert|genSelfSignedCertWithKey|randAlphaNum|randAlpha|randNumeric|randAscii|randBytes|randInt|uuidv4|now)\b' helm/shop/templates/*); then
  echo "  FAIL templates generate or look up while rendering:"; echo "$hits" | sed 's/^/       /'; result 1
else
  echo "  ok   no template calls lookup, a gen* or rand* function, uuidv4 or now"; result 0
fi

step "4. values.schema.json rejects bad values"
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

step "5. Kubernetes API schemas, strict"
kflags=(); for k in $K8S_VERSIONS; do kflags+=(-k "$k"); done
$PY deploy/checks/validate.py "${kflags[@]}" $(cut -d'|' -f1 "$OUT/renderings.txt") $V/*.objects.yaml $(ls "$OUT"/*.made.yaml "$OUT"/*.tls.yaml | xargs -r grep -l .); result $?

step "6. checkov (the cluster admin's checklist), skips in checkov-skips.yaml"
$PY deploy/checks/checkov_scan.py --control "$OUT/default-install.yaml" $(cut -d'|' -f1 "$OUT/renderings.txt"); result $?

step "7. the chart's own wiring and the network policy matrix"
policy() {
  flags "$3" "$4"
  $PY deploy/checks/assert_policy.py "$1" --mode "$2" "${vflags[@]}" "${oflags[@]}"; result $?
}
renderings policy

step "8. the secrets Job never replaces a Secret"
$PY deploy/checks/secrets_job.py test "$OUT/default-install.yaml" --old-release $V/old-chart-release.objects.yaml; result $?

step "9. k8s/ in sync with the chart"
deploy/render-manifests.sh "$OUT/shop.yaml"
if diff -u k8s/shop.yaml "$OUT/shop.yaml" > "$OUT/shop.yaml.diff"; then
  echo "  ok   k8s/shop.yaml is what helm/shop renders"; result 0
else
  echo "  FAIL k8s/shop.yaml is stale: run \`make manifests\` and commit it"; head -40 "$OUT/shop.yaml.diff" | sed 's/^/       /'; result 1
fi

step "10. values documented"
$PY deploy/checks/docs_values.py helm/shop/values.yaml deploy/README.md; result $?

step "11. NOTES.txt names what exists"
# helm renders NOTES.txt only on install; a copy of the chart renders it as a manifest.
rm -rf "$OUT/notes-chart"; cp -r helm/shop "$OUT/notes-chart"
printf 'notes: |\n{{ include "shop/templates/NOTES.txt" . | indent 2 }}\n' > "$OUT/notes-chart/templates/zz-notes.yaml"
notes() {
  case "$1" in *k8s-kustomize*) return ;; esac
  flags "$3" "$4"
  extra=(); [ "$2" = upgrade ] && extra=(--is-upgrade)
  "$HELM" template shop "$OUT/notes-chart" --namespace shop "${vflags[@]}" "${extra[@]}" \
      --show-only templates/zz-notes.yaml > "$1.notes.yaml"
  $PY -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["notes"])' "$1.notes.yaml" > "$1.NOTES.txt"
  $PY deploy/checks/notes.py "$1.NOTES.txt" "$1" "${oflags[@]}"; result $?
}
renderings notes

step "12. fault flags change nothing but their ConfigMap (no restart)"
# The same release without flags and with values/faults.yaml: a Deployment
# that differed (a checksum over the flags, an environment variable) would
# roll every pod whenever a flag changed; the ConfigMap must differ, or the
# comparison proves nothing.
for mode in install upgrade; do
  $PY - "$OUT/default-$mode.yaml" "$OUT/faults-$mode.yaml" <<'EOF'
import sys
sys.path.insert(0, "deploy/checks")
import rendered
without, with_ = ({(d["kind"], d["metadata"]["name"]): d for d in rendered.load_file(f)} for f in sys.argv[1:])
faults = ("ConfigMap", "shop-faults")
changed = sorted(f"{k} {n}" for k, n in without.keys() | with_.keys() if without.get((k, n)) != with_.get((k, n)) and (k, n) != faults)
name = sys.argv[2].rsplit("/", 1)[-1]
if faults not in with_ or without.get(faults) == with_[faults]:
    print(f"  FAIL {name}: ConfigMap shop-faults does not hold the flags of values/faults.yaml")
    sys.exit(1)
if changed:
    print(f"  FAIL {name}: fault flags change {changed}, which would restart pods when a flag changes")
    sys.exit(1)
print(f"  ok   {name}: fault flags change ConfigMap shop-faults and no other object: no pod restarts")
EOF
  result $?
done

echo "chart-test: $pass passed, $fail failed"
[ "$fail" = 0 ]
