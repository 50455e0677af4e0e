#!/bin/bash
# TEST STAND-IN for the official postgres image's entrypoint, used only in the
# local image of the podman kube play test. Honours what the chart uses:
# POSTGRES_USER, POSTGRES_PASSWORD_FILE, PGDATA and the scripts in
# /docker-entrypoint-initdb.d (sourced once, on first start, with the server up).
set -euo pipefail
: "${PGDATA:?}" "${POSTGRES_USER:=postgres}"
if [ "${1:-postgres}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"; chmod 700 "$PGDATA"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$POSTGRES_PASSWORD_FILE" \
         --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -k /var/run/postgresql" start >/dev/null
  export PGHOST=/var/run/postgresql
  for f in /docker-entrypoint-initdb.d/*.sh; do
    [ -e "$f" ] || continue
    echo "running $f"
    # shellcheck disable=SC1090
    . "$f"
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  unset PGHOST
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -k /var/run/postgresql
