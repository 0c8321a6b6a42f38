#!/bin/bash
# First start on an empty PGDATA: initdb with POSTGRES_USER and POSTGRES_PASSWORD, create POSTGRES_DB through a
# temporary server on the socket only (as the official image does), then run postgres as PID 1 as `postgres`.
set -euo pipefail
file_env() {
  local var="$1" file="${1}_FILE" def="${2:-}"
  if [ -n "${!file:-}" ]; then export "$var"="$(<"${!file}")"; else export "$var"="${!var:-$def}"; fi
  unset "$file"
}
if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown 999:999 "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  exec setpriv --reuid=999 --regid=999 --init-groups "$BASH_SOURCE" "$@"
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  file_env POSTGRES_USER postgres
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_DB "$POSTGRES_USER"
  [ -n "$POSTGRES_PASSWORD" ] || { echo "entrypoint: POSTGRES_PASSWORD is not set" >&2; exit 1; }
  echo "entrypoint: initialising $PGDATA"
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
      -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
  fi
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "entrypoint: initialised"
fi
[ "${1:-}" = postgres ] && set -- "$@" -c listen_addresses='*'
exec "$@"
