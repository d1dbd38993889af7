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

PORT=${POINTS_PGBOUNCER_TEST_PORT:-56532}
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
echo "[pgbouncer] OK"
