#!/usr/bin/env bash
# make-secrets.sh [DIR]   (default: the secrets/ folder beside this script)
#
# Writes the keys and passwords kustomization.yaml turns into Secrets: an
# Ed25519 key pair per token issuer (storefront, order: PKCS#8 private key,
# SPKI public key) and random passwords for each database's service role and
# superuser and for the storefront's first admin. Needs only openssl.
# Existing files are kept: the databases were initialised with those
# passwords, and every token in use was signed with those keys.
set -euo pipefail
DIR=${1:-"$(cd "$(dirname "$0")" && pwd)/secrets"}
umask 077
mkdir -p "$DIR"

for issuer in storefront order; do
  if [ ! -s "$DIR/$issuer.key" ]; then
    openssl genpkey -algorithm ed25519 -out "$DIR/$issuer.key"
    rm -f "$DIR/$issuer.pub"
  fi
  [ -s "$DIR/$issuer.pub" ] || openssl pkey -in "$DIR/$issuer.key" -pubout -out "$DIR/$issuer.pub"
done
for f in productinfo-db-password productinfo-postgres-password order-db-password \
         order-postgres-password storefront-db-password storefront-postgres-password \
         storefront-admin-password; do
  [ -s "$DIR/$f" ] || openssl rand -hex 24 | tr -d '\n' > "$DIR/$f"
done
echo "keys and passwords in $DIR (keep them; never commit them)" >&2
