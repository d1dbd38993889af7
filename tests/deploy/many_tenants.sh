#!/usr/bin/env bash
# Many tenants on one PostgreSQL: prints the figures of docs/SCALING.md ("Many tenants").
#
#   bash tests/deploy/many_tenants.sh [points binary] [loadgen binary]
#
# 1. Registers MERCHANTS (default 1,000) merchants one after another over REST: time per registration (p50, p99).
# 2. Restarts the server: start-up migration of every tenant schema when nothing is pending (a no-op; target 30 s).
# 3. Makes the newest tenant migration pending again in every schema (its history row deleted and its function
#    dropped, as if the build had just added it) and restarts: start-up with one new migration in every schema.
# 4. With the loadgen binary: earn throughput spread over 100 merchants, then on one merchant.
# Uses its own database (dropped at the end) on 127.0.0.1:5432 and ports 25151 (gRPC) and 25130 (REST).
set -euo pipefail
cd "$(dirname "$0")/../.."
points=${1:-${CARGO_TARGET_DIR:-target}/release/points}
loadgen=${2:-}
merchants=${MERCHANTS:-1000}
database=points_tenants_$$
work=$(mktemp -d /tmp/points-tenants.XXXXXX)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    psql -h 127.0.0.1 -U postgres -d postgres -q -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" || true
    rm -rf "$work"
}
trap cleanup EXIT

admin_key=$("$points" admin make-key)
start_server() {
    local started
    started=$(date +%s%N)
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/$database" POINTS_GRPC_ADDR=127.0.0.1:25151 \
        POINTS_HTTP_ADDR=127.0.0.1:25130 POINTS_KEY_HASH_SECRET=tenants-run-key-hash-secret-0123456789abcdef \
        POINTS_BOOTSTRAP_ADMIN_KEY="$admin_key" POINTS_LOG_FORMAT=json RUST_LOG=info \
        "$points" serve >"$work/server.log" 2>&1 &
    server_pid=$!
    until POINTS_GRPC_ADDR=127.0.0.1:25151 RUST_LOG=off "$points" healthcheck >/dev/null 2>&1; do
        kill -0 "$server_pid" 2>/dev/null || { tail -20 "$work/server.log" >&2; exit 1; }
        sleep 0.05
    done
    echo "$1: serving after $(( ($(date +%s%N) - started) / 1000000 )) ms;" \
        "$(grep -o '"elapsed_ms":[0-9]*,"migrated":[0-9]*,"failed":[0-9]*' "$work/server.log" | tail -1)"
}
stop_server() {
    kill "$server_pid" && wait "$server_pid"
    server_pid=
}

start_server "first start (empty database)"
python3 - "$merchants" "$admin_key" <<'PY'
import http.client, json, statistics, sys, time, uuid
count, admin = int(sys.argv[1]), sys.argv[2]
connection = http.client.HTTPConnection("127.0.0.1", 25130, timeout=60)
run, took = uuid.uuid4().hex[:6], []
started = time.monotonic()
for index in range(count):
    body = json.dumps({"slug": f"t-{run}-{index}", "name": f"Tenant {index}"})
    began = time.monotonic()
    connection.request("POST", "/api/v1/merchants", body, {"x-api-key": admin, "content-type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    took.append((time.monotonic() - began) * 1000)
    if response.status != 201:
        sys.exit(f"registration {index}: {response.status} {payload[:300]}")
took.sort()
print(f"registered {count} merchants in {time.monotonic() - started:.1f} s: p50 {took[len(took) // 2]:.1f} ms, "
      f"p99 {took[int(len(took) * 0.99) - 1]:.1f} ms, max {took[-1]:.1f} ms, mean {statistics.mean(took):.1f} ms")
PY
stop_server
start_server "restart with $merchants tenant schemas, nothing pending"
stop_server

newest=$(ls migrations/tenant | sed -E 's/^V([0-9]+)__.*/\1/' | sort -n | tail -1)
function_name=$(sed -nE 's/^CREATE FUNCTION ([a-z_]+)\(.*/\1/p' migrations/tenant/V${newest}__*.sql | head -1)
[ -n "$function_name" ] || { echo "the newest tenant migration V$newest creates no function to undo" >&2; exit 1; }
psql -h 127.0.0.1 -U postgres -d "$database" -v ON_ERROR_STOP=1 -q <<SQL
DO \$\$
DECLARE s text;
BEGIN
  FOR s IN SELECT schema_name FROM public.tenant_migrations LOOP
    EXECUTE format('DELETE FROM %I.refinery_schema_history WHERE version = $newest', s);
    EXECUTE format('DROP FUNCTION %I.$function_name', s);
  END LOOP;
  UPDATE public.tenant_migrations SET version = $newest - 1;
END \$\$;
SQL
start_server "restart with V$newest pending in $merchants tenant schemas"
pending=$(psql -h 127.0.0.1 -U postgres -d "$database" -Atq -c \
    "SELECT count(*) FROM public.tenant_migrations WHERE version < $newest OR error IS NOT NULL")
echo "tenant schemas still behind after the start: $pending"
[ "$pending" = 0 ]

if [ -n "$loadgen" ]; then
    for spread in 100 1; do
        echo "earn over $spread merchant(s):"
        "$loadgen" --admin-key "$admin_key" --grpc http://127.0.0.1:25151 --merchants "$spread" \
            --concurrency 32 --duration-secs 10 --uids distinct | grep -E 'throughput|error'
    done
fi
stop_server
