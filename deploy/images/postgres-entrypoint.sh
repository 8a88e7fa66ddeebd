#!/bin/sh
# The part of the official postgres image's entrypoint the tests rely on: a cluster in $PGDATA on
# first start (superuser $POSTGRES_USER, host auth $POSTGRES_HOST_AUTH_METHOD, password
# $POSTGRES_PASSWORD), the database $POSTGRES_DB, the scripts in /docker-entrypoint-initdb.d
# (*.sh run, *.sql fed to psql, against a socket-only server), then the server as user postgres.
set -eu
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" != postgres ]; then exec "$@"; fi
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
user=${POSTGRES_USER:-postgres}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ "$auth" != trust ] && [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "docker-entrypoint: set POSTGRES_PASSWORD or POSTGRES_HOST_AUTH_METHOD=trust" >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-postgres}" >"$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --locale=C \
    --auth-local=trust --auth-host="$auth"
  rm -f "$pwfile"
  printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  db=${POSTGRES_DB:-$user}
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\"" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  if [ -n "$(ls -A /docker-entrypoint-initdb.d 2>/dev/null)" ]; then
    export POSTGRES_USER="$user" POSTGRES_DB="$db"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    for f in /docker-entrypoint-initdb.d/*; do
      case "$f" in
        *.sh) echo "docker-entrypoint: running $f" >&2; bash "$f" ;;
        *.sql) echo "docker-entrypoint: running $f" >&2
               psql -v ON_ERROR_STOP=1 --username "$user" --dbname "$db" -f "$f" ;;
        *) echo "docker-entrypoint: ignoring $f" >&2 ;;
      esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  fi
fi
exec "$@"
