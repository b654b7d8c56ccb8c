#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the tests, on 127.0.0.1 only, in a
# temporary directory, with a random password (SCRAM) and no fsync (with
# DURABLE=1, PostgreSQL's own durable defaults: for benchmarks).
#
#   eval "$(tools/postgres-cluster.sh start)"
#       starts one and prints the variables the tests read:
#       CONNECTOR_TEST_POSTGRES (postgresql://connector@127.0.0.1:PORT/postgres),
#       CONNECTOR_TEST_POSTGRES_PASSWORD and CONNECTOR_TEST_POSTGRES_DIR;
#   tools/postgres-cluster.sh stop "$CONNECTOR_TEST_POSTGRES_DIR"
#       stops it and removes the directory.
#
# PostgreSQL's server refuses to run as root: as root, the cluster belongs
# to the `postgres` user the Debian package creates. PostgreSQL is installed
# with apt-get when missing.
set -euo pipefail

bindir() {
  if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  local newest
  newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$newest" ]; then
    local as_root=""
    if [ "$(id -u)" != 0 ]; then as_root="sudo"; fi
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 \
      || { $as_root apt-get update -q >&2 \
        && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
    newest=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$newest"
}

# Runs a server program as the cluster's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  local bin dir port password
  bin=$(bindir)
  dir=$(mktemp -d /tmp/connector-postgres.XXXXXX)
  chmod 700 "$dir"
  password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  (umask 077 && printf '%s\n' "$password" > "$dir/password")
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir"; fi
  as_owner "$bin/initdb" -D "$dir/data" -U connector --pwfile="$dir/password" \
    -A scram-sha-256 -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  rm -f "$dir/password"
  local speed="-c fsync=off -c full_page_writes=off"
  if [ "${DURABLE:-0}" = 1 ]; then speed=""; fi
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -s \
    -o "-h 127.0.0.1 -p $port -k $dir $speed -c max_connections=200" start >&2 \
    || { cat "$dir/server.log" >&2; exit 1; }
  echo "export CONNECTOR_TEST_POSTGRES=postgresql://connector@127.0.0.1:$port/postgres"
  echo "export CONNECTOR_TEST_POSTGRES_PASSWORD=$password"
  echo "export CONNECTOR_TEST_POSTGRES_DIR=$dir"
}

stop() {
  local dir=$1
  [ -d "$dir/data" ] || return 0
  as_owner "$(bindir)/pg_ctl" -D "$dir/data" -m immediate -s stop >&2 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:?the cluster directory}" ;;
  *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
