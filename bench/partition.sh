#!/usr/bin/env bash
# A network partition between the host and PostgreSQL, measured end to end
# (BENCHMARKS.md, "A network gone between host and PostgreSQL").
#
#   sudo bench/partition.sh [sync] [ROUNDS] [LIMIT_S]
#   sudo bench/partition.sh worker [DOWN_S]
#
# No test on 127.0.0.1 can drop packets: the kernel acknowledges every
# keep-alive probe there. A network namespace can. The script runs a
# throw-away PostgreSQL cluster in a namespace of its own, at 10.200.0.2
# behind a veth pair, and the host in the machine's namespace.
#
# `sync` (the default): each round,
#
# 1. a session inside the namespace locks `records`;
# 2. `connector-host sync --full` of 300 devices (the emulator on 127.0.0.1)
#    blocks in its first commit;
# 3. the link goes down on the server's side, so that every packet between
#    host and server is dropped;
# 4. the script reports how long after that the sync exited, with its exit
#    code (75 expected: the database is unavailable for now), and how long
#    the server kept the host's sessions: the one holding the connection's
#    sync lock (idle, so ended once the server's keep-alive probes go
#    unanswered: about 60 s expected) and the one whose commit waits on the
#    lock (ended by the check the host asks for while a statement runs, a
#    few seconds later);
# 5. the link comes back, the lock goes, and the next sync must complete.
#
# A round gives up after LIMIT_S seconds (default 300) with the link down.
#
# `worker`: one `connector-host worker --once` (4 slots) syncs 3,000 devices
# (9,120 records; 50-row pages, 4 partitions per stream, 100 ms added to each
# request). Once 1,600 records are stored, the link goes down for DOWN_S
# seconds (default 120), longer than the partitions' leases. The script
# reports how the worker's run ended and whether the database holds each
# record of the source once: every stream's export, sorted, must equal that
# of a sync of the same source into SQLite.
#
# Needs root (`ip netns`, `runuser`) and PostgreSQL's server programs. The
# namespace, the cluster, the emulator and every file are removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=sync
case "${1:-}" in
  sync | worker) mode=$1; shift ;;
esac

