#!/usr/bin/env bash
# End-to-end check of a built `points` binary, for .ci/run after `cargo test`:
#
#   tests/ci_e2e.sh <path-to-points-binary>
#   e.g. tests/ci_e2e.sh target/release/points
#
# Builds nothing. Starts the binary on free loopback ports over a fresh database, waits for /readyz, takes the admin
# key it prints on first start, runs tests/schemathesis.sh and tests/browser/docs_offline.py against it, then sends
# SIGTERM and requires a clean exit (status 0). The database is dropped at the end, whatever happened; on failure the
# server's logs and the schemathesis JUnit reports are kept in the temporary directory the script names.
# Every wait is bounded; exits non-zero on any failure.
#
# Environment:
#   POINTS_E2E_POSTGRES   server URL without database (default postgres://postgres@127.0.0.1:5432)
#   SCHEMATHESIS_*        passed through to tests/schemathesis.sh
set -euo pipefail

READY_TIMEOUT_SECONDS=60
SCHEMATHESIS_TIMEOUT_SECONDS=330
DOCS_TIMEOUT_SECONDS=240
STOP_TIMEOUT_SECONDS=30

if [[ $# -ne 1 ]]; then
    echo "usage: $0 <path-to-points-binary>" >&2
    exit 2
fi
BINARY="$1"
if [[ ! -x "$BINARY" ]]; then
    echo "$0: $BINARY is not an executable" >&2
    exit 2
fi
TESTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POSTGRES="${POINTS_E2E_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
DATABASE="points_e2e_$(date +%s)_$$"
WORK_DIR="$(mktemp -d)"
SERVER_PID=""

log() { printf '[ci_e2e] %s\n' "$*" >&2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

drop_database() {
    timeout 60 psql "$POSTGRES/postgres" -v ON_ERROR_STOP=1 -qAtc "DROP DATABASE IF EXISTS \"$DATABASE\" WITH (FORCE)" \
        || log "could not drop database $DATABASE"
}

# On any exit: stop a server that is still running (SIGTERM, then SIGKILL), drop the database, keep logs on failure.
cleanup() {
    local status=$?
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 $((STOP_TIMEOUT_SECONDS * 10))); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    drop_database
    if [[ "$status" != "0" ]]; then
        log "FAILED (status $status); last server output:"
        tail -n 40 "$WORK_DIR/server.stdout" "$WORK_DIR/server.stderr" >&2 2>/dev/null || true
        log "server logs and schemathesis reports kept in $WORK_DIR"
    else
        rm -rf "$WORK_DIR"
    fi
    exit "$status"
}
trap cleanup EXIT

GRPC_PORT="$(free_port)"
HTTP_PORT="$(free_port)"
while [[ "$HTTP_PORT" == "$GRPC_PORT" ]]; do HTTP_PORT="$(free_port)"; done
BASE_URL="http://127.0.0.1:$HTTP_PORT"

log "starting $BINARY: gRPC 127.0.0.1:$GRPC_PORT, REST $BASE_URL, database $DATABASE"
DATABASE_URL="$POSTGRES/$DATABASE" \
    POINTS_GRPC_ADDR="127.0.0.1:$GRPC_PORT" \
    POINTS_HTTP_ADDR="127.0.0.1:$HTTP_PORT" \
    POINTS_LOG_FORMAT=json \
    RUST_LOG="${RUST_LOG:-warn}" \
    "$BINARY" >"$WORK_DIR/server.stdout" 2>"$WORK_DIR/server.stderr" &
SERVER_PID=$!

log "waiting up to ${READY_TIMEOUT_SECONDS}s for $BASE_URL/readyz"
deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
until curl --silent --fail --max-time 2 "$BASE_URL/readyz" >/dev/null; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "the server exited before it was ready"
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        log "not ready within ${READY_TIMEOUT_SECONDS}s"
        exit 1
    fi
    sleep 0.2
done
log "ready"

# The first start over a fresh database prints the platform admin key once, on stdout.
ADMIN_KEY="$(grep -oE 'lp_(live|test)_[A-Za-z0-9]+' "$WORK_DIR/server.stdout" | head -n 1 || true)"
if [[ -z "$ADMIN_KEY" ]]; then
    log "no admin key in the server's output"
    exit 1
fi

log "schemathesis"
SCHEMATHESIS_REPORT_DIR="$WORK_DIR/schemathesis" \
    timeout --kill-after=10 "$SCHEMATHESIS_TIMEOUT_SECONDS" "$TESTS_DIR/schemathesis.sh" "$BASE_URL" "$ADMIN_KEY"

log "Swagger UI offline"
timeout --kill-after=10 "$DOCS_TIMEOUT_SECONDS" python3 "$TESTS_DIR/browser/docs_offline.py" "$BASE_URL"

log "metrics"
METRICS="$(curl --silent --fail --max-time 5 "$BASE_URL/metrics")"
for metric in http_requests_total grpc_requests_total; do
    if ! grep -q "^$metric{" <<<"$METRICS"; then
        log "/metrics lacks $metric"
        exit 1
    fi
done

log "SIGTERM; expecting exit status 0 within ${STOP_TIMEOUT_SECONDS}s"
kill -TERM "$SERVER_PID"
deadline=$((SECONDS + STOP_TIMEOUT_SECONDS))
while kill -0 "$SERVER_PID" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
        log "the server did not stop within ${STOP_TIMEOUT_SECONDS}s of SIGTERM"
        exit 1
    fi
    sleep 0.1
done
set +e
wait "$SERVER_PID"
EXIT_STATUS=$?
set -e
SERVER_PID=""
if [[ "$EXIT_STATUS" != "0" ]]; then
    log "the server exited with status $EXIT_STATUS after SIGTERM"
    exit 1
fi
log "OK: schemathesis, offline docs and metrics passed; clean shutdown"
