#!/usr/bin/env bash
# deploy/observability/check.sh: validates everything in deploy/observability
# offline (no cluster, no network). Exit 0: every check passed; 1: a check
# failed; 2: the pinned tools are missing (run `make tools`).
#
#  1. kustomize build of deploy/observability (kubectl's built-in kustomize);
#     kustomize build of shop-overlay on a scratch copy of k8s/ with throwaway
#     secrets (k8s/make-secrets.sh); `helm template` of helm/shop with
#     shop-values.yaml;
#  2. kubernetes-validate --strict against Kubernetes $K8S_VERSION of every
#     object of the three renderings (a kind without a schema fails too);
#  3. checkov over deploy/observability's objects (the pods' security
#     settings, resources, image tags, probes, RBAC), with the skips of
#     deploy/checks/checkov-skips.yaml (deploy/checks/checkov_scan.py);
#  4. checks/check_dashboard.py (python3, standard library only): the
#     dashboard's JSON, panels, datasource uid, and that every query uses only
#     the shop's metric names and labels and [$__rate_interval];
#  5. checks/check_manifests.py (the tools venv, for PyYAML): ServiceAccounts,
#     references, configuration files against manifests, rule shape and
#     metric names, Prometheus's service discovery simulated on the rendered
#     chart and overlay, NetworkPolicies of both namespaces evaluated together;
#  6. promtool, when it is on PATH (or PROMTOOL=/path): check rules, the rule
#     unit tests (prometheus/rules.test.yaml), the PromQL syntax of every
#     dashboard query and the results of two of them on synthetic series,
#     and check config. Without promtool these are skipped
#     and the rules are checked for shape and metric names only (step 5).
#
# Knobs: TOOLS (default ./.tools), KUBECTL, HELM, CHECKOV, K8S_VERSION
# (1.33.0), PROMTOOL (default: promtool on PATH; "none" skips step 6).
set -uo pipefail
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the work tree

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TOOLS=${TOOLS:-$ROOT/.tools}
KUBECTL=${KUBECTL:-$TOOLS/bin/kubectl-1.34}
HELM=${HELM:-$TOOLS/bin/helm}
KV=$TOOLS/bin/kubernetes-validate
export CHECKOV=${CHECKOV:-$TOOLS/bin/checkov}
VPY=$TOOLS/venv/bin/python
K8S_VERSION=${K8S_VERSION:-1.33.0}

missing=()
for t in "$KUBECTL" "$HELM" "$KV" "$VPY" "$CHECKOV"; do
  [ -x "$t" ] || missing+=("$t")
done
[ -x "$VPY" ] && ! "$VPY" -c 'import yaml' 2>/dev/null && missing+=("PyYAML in $TOOLS/venv")
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "check.sh: missing tools: ${missing[*]}" >&2
  echo "check.sh: run \`make tools\` (tools/install-tools.sh) to install the pinned kubectl, helm, kubernetes-validate and checkov, then run this again." >&2
  exit 2
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0
ok() { echo "  ok   $*"; passed=$((passed + 1)); }
bad() { echo "  FAIL $*"; failed=$((failed + 1)); }
skip() { echo "  SKIP $*"; }
section() { echo "== $*"; }

# ------------------------------------------------------------------ 1. render
section "render"
renders=()
if "$KUBECTL" kustomize "$HERE" > "$TMP/observability.yaml" 2> "$TMP/err"; then
  ok "kubectl kustomize deploy/observability: $(grep -c '^kind:' "$TMP/observability.yaml") objects"
  renders+=("$TMP/observability.yaml")
else
  bad "kubectl kustomize deploy/observability:"; sed 's/^/       /' "$TMP/err"
fi

shops=()
if [ -d "$ROOT/k8s" ]; then
  # The overlay refers to ../../../k8s, which needs its generated secrets:
  # build it on a scratch copy with throwaway ones.
  mkdir -p "$TMP/tree/deploy/observability"
  cp -r "$ROOT/k8s" "$TMP/tree/k8s"
  rm -rf "$TMP/tree/k8s/secrets"
  cp -r "$HERE/shop-overlay" "$TMP/tree/deploy/observability/shop-overlay"
  if ! bash "$TMP/tree/k8s/make-secrets.sh" "$TMP/tree/k8s/secrets" > "$TMP/err" 2>&1; then
    bad "k8s/make-secrets.sh (for the overlay's throwaway secrets):"; sed 's/^/       /' "$TMP/err"
  elif "$KUBECTL" kustomize "$TMP/tree/deploy/observability/shop-overlay" > "$TMP/overlay.yaml" 2> "$TMP/err"; then
    ok "kubectl kustomize deploy/observability/shop-overlay (k8s/ + tracing + scrape policy): $(grep -c '^kind:' "$TMP/overlay.yaml") objects"
    renders+=("$TMP/overlay.yaml")
    shops+=(--shop "overlay=$TMP/overlay.yaml")
  else
    bad "kubectl kustomize deploy/observability/shop-overlay:"; sed 's/^/       /' "$TMP/err"
  fi
else
  skip "k8s/ is not there: shop-overlay not built"
fi

