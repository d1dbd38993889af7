#!/usr/bin/env bash
# Runs the service on a Citus cluster on this machine and its REST API flows against it.
#
#   bash tests/citus/run.sh [path/to/points]      (default: target/release/points, built if missing)
#
# 1. Builds and installs Citus 13.2.2 into PostgreSQL 15 if it is missing (../shared/vendor/citus/build.sh, ~2.5 min).
# 2. Starts a coordinator (127.0.0.1:25432) and two workers (25433, 25434) in a temporary folder, with schema-based
#    sharding on: every merchant schema the service creates becomes a distributed schema, placed on a worker.
# 3. Runs `points` on the coordinator (gRPC 25051, REST 25030) and the REST flows of tests/citus/flows.py:
#    merchants, keys, earn/spend with replays, rules, balances, audit verification.
# 4. Shows where the merchant schemas landed (citus_schemas, citus_shards), moves one merchant's schema to the other
#    worker with citus_move_shard_placement, and runs that merchant's flows again.
# 5. Restarts the server (a start migrates every tenant schema: a no-op) and checks it serves.
# Everything it started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
points=${1:-${CARGO_TARGET_DIR:-target}/release/points}
shared=${SHARED_DIR:-$root/../shared}
pgbin=/usr/lib/postgresql/15/bin
# Fixed ports below the kernel's ephemeral range (32768-60999 here), so that no client socket of an earlier step
# can hold one of them when a node starts.
coordinator_port=25432
worker_ports=(25433 25434)
grpc_port=25051
http_port=25030

if [ ! -f /usr/lib/postgresql/15/lib/citus.so ]; then
    echo "== building Citus (missing)"
    apt-get update -qq
    bash "$shared/vendor/citus/build.sh"
fi
if [ ! -x "$points" ]; then
    cargo build --release --bin points
fi

work=$(mktemp -d /tmp/points-citus.XXXXXX)
chown postgres "$work"
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    if [ -n "${CITUS_KEEP:-}" ]; then
        echo "CITUS_KEEP: the cluster is still running in $work (stop: pg_ctl -D $work/<port> stop)"
        return
    fi
    for port in "$coordinator_port" "${worker_ports[@]}"; do
        [ -d "$work/$port" ] && runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/$port" -m fast stop >/dev/null 2>&1
    done
    rm -rf "$work"
}
trap cleanup EXIT

psql_on() {
    local port=$1
    shift
    psql -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -Atq "$@"
}

echo "== starting a Citus coordinator on $coordinator_port and workers on ${worker_ports[*]}"
for port in "$coordinator_port" "${worker_ports[@]}"; do
    runuser -u postgres -- "$pgbin/initdb" -D "$work/$port" -U postgres --auth=trust >/dev/null
    cat >>"$work/$port/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
shared_preload_libraries = 'citus'
wal_level = logical
max_connections = 200
max_wal_senders = 20
max_replication_slots = 20
fsync = off
CONF
    if ! runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/$port" -l "$work/$port.log" -w start >/dev/null; then
        tail -20 "$work/$port.log" >&2
        exit 1
    fi
    psql_on "$port" -d postgres -c "CREATE DATABASE points"
    psql_on "$port" -d points -c "CREATE EXTENSION citus"
done
psql_on "$coordinator_port" -d points >/dev/null <<SQL
SELECT citus_set_coordinator_host('127.0.0.1', $coordinator_port);
SELECT citus_add_node('127.0.0.1', ${worker_ports[0]});
SELECT citus_add_node('127.0.0.1', ${worker_ports[1]});
ALTER DATABASE points SET citus.enable_schema_based_sharding = on;
SQL
psql_on "$coordinator_port" -d points -c "SELECT 'citus ' || extversion FROM pg_extension WHERE extname = 'citus'"
psql_on "$coordinator_port" -d points -c "SELECT count(*) || ' workers' FROM citus_get_active_worker_nodes()"

admin_key=$("$points" admin make-key)
start_server() {
    DATABASE_URL="postgres://postgres@127.0.0.1:$coordinator_port/points" \
        POINTS_GRPC_ADDR="127.0.0.1:$grpc_port" POINTS_HTTP_ADDR="127.0.0.1:$http_port" \
        POINTS_KEY_HASH_SECRET=citus-run-key-hash-secret-0123456789abcdef \
        POINTS_BOOTSTRAP_ADMIN_KEY="$admin_key" POINTS_LOG_FORMAT=json RUST_LOG=warn \
        "$points" serve >"$work/server.log" 2>&1 &
    server_pid=$!
    local started=$SECONDS
    until POINTS_GRPC_ADDR="127.0.0.1:$grpc_port" RUST_LOG=off "$points" healthcheck >/dev/null 2>&1; do
        if ! kill -0 "$server_pid" 2>/dev/null || [ $((SECONDS - started)) -gt 120 ]; then
            echo "the server did not start on Citus:" >&2
            tail -50 "$work/server.log" >&2
            exit 1
        fi
        sleep 0.3
    done
    echo "server up after $((SECONDS - started)) s"
}
stop_server() {
    kill "$server_pid"
    wait "$server_pid" || { echo "the server did not stop cleanly" >&2; tail -30 "$work/server.log" >&2; exit 1; }
    server_pid=
}

