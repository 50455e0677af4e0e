#!/bin/sh
# secrets.sh read|generate|write
#
# The three steps of the Job <release>-secrets (templates/secrets-job.yaml), a
# pre-install/pre-upgrade hook that makes, once, the keys and passwords no
# value supplies. Each step runs in its own container; they share the
# in-memory directory $WORK:
#   read      (kubectl) notes which planned objects exist, copies the existing
#             signing keys and the current public keys into $WORK
#   generate  (openssl) makes what is missing: an Ed25519 key per issuer
#             (PKCS#8 "PRIVATE KEY" PEM), 48 hex characters per password; and
#             derives each issuer's public key (SPKI "PUBLIC KEY" PEM)
#   write     (kubectl) creates each missing Secret (`kubectl create`: an
#             existing Secret is never replaced), then creates the public-key
#             ConfigMap, or replaces it when it no longer matches the keys
# $PLAN_DIR/plan says what to make, one object a line:
#   password SECRET KEY...           a Secret of random passwords
#   key ISSUER SECRET                a Secret with the issuer's private.pem
#   public-keys CONFIGMAP ISSUER...  <issuer>.pem of each issuer: derived from
#                                    its key line, else $PLAN_DIR/<issuer>.pem
#                                    (a publicKey value)
# $PLAN_DIR/labels holds the created objects' labels. Nothing secret is
# printed. Safe to run again at any point: what exists is left alone.
set -eu
: "${WORK:?}" "${PLAN_DIR:?}" "${NAMESPACE:?}"
umask 077

k() { kubectl --namespace "$NAMESPACE" "$@"; }
plan() { grep -E '^(password|key|public-keys) ' "$PLAN_DIR/plan"; }
# exists KIND NAME: whether it exists; any error but NotFound stops the Job.
exists() {
  found=$(k get "$1" "$2" --ignore-not-found -o name) || { echo "cannot read $1 $2" >&2; exit 1; }
  [ -n "$found" ]
}

read_step() {
  mkdir -p "$WORK/exists" "$WORK/keys" "$WORK/current"
  plan | while read -r what name arg rest; do
    case $what in
      password)
        if exists secret "$name"; then : > "$WORK/exists/$name"; echo "Secret $name exists: kept"; fi ;;
      key)
        issuer=$name name=$arg
        if exists secret "$name"; then
          pem=$(k get secret "$name" -o 'jsonpath={.data.private\.pem}')
          printf '%s' "$pem" | base64 -d > "$WORK/keys/$issuer.pem"
          if [ ! -s "$WORK/keys/$issuer.pem" ]; then
            echo "Secret $name exists without private.pem: delete it to make a new key" >&2
            exit 1
          fi
          : > "$WORK/exists/$name"
          echo "Secret $name exists: kept"
        fi ;;
      public-keys)
        if exists configmap "$name"; then
          for issuer in $arg $rest; do
            k get configmap "$name" -o "jsonpath={.data.$issuer\\.pem}" > "$WORK/current/$issuer.pem"
          done
          : > "$WORK/exists/$name"
        fi ;;
    esac
  done
}

generate_step() {
  mkdir -p "$WORK/new" "$WORK/public"
  plan | while read -r what name arg rest; do
    case $what in
      password)
        [ -e "$WORK/exists/$name" ] && continue
        mkdir -p "$WORK/new/$name"
        for key in $arg $rest; do
          openssl rand -hex 24 | tr -d '\n' > "$WORK/new/$name/$key"
        done ;;
      key)
        issuer=$name name=$arg
        if [ ! -e "$WORK/exists/$name" ]; then
          openssl genpkey -algorithm ed25519 -out "$WORK/keys/$issuer.pem"
          mkdir -p "$WORK/new/$name"
          cp "$WORK/keys/$issuer.pem" "$WORK/new/$name/private.pem"
        fi
        openssl pkey -in "$WORK/keys/$issuer.pem" -pubout -out "$WORK/public/$issuer.pem" ;;
    esac
  done
}

# object KIND NAME: the head of a manifest of what this Job makes.
object() {
  printf 'apiVersion: v1\nkind: %s\nmetadata:\n  name: %s\n  labels:\n' "$1" "$2"
  sed 's/^/    /' "$PLAN_DIR/labels"
  printf '  annotations:\n    shop.grpc-shop.dev/made-by: "the secrets Job of the shop chart; never replaced"\n'
}

write_step() {
  for dir in "$WORK"/new/*; do
    [ -d "$dir" ] || continue
    name=${dir##*/}
    {
      object Secret "$name"
      printf 'type: Opaque\ndata:\n'
      for f in "$dir"/*; do
        printf '  %s: %s\n' "${f##*/}" "$(base64 < "$f" | tr -d '\n')"
      done
    } > "$WORK/object.yaml"
    k create -f "$WORK/object.yaml"
  done
  plan | while read -r what name issuers; do
    [ "$what" = public-keys ] || continue
    same=yes
    {
      object ConfigMap "$name"
      printf 'data:\n'
      for issuer in $issuers; do
        pem=$WORK/public/$issuer.pem
        [ -e "$pem" ] || pem=$PLAN_DIR/$issuer.pem
        cmp -s "$pem" "$WORK/current/$issuer.pem" || same=no
        printf '  %s.pem: |\n' "$issuer"
        sed 's/^/    /' "$pem"
      done
    } > "$WORK/object.yaml"
    if [ ! -e "$WORK/exists/$name" ]; then
      k create -f "$WORK/object.yaml"
    elif [ "$same" = no ]; then
      k replace -f "$WORK/object.yaml"
    else
      echo "ConfigMap $name matches the keys: kept"
    fi
  done
}

case ${1:-} in
  read) read_step ;;
  generate) generate_step ;;
  write) write_step ;;
  *) echo "usage: $0 read|generate|write" >&2; exit 2 ;;
esac