chart_values=()
if [ -f "$ROOT/helm/shop/Chart.yaml" ]; then
  if "$HELM" template shop "$ROOT/helm/shop" --namespace shop -f "$HERE/shop-values.yaml" > "$TMP/chart.yaml" 2> "$TMP/err"; then
    ok "helm template helm/shop -f shop-values.yaml: $(grep -c '^kind:' "$TMP/chart.yaml") objects"
    renders+=("$TMP/chart.yaml")
    shops+=(--shop "chart=$TMP/chart.yaml")
    chart_values=(--chart-values "$ROOT/helm/shop/values.yaml")
  else
    bad "helm template helm/shop -f deploy/observability/shop-values.yaml:"; sed 's/^/       /' "$TMP/err"
  fi
else
  skip "helm/shop is not there: the chart is not rendered with shop-values.yaml"
fi

# ------------------------------------------------------------------ 2. schemas
section "kubernetes-validate --strict -k $K8S_VERSION"
for r in "${renders[@]}"; do
  "$KV" --strict -k "$K8S_VERSION" - < "$r" > "$TMP/kv.out" 2>&1
  rc=$?
  n=$(grep -c '^INFO - passed' "$TMP/kv.out")
  if [ "$rc" -eq 0 ] && ! grep -qE '^(ERROR|WARN)' "$TMP/kv.out"; then
    ok "$(basename "$r" .yaml): $n objects valid"
  else
    bad "$(basename "$r" .yaml): (exit $rc)"; grep -E '^(ERROR|WARN)' "$TMP/kv.out" | sed 's/^/       /'
  fi
done

# counted COMMAND...: runs a checker that prints its own ok/FAIL lines, and counts it.
counted() { if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi; }

# ------------------------------------------------------------------ 3. checkov
section "checkov"
if [ -f "$TMP/observability.yaml" ]; then
  counted "$VPY" "$ROOT/deploy/checks/checkov_scan.py" "$TMP/observability.yaml"
else
  bad "checkov not run: deploy/observability did not render"
fi

# ------------------------------------------------------------------ 4. dashboard
section "dashboard (python3, standard library)"
counted python3 "$HERE/checks/check_dashboard.py" "$HERE/grafana/shop-dashboard.json" \
  --datasource-uid prometheus --emit-rules "$TMP/dashboard-rules.yaml" --emit-tests "$TMP/dashboard-tests.yaml"

# ------------------------------------------------------------------ 5. manifests
section "manifests, configurations, rules, scrapes, NetworkPolicies"
if [ -f "$TMP/observability.yaml" ]; then
  counted "$VPY" "$HERE/checks/check_manifests.py" --observability "$TMP/observability.yaml" \
    --rules "$HERE/prometheus/rules.yaml" "${shops[@]}" "${chart_values[@]}" \
    --netpol "$ROOT/deploy/checks/netpol.py"
else
  bad "check_manifests.py not run: deploy/observability did not render"
fi

# ------------------------------------------------------------------ 6. promtool
section "promtool"
PROMTOOL=${PROMTOOL:-$(command -v promtool || true)}
if [ "$PROMTOOL" != none ] && [ -n "$PROMTOOL" ] && [ -x "$PROMTOOL" ]; then
  echo "  using $("$PROMTOOL" --version 2>&1 | head -1)"
  promtool_step() { # what, command...
    local what=$1; shift
    if "$@" > "$TMP/pt.out" 2>&1; then ok "$what"; else bad "$what:"; sed 's/^/       /' "$TMP/pt.out"; fi
  }
  promtool_step "promtool check rules prometheus/rules.yaml" "$PROMTOOL" check rules "$HERE/prometheus/rules.yaml"
  promtool_step "promtool test rules prometheus/rules.test.yaml" "$PROMTOOL" test rules "$HERE/prometheus/rules.test.yaml"
  if [ -f "$TMP/dashboard-rules.yaml" ]; then
    promtool_step "promtool check rules: PromQL syntax of every dashboard query" "$PROMTOOL" check rules "$TMP/dashboard-rules.yaml"
    promtool_step "promtool test rules: dashboard's round-robin share and error ratio on synthetic series" "$PROMTOOL" test rules "$TMP/dashboard-tests.yaml"
  fi
  if "$PROMTOOL" check config --syntax-only "$HERE/prometheus/prometheus.yml" > "$TMP/pt.out" 2>&1; then
    ok "promtool check config --syntax-only prometheus/prometheus.yml"
  elif grep -q 'field kubernetes_sd_configs not found' "$TMP/pt.out"; then
    # Debian's promtool is built without Kubernetes service discovery: check
    # everything else on a copy whose kubernetes_sd_configs are static targets.
    "$VPY" - "$HERE/prometheus/prometheus.yml" "$TMP/prometheus-static.yml" <<'PYEOF'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
for job in cfg.get("scrape_configs") or []:
    if job.pop("kubernetes_sd_configs", None) is not None:
        job["static_configs"] = [{"targets": ["127.0.0.1:9090"]}]
open(sys.argv[2], "w").write(yaml.safe_dump(cfg, sort_keys=False))
PYEOF
    promtool_step "promtool check config --syntax-only (this promtool has no Kubernetes discovery: kubernetes_sd_configs replaced by static targets)" \
      "$PROMTOOL" check config --syntax-only "$TMP/prometheus-static.yml"
  else
    bad "promtool check config prometheus/prometheus.yml:"; sed 's/^/       /' "$TMP/pt.out"
  fi
else
  skip "no promtool (not on PATH, or PROMTOOL=none): rules checked for shape and metric names only (step 5), not"
  skip "  compiled, unit-tested or checked as Prometheus configuration. Debian's package"
  skip "  'prometheus' provides promtool (or set PROMTOOL=/path/to/promtool)."
fi

echo
echo "observability: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
