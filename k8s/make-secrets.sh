#!/usr/bin/env bash
# make-secrets.sh [DIR]   (default: the secrets/ folder beside this script)
#
# Writes the keys and passwords kustomization.yaml turns into Secrets: an
# Ed25519 key pair per token issuer (storefront, order: PKCS#8 private key,
# SPKI public key), random passwords for each database's service role and
# superuser and for the storefront's first admin, and the services' TLS
# certificates in DIR/tls, laid out as `shopctl certs` lays them out: a CA
# (ca.pem, ca-key.pem) and per service <service>.pem and <service>-key.pem,
# ECDSA P-256, with the service's identity spiffe://shop/ns/$NAMESPACE/sa/<service>
# and DNS names (its logical name and its Services' names in $NAMESPACE).
# Needs only openssl. Existing files are kept: the databases were initialised
# with those passwords, every token in use was signed with those keys, and
# the services trust that CA. To renew a service's certificate (valid for
# CERT_DAYS days), delete its two files and run this again; a new CA (delete
# ca.pem) makes new certificates for all three.
#
# Env: NAMESPACE (shop; the namespace in kustomization.yaml), CERT_DAYS (365).
set -euo pipefail
DIR=${1:-"$(cd "$(dirname "$0")" && pwd)/secrets"}
NAMESPACE=${NAMESPACE:-shop}
CERT_DAYS=${CERT_DAYS:-365}
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

# TLS: a CA and a certificate per service, as server and as client.
tls=$DIR/tls
mkdir -p "$tls"
if [ ! -s "$tls/ca.pem" ] || [ ! -s "$tls/ca-key.pem" ]; then
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$tls/ca-key.pem" -out "$tls/ca.pem" -days 3650 -subj "/CN=shop services CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  rm -f "$tls"/productinfo.pem "$tls"/order.pem "$tls"/storefront.pem
fi
for svc in productinfo order storefront; do
  [ -s "$tls/$svc.pem" ] && [ -s "$tls/$svc-key.pem" ] && continue
  san="URI:spiffe://shop/ns/$NAMESPACE/sa/$svc,DNS:$svc"
  for name in "shop-$svc" "shop-$svc-headless"; do
    san="$san,DNS:$name,DNS:$name.$NAMESPACE,DNS:$name.$NAMESPACE.svc,DNS:$name.$NAMESPACE.svc.cluster.local"
  done
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$tls/$svc-key.pem" -subj "/CN=$svc" -out "$tls/$svc.csr" 2>/dev/null
  openssl x509 -req -in "$tls/$svc.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" -days "$CERT_DAYS" \
    -out "$tls/$svc.pem" -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$san") 2>/dev/null
  rm -f "$tls/$svc.csr"
done
echo "keys, passwords and certificates in $DIR (keep them; never commit them)" >&2
