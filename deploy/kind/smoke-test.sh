#!/usr/bin/env bash
# deploy/kind/smoke-test.sh — check an installed shop from the outside, on any
# cluster (kind, k3d or a real one) where the current kubectl context points.
#
#   1. in every pod, grpc_health_probe passes for "liveness" and for the
#      service's own name (what the kubelet's probes ask), over TLS with the
#      pod's own certificate when the services speak TLS
#   2. NetworkPolicies are enforced: order -> productinfo works, productinfo ->
#      order is refused
#   3. through port-forward, grpcurl lists the services (reflection) and health
#      answers SERVING without a token; with TLS: over mutual TLS (-cacert,
#      -cert, -key, -servername <service>), and productinfo refuses plaintext
#      and a client without a certificate
#   4. with an admin token minted by shopctl from the storefront key in its
#      Secret: addProduct; with a customer token: addOrder (order reserves the
#      stock on productinfo), and the product's stock went down
#   5. the storefront's web shop answers over HTTP
#
# Env: NAMESPACE (shop), RELEASE (shop), FULLNAME (object name prefix; default
# the release name, as the chart names it when the release contains "shop"),
# GRPCURL (grpcurl or .tools/bin/grpcurl), SHOPCTL (target/debug/shopctl).
# With TLS the client certificate is the storefront's own, read from its
# Secret, as the admin token is minted from its signing key: a test's
# shortcut, not how an operator should call the services (deploy/README.md,
# section "TLS").
set -euo pipefail
cd "$(dirname "$0")/../.."
NS=${NAMESPACE:-shop}
RELEASE=${RELEASE:-shop}
FULL=${FULLNAME:-$RELEASE}
GRPCURL=${GRPCURL:-$(command -v grpcurl || echo .tools/bin/grpcurl)}
SHOPCTL=${SHOPCTL:-target/debug/shopctl}
K="kubectl -n $NS"
PROBE=/usr/local/bin/grpc_health_probe
declare -A HEALTH=([productinfo]=ecommerce.ProductInfo [order]=ecommerce.OrderManagement [storefront]=ecommerce.Storefront)
declare -A PORT=([productinfo]=17101 [order]=17201 [storefront]=17301)
pass=0 fail=0
ok() { echo "  ok   $*"; pass=$((pass + 1)); }
bad() { echo "  FAIL $*"; fail=$((fail + 1)); }
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# TLS: what the services' ConfigMaps say; the probe's flags with a pod's own files.
TLS_DIR=$($K get configmap "$FULL-productinfo" -o jsonpath='{.data.TLS_CERT_FILE}' | sed 's|/[^/]*$||')
probe_tls() { # SERVICE: grpc_health_probe's TLS flags to call SERVICE
  if [ -n "$TLS_DIR" ]; then
    echo "-tls -tls-ca-cert=$TLS_DIR/ca.crt -tls-client-cert=$TLS_DIR/tls.crt -tls-client-key=$TLS_DIR/tls.key -tls-server-name=$1"
  fi
}
g() { # SERVICE ARGS...: grpcurl to SERVICE, over mutual TLS when the services speak it
  local svc=$1; shift
  if [ -n "$TLS_DIR" ]; then
    "$GRPCURL" -cacert "$tmp/ca.pem" -cert "$tmp/client.pem" -key "$tmp/client-key.pem" -servername "$svc" "$@"
  else
    "$GRPCURL" -plaintext "$@"
  fi
}
if [ -n "$TLS_DIR" ]; then
  secret=$($K get deploy "$FULL-storefront" -o jsonpath='{.spec.template.spec.volumes[?(@.name=="tls")].secret.secretName}')
  for pair in ca.crt:ca.pem tls.crt:client.pem tls.key:client-key.pem; do
    key=${pair%%:*}
    $K get secret "$secret" -o jsonpath="{.data.${key//./\\.}}" | base64 -d > "$tmp/${pair#*:}"
  done
  chmod 600 "$tmp/client-key.pem"
fi

