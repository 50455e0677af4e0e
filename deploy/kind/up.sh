#!/usr/bin/env bash
# deploy/kind/up.sh — the shop on a local kind cluster, end to end:
#   create the cluster, build the images and load them into it, make the
#   services' TLS Secrets, install the chart, wait until everything is ready,
#   run the smoke test.
#
# Needs: kind (>= 0.24), kubectl, helm 3, docker or podman, and this
# repository's tools (make tools: grpcurl; make build: shopctl).
# Env: CLUSTER (shop), NAMESPACE (shop), RELEASE (shop), IMAGE_TAG (dev),
#      CONTAINER_ENGINE (docker or podman; default: whichever works),
#      HELM_EXTRA (extra helm flags, e.g. "-f my-values.yaml"),
#      TLS_SECRETS (shopctl: make each missing <release>-<service>-tls Secret
#      with `shopctl certs`, the CA kept in .local/kind-tls; none: leave them
#      to you, e.g. with tls.certManager.enabled in HELM_EXTRA).
set -euo pipefail
cd "$(dirname "$0")/../.."
CLUSTER=${CLUSTER:-shop}
NAMESPACE=${NAMESPACE:-shop}
RELEASE=${RELEASE:-shop}
IMAGE_REGISTRY=localhost/shop
IMAGE_TAG=${IMAGE_TAG:-dev}
ENGINE=${CONTAINER_ENGINE:-$(docker info >/dev/null 2>&1 && echo docker || echo podman)}
HELM=${HELM:-$(command -v helm || echo .tools/bin/helm)}
SHOPCTL=${SHOPCTL:-target/debug/shopctl}
TLS_SECRETS=${TLS_SECRETS:-shopctl}
# The chart's object name prefix: the release name, plus "-shop" unless it contains "shop".
case "$RELEASE" in *shop*) FULL=$RELEASE ;; *) FULL=$RELEASE-shop ;; esac
log() { echo "== $*" >&2; }

for tool in kind kubectl "$HELM" "$ENGINE"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
[ "$ENGINE" = podman ] && export KIND_EXPERIMENTAL_PROVIDER=podman

log "1/6 kind cluster \"$CLUSTER\""
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config deploy/kind/kind-config.yaml --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

log "2/6 images ($ENGINE), loaded into the cluster's nodes"
make images CONTAINER_ENGINE="$ENGINE" IMAGE_REGISTRY="$IMAGE_REGISTRY" IMAGE_TAG="$IMAGE_TAG"
for svc in productinfo order storefront; do
  image="$IMAGE_REGISTRY/$svc:$IMAGE_TAG"
  if [ "$ENGINE" = docker ]; then
    kind load docker-image --name "$CLUSTER" "$image"
  else
    archive=$(mktemp --suffix=.tar)
    podman save --format docker-archive -o "$archive" "$image"
    kind load image-archive --name "$CLUSTER" "$archive"
    rm -f "$archive"
  fi
done

log "3/6 namespace $NAMESPACE (Pod Security Standard: restricted)"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NAMESPACE" --overwrite \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted

log "4/6 TLS Secrets ($TLS_SECRETS)"
if [ "$TLS_SECRETS" = shopctl ]; then
  # Made once: a Secret that exists is left alone (the running services trust its CA).
  certs=.local/kind-tls/$NAMESPACE
  for svc in productinfo order storefront; do
    if kubectl -n "$NAMESPACE" get secret "$FULL-$svc-tls" >/dev/null 2>&1; then
      echo "   $FULL-$svc-tls exists: kept"
    else
      # The logical name and <name>.<ns>[.svc[.cluster.local]] come with it; --dns adds the Services'.
      names=
      for n in "$FULL-$svc" "$FULL-$svc-headless"; do
        names=$names$n,$n.$NAMESPACE,$n.$NAMESPACE.svc,$n.$NAMESPACE.svc.cluster.local,
      done
      "$SHOPCTL" certs --dir "$certs" --namespace "$NAMESPACE" --dns "${names%,}" "$svc"
      kubectl -n "$NAMESPACE" create secret generic "$FULL-$svc-tls" \
        --from-file=tls.crt="$certs/$svc.pem" --from-file=tls.key="$certs/$svc-key.pem" --from-file=ca.crt="$certs/ca.pem"
    fi
  done
fi

log "5/6 helm upgrade --install $RELEASE (waits for the migrations and every pod)"
# shellcheck disable=SC2086
"$HELM" upgrade --install "$RELEASE" helm/shop --namespace "$NAMESPACE" \
  --set image.registry="$IMAGE_REGISTRY" --set image.tag="$IMAGE_TAG" --set image.pullPolicy=Never \
  --wait --wait-for-jobs --timeout 10m ${HELM_EXTRA:-}
kubectl -n "$NAMESPACE" get pods -o wide

log "6/6 smoke test"
NAMESPACE="$NAMESPACE" RELEASE="$RELEASE" IMAGE="$IMAGE_REGISTRY/productinfo:$IMAGE_TAG" deploy/kind/smoke-test.sh
