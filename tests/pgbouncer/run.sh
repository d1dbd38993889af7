#!/usr/bin/env bash
# The API suite's main flows through pgbouncer in transaction pooling mode (Debian's package), as a deployment of
# several replicas behind one pgbouncer runs: every test server's pool connects to pgbouncer
# (POINTS_DATABASE_POOL_MODE=transaction), and only LISTEN/NOTIFY and the session defaults take a direct connection
# (POINTS_LISTEN_DATABASE_URL). pgbouncer 1.18 keeps no prepared statement across transactions and refuses startup
# options, so a statement that relied on either fails here. Afterwards pgbouncer's own counters must show the
# traffic went through it.
#
# Usage: bash tests/pgbouncer/run.sh [test name filters...]   (default: the main flows)
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth for postgres) and pgbouncer (apt-get install pgbouncer).
set -euo pipefail
cd "$(dirname "$0")/../.."

# Below the kernel's ephemeral port range, so that no client socket holds it.
PORT=${POINTS_PGBOUNCER_TEST_PORT:-25532}
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$PGBOUNCER" ] || { echo "pgbouncer is not installed (apt-get install pgbouncer)" >&2; exit 1; }

dir=$(mktemp -d /tmp/points-pgbouncer.XXXXXX)
chmod 755 "$dir"
# Every test creates its own database: the "*" entry sends each database name to the same-named database.
cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = 8
max_client_conn = 4000
; Every test has its own database, so pgbouncer keeps a pool per test: bound the server sessions of them all (idle
; ones of other pools are closed to make room), and close idle ones soon, leaving PostgreSQL's max_connections room
; for the tests' direct connections.
max_user_connections = 30
server_idle_timeout = 5
; As in deploy/pgbouncer/pgbouncer.ini: while PostgreSQL is unreachable a query waits at most 2 s for a server session
; (then the service answers UNAVAILABLE, as it does without a pooler), and a failed login is retried after 1 s.
query_wait_timeout = 2
server_login_retry = 1
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
echo '"postgres" ""' >"$dir/userlist.txt"
run_as=()
if [ "$(id -u)" = 0 ]; then
    # pgbouncer refuses to run as root.
    chown -R postgres "$dir"
    run_as=(-u postgres)
fi
"$PGBOUNCER" -d "${run_as[@]}" "$dir/pgbouncer.ini"
stop() {
    if [ -f "$dir/pgbouncer.pid" ]; then kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true; fi
}
trap stop EXIT
for _ in $(seq 50); do
    psql -h 127.0.0.1 -p "$PORT" -U postgres -d pgbouncer -Atqc "SHOW VERSION" >/dev/null 2>&1 && break
    sleep 0.1
done
echo "[pgbouncer] $(psql -h 127.0.0.1 -p "$PORT" -U postgres -d pgbouncer -Atqc "SHOW VERSION") on 127.0.0.1:$PORT, pool_mode=transaction"

