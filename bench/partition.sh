#!/usr/bin/env bash
# A network partition between the host and PostgreSQL, measured end to end
# (BENCHMARKS.md, "A network gone between host and PostgreSQL").
#
#   sudo bench/partition.sh [ROUNDS] [LIMIT_S]
#
# No test on 127.0.0.1 can drop packets: the kernel acknowledges every
# keep-alive probe there. A network namespace can. The script runs a
# throw-away PostgreSQL cluster in a namespace of its own, at 10.200.0.2
# behind a veth pair, and the host in the machine's namespace. Each round:
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
# Needs root (`ip netns`, `runuser`) and PostgreSQL's server programs. The
# namespace, the cluster, the emulator and every file are removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
limit=${2:-300}

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
emulator_pid=""
locker_pid=""

cleanup() {
  set +e
  [ -n "$locker_pid" ] && kill "$locker_pid" 2>/dev/null
  [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null
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
echo "host partition connector 10.200.0.1/32 scram-sha-256" >>"$work/data/pg_hba.conf"
ip netns exec "$ns" runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/data" -l "$work/server/server.log" -w -s \
  -o "-h $server_ip -p 5432 -k $work/server -c fsync=off" start \
  || { cat "$work/server/server.log" >&2; exit 1; }
server_psql() { ip netns exec "$ns" "$pg_bin/psql" -h "$work/server" -U connector -v ON_ERROR_STOP=1 -At "$@"; }
server_psql postgres -c "CREATE DATABASE partition" >/dev/null

# The source, on 127.0.0.1: unaffected by the link.
"$emulator_bin" --devices 300 >"$work/emulator.out" 2>&1 &
emulator_pid=$!
until grep -q 'listening on' "$work/emulator.out"; do
  kill -0 "$emulator_pid" 2>/dev/null || { cat "$work/emulator.out" >&2; die "the emulator did not start"; }
  sleep 0.05
done
instance=$(grep -o 'http://[0-9.:]*' "$work/emulator.out" | head -n 1)

cat >"$work/connector.toml" <<EOF
database = "postgresql://connector@$server_ip:5432/partition?sslmode=disable"
database_password_env = "PARTITION_DB_PASSWORD"
[settings]
instance = "$instance"
[auth]
method = "basic"
username = "svc_exposure"
password_env = "SERVICENOW_PASSWORD"
[sync]
page_size = 50
partitions = 1
EOF
export PARTITION_DB_PASSWORD=$password SERVICENOW_PASSWORD=exposure
host_sync() { "$host_bin" sync --config "$work/connector.toml" "$@"; }

# Seconds since $1 (a `date +%s.%N`), to a tenth.
since() { awk -v t0="$1" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }'; }
count() { server_psql partition -c "$1"; }
host_sessions="SELECT count(*) FROM pg_stat_activity WHERE application_name = 'connector-host'"
sync_lock_holders="SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                   WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'connector-host'"

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
