#!/usr/bin/env bash
# deploy/kind/up.sh — the shop on a local kind cluster, end to end:
#   create the cluster, build the images and load them into it, install the
#   chart, wait until everything is ready, run the smoke test.
#
# Needs: kind (>= 0.24), kubectl, helm 3, docker or podman, and this
# repository's tools (make tools: grpcurl; make build: shopctl).
# Env: CLUSTER (shop), NAMESPACE (shop), RELEASE (shop), IMAGE_TAG (dev),
#      CONTAINER_ENGINE (docker or podman; default: whichever works),
#      HELM_EXTRA (extra helm flags, e.g. "-f my-values.yaml").
set -euo pipefail
cd "$(dirname "$0")/../.."
CLUSTER=${CLUSTER:-shop}
NAMESPACE=${NAMESPACE:-shop}
RELEASE=${RELEASE:-shop}
IMAGE_REGISTRY=localhost/shop
IMAGE_TAG=${IMAGE_TAG:-dev}
ENGINE=${CONTAINER_ENGINE:-$(docker info >/dev/null 2>&1 && echo docker || echo podman)}
HELM=${HELM:-$(command -v helm || echo .tools/bin/helm)}
log() { echo "== $*" >&2; }

for tool in kind kubectl "$HELM" "$ENGINE"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
[ "$ENGINE" = podman ] && export KIND_EXPERIMENTAL_PROVIDER=podman

log "1/5 kind cluster \"$CLUSTER\""
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config deploy/kind/kind-config.yaml --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

log "2/5 images ($ENGINE), loaded into the cluster's nodes"
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

log "3/5 namespace $NAMESPACE (Pod Security Standard: restricted)"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NAMESPACE" --overwrite \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted

log "4/5 helm upgrade --install $RELEASE (waits for the migrations and every pod)"
# shellcheck disable=SC2086
"$HELM" upgrade --install "$RELEASE" helm/shop --namespace "$NAMESPACE" \
  --set image.registry="$IMAGE_REGISTRY" --set image.tag="$IMAGE_TAG" --set image.pullPolicy=Never \
  --wait --wait-for-jobs --timeout 10m ${HELM_EXTRA:-}
kubectl -n "$NAMESPACE" get pods -o wide

log "5/5 smoke test"
NAMESPACE="$NAMESPACE" RELEASE="$RELEASE" IMAGE="$IMAGE_REGISTRY/productinfo:$IMAGE_TAG" deploy/kind/smoke-test.sh