filters=("$@")
if [ ${#filters[@]} -eq 0 ]; then
    # The main flows: merchants and keys, earn/spend/adjust/reverse, idempotency, the batched lanes, holds, rules,
    # reports, audit and its verification, over gRPC and REST, and the cache kept honest by LISTEN/NOTIFY.
    filters=(pooling:: ledger:: lanes:: holds:: rules:: reports:: audit:: rest:: rest_holds:: rest_audit:: spine:: scopes::)
fi
POINTS_TEST_PGBOUNCER="127.0.0.1:$PORT" cargo test --test api -- "${filters[@]}"

# The traffic went through pgbouncer: its transaction counters over the test databases.
transactions=$(psql -h 127.0.0.1 -p "$PORT" -U postgres -d pgbouncer -Atqc "SHOW STATS" -F ' ' |
    awk '$1 ~ /^points_test_/ {databases++; xacts += $2} END {printf "%d %d", databases, xacts}')
read -r databases xacts <<<"$transactions"
echo "[pgbouncer] $xacts transactions of $databases test databases went through pgbouncer"
if [ "$databases" -lt 1 ] || [ "$xacts" -lt $((10 * databases)) ]; then
    echo "[pgbouncer] FAIL: expected the test servers' traffic to go through pgbouncer" >&2
    exit 1
fi
if grep -E "prepared statement|unsupported startup parameter" "$dir/pgbouncer.log"; then
    echo "[pgbouncer] FAIL: pgbouncer refused something the service sent" >&2
    exit 1
fi

# The shipped configuration (deploy/pgbouncer/pgbouncer.ini, as compose runs it: scram-sha-256, a database alias, the
# auth file written by deploy/pgbouncer/entrypoint.sh) with a role that is not a superuser, and the server configured
# as compose configures it; then the REST flows of tests/citus/flows.py through it.
deploy_port=$((PORT + 1))
deploy_db=points_test_deploy_pgbouncer
role_password=deploy-pgbouncer-check
psql -h 127.0.0.1 -U postgres -qAt -c "DROP DATABASE IF EXISTS $deploy_db WITH (FORCE)" \
    -c "DROP ROLE IF EXISTS points_deploy_check" \
    -c "CREATE ROLE points_deploy_check LOGIN CREATEDB PASSWORD '$role_password'"
sed -e "s/^points = host=postgres port=5432 dbname=points$/points = host=127.0.0.1 port=5432 dbname=$deploy_db/" \
    -e "s/^listen_addr = .*/listen_addr = 127.0.0.1/" -e "s/^listen_port = .*/listen_port = $deploy_port/" \
    -e "s#^auth_file = .*#auth_file = $dir/deploy-userlist.txt#" \
    -e "s#^logfile =\$#logfile = $dir/deploy-pgbouncer.log#" -e "s#^pidfile =\$#pidfile = $dir/deploy-pgbouncer.pid#" \
    deploy/pgbouncer/pgbouncer.ini >"$dir/deploy-pgbouncer.ini"
grep -q "dbname=$deploy_db" "$dir/deploy-pgbouncer.ini" ||
    { echo "[pgbouncer] FAIL: deploy/pgbouncer/pgbouncer.ini has no 'points' database line" >&2; exit 1; }
[ "$(id -u)" = 0 ] && chown -R postgres "$dir"
# The image's entrypoint writes the auth file from the password and runs pgbouncer in the foreground.
entrypoint=(env PATH="/usr/sbin:/usr/bin:/bin" POSTGRES_PASSWORD="$role_password" POSTGRES_USER=points_deploy_check
    PGBOUNCER_AUTH_FILE="$dir/deploy-userlist.txt" PGBOUNCER_CONFIG="$dir/deploy-pgbouncer.ini"
    sh "$PWD/deploy/pgbouncer/entrypoint.sh")
if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "${entrypoint[@]}" >"$dir/deploy-entrypoint.out" 2>&1 &
else
    "${entrypoint[@]}" >"$dir/deploy-entrypoint.out" 2>&1 &
fi
stop_deploy() {
    [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    [ -f "$dir/deploy-pgbouncer.pid" ] && kill "$(cat "$dir/deploy-pgbouncer.pid")" 2>/dev/null
    stop
    psql -h 127.0.0.1 -U postgres -qAt -c "DROP DATABASE IF EXISTS $deploy_db WITH (FORCE)" \
        -c "DROP ROLE IF EXISTS points_deploy_check" >/dev/null 2>&1 || true
}
trap stop_deploy EXIT
cargo build -q --bin points
admin_key=$("${CARGO_TARGET_DIR:-target}/debug/points" admin make-key)
http_port=$((PORT + 3))
DATABASE_URL="postgres://points_deploy_check:$role_password@127.0.0.1:$deploy_port/points" \
    POINTS_DATABASE_POOL_MODE=transaction \
    POINTS_LISTEN_DATABASE_URL="postgres://points_deploy_check:$role_password@127.0.0.1:5432/$deploy_db" \
    POINTS_BOOTSTRAP_ADMIN_KEY="$admin_key" POINTS_KEY_HASH_SECRET=pgbouncer-deploy-check-secret-0123456789abcdef \
    POINTS_GRPC_ADDR="127.0.0.1:$((PORT + 2))" POINTS_HTTP_ADDR="127.0.0.1:$http_port" POINTS_LOG_FORMAT=json \
    "${CARGO_TARGET_DIR:-target}/debug/points" >"$dir/deploy-server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null && break
    sleep 0.2
done
if ! python3 tests/citus/flows.py "http://127.0.0.1:$http_port" "$admin_key" 2 >"$dir/deploy-flows.out"; then
    cat "$dir/deploy-flows.out" >&2
    grep -v '"level":"INFO"' "$dir/deploy-server.log" | tail -20 >&2
    echo "[pgbouncer] FAIL: the REST flows through the shipped pgbouncer configuration" >&2
    exit 1
fi
grep '^ok' "$dir/deploy-flows.out" | sed 's/^/[pgbouncer] deploy config: /'
echo "[pgbouncer] OK"