echo "== probes inside every pod"
for svc in productinfo order storefront; do
  for pod in $($K get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=$svc" -o name); do
    for name in liveness "${HEALTH[$svc]}"; do
      # shellcheck disable=SC2046
      if out=$($K exec "$pod" -- $PROBE -addr=127.0.0.1:50051 "-service=$name" $(probe_tls "$svc") 2>&1); then
        ok "$pod $name: $out"
      else
        bad "$pod $name: $out"
      fi
    done
  done
done

echo "== network policy"
# shellcheck disable=SC2046
if $K exec "deploy/$FULL-order" -- $PROBE "-addr=$FULL-productinfo:50051" -service=ecommerce.ProductInfo -connect-timeout=3s $(probe_tls productinfo) >/dev/null 2>&1; then
  ok "order -> productinfo:50051 allowed"
else
  bad "order -> productinfo:50051 refused"
fi
# shellcheck disable=SC2046
if $K exec "deploy/$FULL-productinfo" -- $PROBE "-addr=$FULL-order:50051" -connect-timeout=3s $(probe_tls order) >/dev/null 2>&1; then
  bad "productinfo -> order:50051 allowed (are NetworkPolicies enforced by this cluster's CNI?)"
else
  ok "productinfo -> order:50051 refused"
fi

echo "== grpcurl through port-forward"
for svc in productinfo order storefront; do
  $K port-forward "svc/$FULL-$svc" "${PORT[$svc]}:50051" >"$tmp/pf-$svc.log" 2>&1 &
  pids+=($!)
done
$K port-forward "svc/$FULL-storefront" 18080:8080 >"$tmp/pf-http.log" 2>&1 &
pids+=($!)
sleep 3
for svc in productinfo order storefront; do
  addr=127.0.0.1:${PORT[$svc]}
  if g "$svc" "$addr" list | grep -qx "${HEALTH[$svc]}"; then ok "$svc: reflection lists ${HEALTH[$svc]}"; else bad "$svc: reflection"; fi
  if g "$svc" -d "{\"service\": \"${HEALTH[$svc]}\"}" "$addr" grpc.health.v1.Health/Check | grep -q '"SERVING"'; then
    ok "$svc: health SERVING"
  else
    bad "$svc: health"
  fi
done

if [ -n "$TLS_DIR" ]; then
  addr=127.0.0.1:${PORT[productinfo]}
  if "$GRPCURL" -plaintext "$addr" list >/dev/null 2>&1; then bad "productinfo answers plaintext gRPC"; else ok "productinfo refuses plaintext gRPC"; fi
  if "$GRPCURL" -cacert "$tmp/ca.pem" -servername productinfo "$addr" list >/dev/null 2>&1; then
    bad "productinfo answers a client without a certificate"
  else
    ok "productinfo refuses a client without a certificate"
  fi
fi

echo "== a product and an order"
$K get secret "$FULL-storefront-signing-key" -o jsonpath='{.data.private\.pem}' | base64 -d > "$tmp/storefront.key"
chmod 600 "$tmp/storefront.key"
admin="authorization: Bearer $("$SHOPCTL" token --role admin --key "$tmp/storefront.key" --subject smoke-admin --ttl 10m)"
customer="authorization: Bearer $("$SHOPCTL" token --role customer --key "$tmp/storefront.key" --subject smoke-customer --ttl 10m)"
product=$(g productinfo -H "$admin" \
  -d '{"name": "Smoke test kettle", "unitPrice": {"currencyCode": "EUR", "units": 20}, "stock": 5}' \
  "127.0.0.1:${PORT[productinfo]}" ecommerce.ProductInfo/addProduct | sed -n 's/.*"value": "\(.*\)".*/\1/p')
if [ -n "$product" ]; then ok "addProduct (admin token): $product"; else bad "addProduct"; fi
if g order -H "$customer" \
     -d "{\"lines\": [{\"productId\": \"$product\", \"quantity\": 2}], \"destination\": \"Lisbon\", \"idempotencyKey\": \"smoke-$(date +%s)\"}" \
     "127.0.0.1:${PORT[order]}" ecommerce.OrderManagement/addOrder >/dev/null; then
  ok "addOrder (customer token): order reserved stock on productinfo"
else
  bad "addOrder"
fi
stock=$(g productinfo -H "$customer" -d "{\"value\": \"$product\"}" "127.0.0.1:${PORT[productinfo]}" \
  ecommerce.ProductInfo/getProduct | sed -n 's/.*"stock": "\{0,1\}\([0-9]*\)"\{0,1\}.*/\1/p')
if [ "$stock" = 3 ]; then ok "stock 5 -> 3"; else bad "stock is '$stock', want 3"; fi

echo "== web shop"
if code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/) && [ "$code" = 200 ]; then
  ok "storefront HTTP / answers 200"
else
  bad "storefront HTTP / answers ${code:-nothing}"
fi

echo "smoke test: $pass passed, $fail failed"
[ "$fail" = 0 ]
