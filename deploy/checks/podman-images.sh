#!/usr/bin/env bash
# podman-images.sh   ->  localhost/shop-test/{base,postgres,<service>}:local
#
# Local TEST images for the podman kube play test, built without any image
# registry (none is reachable on these machines):
#   base      Debian bookworm minbase + postgresql-15 from debootstrap (apt),
#             imported with `podman import`; made once, ~1 min.
#   postgres  stands in for postgres:16 (user 999, the official entrypoint's
#             contract for what the chart uses).
#   <service> the binary from $BIN_DIR (default target/debug) at
#             /usr/local/bin/<service>, a grpc_health_probe stand-in, user 65532.
# These are not the production images (docker/Dockerfile makes those).
#
# Env: SERVICES ("productinfo order storefront"), BIN_DIR, GRPCURL (.tools/bin/grpcurl),
#      CONTAINERS_CONF (.tools/etc/containers.conf), TAG (local)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/.tools/etc/containers.conf}
SERVICES=${SERVICES:-productinfo order storefront}
BIN_DIR=${BIN_DIR:-target/debug}
GRPCURL=${GRPCURL:-.tools/bin/grpcurl}
TAG=${TAG:-local}
HERE=deploy/checks/podman
log() { echo "[podman-images] $*" >&2; }

command -v podman >/dev/null || { echo "podman is not installed (make tools installs it)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "building the base image needs root (debootstrap)" >&2; exit 1; }

if ! podman image exists localhost/shop-test/base:bookworm; then
  log "debootstrap bookworm minbase + postgresql-15 (once per machine)"
  rootfs=$(mktemp -d /tmp/shop-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include=postgresql-15 bookworm "$rootfs" \
    http://deb.debian.org/debian > "$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
         "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/var/lib/postgresql/15 "$rootfs.log"
  tar -C "$rootfs" -c . | podman import -q \
    --change 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - localhost/shop-test/base:bookworm >/dev/null
  rm -rf "$rootfs"; trap - EXIT
fi

log "localhost/shop-test/postgres:$TAG"
podman build -q -f "$HERE/Containerfile.postgres" -t "localhost/shop-test/postgres:$TAG" "$HERE" >/dev/null

ctx=$(mktemp -d /tmp/shop-image.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/bin"
cp "$GRPCURL" "$HERE/grpc_health_probe" "$ctx/"
for svc in $SERVICES; do
  [ -x "$BIN_DIR/$svc" ] || { echo "$BIN_DIR/$svc is not built (make build)" >&2; exit 1; }
  cp "$BIN_DIR/$svc" "$ctx/bin/$svc"
  log "localhost/shop-test/$svc:$TAG"
  podman build -q -f "$HERE/Containerfile.service" --build-arg "SERVICE=$svc" \
    -t "localhost/shop-test/$svc:$TAG" "$ctx" >/dev/null
  rm -f "$ctx/bin/$svc"
done
