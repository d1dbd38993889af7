#!/usr/bin/env bash
# Runs every test of the project: the Rust unit and integration tests of the workspace (against the local
# PostgreSQL; each test creates its own database), the admin app's type check and unit tests (Vitest), then the
# end-to-end checks of a running release server (schemathesis against /openapi.json, Swagger UI offline in headless
# Chromium, graceful SIGTERM) and the admin app's end-to-end tests (Playwright driving Debian's Chromium against the
# release binary, which embeds admin-ui/dist).
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth for user postgres), Python 3 with pip, Node 20 with npm, and
# Chromium at /usr/bin/chromium, pgbouncer (Debian's package); the Citus run builds Citus from ../shared/vendor/citus when it is missing (root).
set -euo pipefail
cd "$(dirname "$0")/.."
# The connection tests open a few thousand sockets in one process.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Every integration test creates its own database named points_test_<uuid>; drop those of earlier runs so repeated
# runs do not pile them up (only databases with that prefix are touched).
drop_test_databases() {
    psql -h 127.0.0.1 -U postgres -d postgres -Atq \
        -c "SELECT datname FROM pg_database WHERE datname LIKE 'points\_test\_%'" |
        while read -r database; do
            psql -h 127.0.0.1 -U postgres -d postgres -q -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)"
        done
}
drop_test_databases

echo "== cargo test --workspace"
cargo test --workspace
drop_test_databases

echo "== pgbouncer (transaction pooling): the API suite's main flows with every server pooling through it"
bash tests/pgbouncer/run.sh
drop_test_databases

echo "== admin app: type check and unit tests"
if [ ! -d admin-ui/node_modules ]; then
    (cd admin-ui && npm ci --no-audit --no-fund)
fi
(cd admin-ui && npm run typecheck && npm test)

if [ -f tests/ci_e2e.sh ]; then
    echo "== end-to-end checks against a release build"
    cargo build --release --bin points
    bash tests/ci_e2e.sh "${CARGO_TARGET_DIR:-target}/release/points"
fi

echo "== admin app: end-to-end tests (Playwright, Chromium) against the release binary"
POINTS_BIN="$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)/points"
(cd admin-ui && POINTS_BIN="$POINTS_BIN" npm run e2e)
echo "== deployment files: hadolint and the Compose Specification"
bash tests/deploy/lint.sh

echo "== scale-out: the service on a Citus cluster (coordinator + 2 workers on this machine), REST flows against it"
bash tests/citus/run.sh "$POINTS_BIN"
echo "== all tests passed"