echo "== the service on the coordinator"
start_server
echo "== REST flows"
flows() {
    if ! python3 tests/citus/flows.py "http://127.0.0.1:$http_port" "$admin_key" "$1" >"$work/flows.out"; then
        cat "$work/flows.out"
        echo "-- server log:" >&2
        grep -v '"level":"INFO"' "$work/server.log" | tail -20 >&2
        exit 1
    fi
    grep -v '^MERCHANTS' "$work/flows.out"
}
flows 4

echo "== where the merchant schemas landed"
psql_on "$coordinator_port" -d points -P pager=off -A -F ' | ' <<'SQL'
SELECT 'schema | colocation | size | node';
SELECT s.schema_name, s.colocation_id, s.schema_size, min(sh.nodename || ':' || sh.nodeport)
FROM citus_schemas s JOIN citus_shards sh ON sh.colocation_id = s.colocation_id
GROUP BY 1, 2, 3 ORDER BY 1;
SQL
distributed=$(psql_on "$coordinator_port" -d points -c "SELECT count(*) FROM citus_schemas")
merchants=$(psql_on "$coordinator_port" -d points -c "SELECT count(*) FROM public.merchants")
echo "distributed schemas: $distributed, merchants: $merchants"
[ "$distributed" = "$merchants" ] || { echo "every merchant schema must be distributed" >&2; exit 1; }
local_tables=$(psql_on "$coordinator_port" -d points -c \
    "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'")
echo "public tables (coordinator-local): $local_tables"

echo "== moving one merchant's schema to the other worker (citus_move_shard_placement)"
first_merchant=$(grep '^MERCHANTS' "$work/flows.out" | cut -d' ' -f2)
merchant_id=${first_merchant%%=*}
merchant_key=${first_merchant#*=}
schema="merchant_${merchant_id//-/}"
read -r from_port shard_count < <(psql_on "$coordinator_port" -d points -F ' ' -c \
    "SELECT min(sh.nodeport), count(*) FROM citus_schemas s JOIN citus_shards sh USING (colocation_id)
     WHERE s.schema_name = '$schema'::regnamespace")
to_port=${worker_ports[0]}
[ "$from_port" = "$to_port" ] && to_port=${worker_ports[1]}
moved_started=$(date +%s%N)
psql_on "$coordinator_port" -d points -c \
    "SELECT citus_move_shard_placement(sh.shardid, '127.0.0.1', $from_port, '127.0.0.1', $to_port, 'block_writes')
     FROM citus_schemas s JOIN citus_shards sh USING (colocation_id)
     WHERE s.schema_name = '$schema'::regnamespace
     ORDER BY sh.shardid LIMIT 1" >/dev/null
moved_ms=$(( ($(date +%s%N) - moved_started) / 1000000 ))
now_port=$(psql_on "$coordinator_port" -d points -c \
    "SELECT string_agg(DISTINCT sh.nodeport::text, ',') FROM citus_schemas s JOIN citus_shards sh USING (colocation_id)
     WHERE s.schema_name = '$schema'::regnamespace")
echo "$schema: $shard_count tables moved together from :$from_port to :$now_port in $moved_ms ms"
[ "$now_port" = "$to_port" ] || { echo "the schema did not move" >&2; exit 1; }
python3 - "http://127.0.0.1:$http_port" "$merchant_key" <<'PY'
import json, sys, urllib.request
base, key = sys.argv[1], sys.argv[2]
def call(method, path, body=None):
    request = urllib.request.Request(base + path, method=method, headers={"x-api-key": key, "content-type": "application/json"},
                                     data=json.dumps(body).encode() if body else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]
earned = call("POST", "/api/v1/points/earn", {"uid": "alice", "points": 5, "idempotency_key": "after-move"})
assert earned["balance"] == 80, earned
assert call("GET", "/api/v1/points/accounts/alice")["balance"] == 80
assert call("GET", "/api/v1/audit-logs/verify")["ok"] is True
print("ok   after the move: earn, balance 80, audit chain verified")
PY

echo "== restart: every tenant schema is migrated again at start (a no-op)"
stop_server
start_server
flows 1
stop_server
echo "== Citus run passed"