die() { echo "partition.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root, for the network namespace; run it with sudo"
command -v ip >/dev/null || die "needs iproute2's 'ip' (apt-get install iproute2)"
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pg_bin/initdb" ] || die "needs PostgreSQL's server programs (apt-get install postgresql)"

cargo build --release -q -p connector-host -p servicenow-emulator
host_bin=$PWD/target/release/connector-host
emulator_bin=$PWD/target/release/servicenow-emulator

ns=connector-partition-$$
host_side=cph$$
server_side=cps$$
server_ip=10.200.0.2
work=$(mktemp -d /tmp/connector-partition.XXXXXX)
emulator_pids=()
locker_pid=""
worker_pid=""

cleanup() {
  set +e
  [ -n "$locker_pid" ] && kill "$locker_pid" 2>/dev/null
  [ -n "$worker_pid" ] && kill "$worker_pid" 2>/dev/null
  for pid in "${emulator_pids[@]}"; do kill "$pid" 2>/dev/null; done
  if [ -d "$work/data" ]; then
    ip netns exec "$ns" runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/data" -m immediate -s stop 2>/dev/null
  fi
  ip netns del "$ns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The namespace and the link between it and the machine.
ip netns add "$ns"
ip link add "$host_side" type veth peer name "$server_side"
ip link set "$server_side" netns "$ns"
ip addr add 10.200.0.1/24 dev "$host_side"
ip link set "$host_side" up
ip netns exec "$ns" ip addr add "$server_ip/24" dev "$server_side"
ip netns exec "$ns" ip link set "$server_side" up
ip netns exec "$ns" ip link set lo up
link() { ip netns exec "$ns" ip link set "$server_side" "$1"; }

# The cluster: password over TCP (the host), trust on its socket (this script).
password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
mkdir -p "$work/server" "$work/data"
chmod 755 "$work"
chmod 700 "$work/data"
(umask 077 && printf '%s\n' "$password" > "$work/password")
chown -R postgres "$work/server" "$work/data" "$work/password"
runuser -u postgres -- "$pg_bin/initdb" -D "$work/data" -U connector --pwfile="$work/password" \
  --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C --no-sync >"$work/initdb.log" 2>&1 \
  || { cat "$work/initdb.log" >&2; exit 1; }
rm -f "$work/password"
echo "host all connector 10.200.0.1/32 scram-sha-256" >>"$work/data/pg_hba.conf"
ip netns exec "$ns" runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/data" -l "$work/server/server.log" -w -s \
  -o "-h $server_ip -p 5432 -k $work/server -c fsync=off" start \
  || { cat "$work/server/server.log" >&2; exit 1; }
server_psql() { ip netns exec "$ns" "$pg_bin/psql" -h "$work/server" -U connector -v ON_ERROR_STOP=1 -At "$@"; }

# Starts an emulator on 127.0.0.1 (unaffected by the link) with the given
# options, its output in $work/$1.out; sets `emulator_url`.
start_emulator() {
  local name=$1 pid
  shift
  "$emulator_bin" "$@" >"$work/$name.out" 2>&1 &
  pid=$!
  emulator_pids+=("$pid")
  until grep -q 'listening on' "$work/$name.out"; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/$name.out" >&2; die "the emulator did not start"; }
    sleep 0.05
  done
  emulator_url=$(grep -o 'http://[0-9.:]*' "$work/$name.out" | head -n 1)
}

# Writes a connection file: $1 the file, $2 the database, $3 the instance,
# then lines for its [sync] table.
connection_file() {
  local file=$1 database=$2 instance=$3
  shift 3
  {
    printf 'database = "%s"\n' "$database"
    case "$database" in
      postgresql:*) echo 'database_password_env = "PARTITION_DB_PASSWORD"' ;;
    esac
    printf '[settings]\ninstance = "%s"\n' "$instance"
    printf '[auth]\nmethod = "basic"\nusername = "svc_exposure"\npassword_env = "SERVICENOW_PASSWORD"\n'
    echo '[sync]'
    printf '%s\n' "$@"
  } >"$file"
}
export PARTITION_DB_PASSWORD=$password SERVICENOW_PASSWORD=exposure
server_url() { echo "postgresql://connector@$server_ip:5432/$1?sslmode=disable"; }
host_sync() { "$host_bin" sync --config "$work/connector.toml" "$@"; }

# Seconds since $1 (a `date +%s.%N`), to a tenth.
since() { awk -v t0="$1" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }'; }
count() { server_psql "${database:-partition}" -c "$1"; }
host_sessions="SELECT count(*) FROM pg_stat_activity WHERE application_name = 'connector-host'"
sync_lock_holders="SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                   WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'connector-host'"

# The `sync` rounds: ROUNDS (default 2), each given up after LIMIT_S seconds
# (default 300) with the link down.
sync_rounds() {
  local rounds=${1:-2} limit=${2:-300} instance round sync_pid down_at code started
  local sync_result lock_result sessions_result
  server_psql postgres -c "CREATE DATABASE partition" >/dev/null
  start_emulator sync --devices 300
  instance=$emulator_url
  connection_file "$work/connector.toml" "$(server_url partition)" "$instance" "page_size = 50" "partitions = 1"
  host_sync >/dev/null 2>"$work/first.err" || { cat "$work/first.err" >&2; die "the first sync failed"; }
  echo "cluster at $server_ip (PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}')), source $instance, $rounds round(s)"
  for round in $(seq 1 "$rounds"); do
    link up
    server_psql partition -c "BEGIN; LOCK TABLE records IN EXCLUSIVE MODE; SELECT pg_sleep($limit + 120)" \
      >/dev/null 2>&1 &
    locker_pid=$!
    until [ "$(count "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                       WHERE c.relname = 'records' AND l.mode = 'ExclusiveLock' AND l.granted")" = 1 ]; do
      sleep 0.05
    done
    host_sync --full >"$work/round.out" 2>"$work/round.err" &
    sync_pid=$!
    until [ "$(count "$host_sessions AND wait_event_type = 'Lock'")" -ge 1 ]; do
      kill -0 "$sync_pid" 2>/dev/null || { cat "$work/round.err" >&2; die "round $round: the sync ended before it waited on the lock"; }
      sleep 0.05
    done
    echo "round $round: the sync waits in a commit; host keep-alive timers: $(ss -tio dst "$server_ip" | grep -o 'timer:([^)]*)' | sort -u | tr '\n' ' ')"
    down_at=$(date +%s.%N)
    link down
    sync_result="" lock_result="" sessions_result=""
    while [ -z "$sync_result" ] || [ -z "$lock_result" ] || [ -z "$sessions_result" ]; do
      if [ -z "$sync_result" ] && ! kill -0 "$sync_pid" 2>/dev/null; then
        code=0; wait "$sync_pid" || code=$?
        sync_result="exit $code after $(since "$down_at") s"
      fi
      if [ -z "$lock_result" ] && [ "$(count "$sync_lock_holders")" = 0 ]; then
        lock_result="ended after $(since "$down_at") s"
      fi
      if [ -z "$sessions_result" ] && [ "$(count "$host_sessions")" = 0 ]; then
        sessions_result="ended after $(since "$down_at") s"
      fi
      if awk -v t="$(since "$down_at")" -v l="$limit" 'BEGIN { exit !(t >= l) }'; then
        sync_result=${sync_result:-"still running after $limit s"}
        lock_result=${lock_result:-"still held after $limit s"}
        sessions_result=${sessions_result:-"still there after $limit s"}
      fi
      sleep 0.1
    done
    echo "round $round: the sync: $sync_result: $(tail -n 1 "$work/round.err")"
    echo "round $round: the server's session holding the sync lock: $lock_result"
    echo "round $round: the server's last session of the host (the waiting commit's): $sessions_result"
    link up
    kill "$locker_pid" 2>/dev/null || true
    server_psql partition -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                              WHERE query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()" >/dev/null
    wait "$locker_pid" 2>/dev/null || true
    locker_pid=""
    if kill -0 "$sync_pid" 2>/dev/null; then
      code=0; wait "$sync_pid" || code=$?
      echo "round $round: after the link came back, the sync exited $code"
    fi
    started=$(date +%s.%N)
    host_sync >"$work/next.out" 2>"$work/next.err" || { cat "$work/next.err" >&2; die "round $round: the next sync failed"; }
    echo "round $round: the next sync completed in $(since "$started") s:"; grep -v "^warning" "$work/next.out" | sed "s/^/  /"
  done
}

# The `worker` round: the link down for DOWN_S seconds (default 120) in the
# middle of a worker's run.
worker_round() {
  local down_s=${1:-120} database=partition_worker instance down_at code first stream ours reference
  server_psql postgres -c "CREATE DATABASE $database" >/dev/null
  start_emulator worker --devices 3000 --latency-ms 100
  instance=$emulator_url
  mkdir "$work/deployment"
  connection_file "$work/deployment/cmdb.toml" "$(server_url "$database")" "$instance" \
    "page_size = 50" "partitions = 4"
  echo "cluster at $server_ip (PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}')), source $instance"
  "$host_bin" worker --config-dir "$work/deployment" --id w1 --once >"$work/worker.out" 2>"$work/worker.err" &
  worker_pid=$!
  until [ "$(count "SELECT count(*) FROM records" 2>/dev/null || echo 0)" -ge 1600 ]; do
    kill -0 "$worker_pid" 2>/dev/null || { cat "$work/worker.err" >&2; die "the worker ended before 1,600 records were stored"; }
    sleep 0.1
  done
  down_at=$(date +%s.%N)
  link down
  echo "the link went down with $(count "SELECT count(*) FROM records") records stored"
  sleep "$down_s"
  link up
  echo "the link came back after $(since "$down_at") s"
  code=0; wait "$worker_pid" || code=$?
  worker_pid=""
  echo "the worker exited $code, $(since "$down_at") s after the link went down:"
  sed "s/^/  /" "$work/worker.out"
  first=$(grep -m 1 ' WARN ' "$work/worker.err" | cut -d ' ' -f 1)
  if [ -n "$first" ]; then
    echo "its first warning came $(awk -v t0="$down_at" -v t1="$(date -d "$first" +%s.%N)" \
      'BEGIN { printf "%.1f", t1 - t0 }') s after the link went down; its warnings, by what they say:"
    grep -o 'WARN [a-z_:]*: [^(;,]*' "$work/worker.err" | sed -E 's/partition [0-9]+/partition N/' \
      | sort | uniq -c | sed "s/^/  /"
  fi
  # The same source into SQLite: what each stream must hold.
  connection_file "$work/reference.toml" "$work/reference.db" "$instance" "page_size = 50" "partitions = 4"
  "$host_bin" sync --config "$work/reference.toml" >/dev/null 2>"$work/reference.err" \
    || { cat "$work/reference.err" >&2; die "the reference sync into SQLite failed"; }
  for stream in devices network_adapters business_applications; do
    "$host_bin" export --config "$work/deployment/cmdb.toml" --stream "$stream" | sort >"$work/ours.jsonl"
    "$host_bin" export --config "$work/reference.toml" --stream "$stream" | sort >"$work/reference.jsonl"
    ours=$(wc -l <"$work/ours.jsonl")
    reference=$(wc -l <"$work/reference.jsonl")
    if cmp -s "$work/ours.jsonl" "$work/reference.jsonl"; then
      echo "$stream: $ours records, each once, as the source has them"
    else
      echo "$stream: $ours records against the source's $reference: NOT the same"
      code=1
    fi
  done
  return "$code"
}

case "$mode" in
  sync) sync_rounds "$@" ;;
  worker) worker_round "$@" ;;
esac
