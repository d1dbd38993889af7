#!/usr/bin/env bash
# Property-based API tests of a running REST gateway with schemathesis (PyPI), driven by its own /openapi.json.
#
#   tests/schemathesis.sh <base-url> <admin-key>
#   e.g. tests/schemathesis.sh http://127.0.0.1:8030 lp_live_...
#
# What it does:
#   1. installs schemathesis (pinned) into a private virtualenv if it is not there yet;
#   2. registers a fresh merchant with the admin key (curl) and takes that merchant's first key;
#   3. runs schemathesis over every operation of <base-url>/openapi.json with the merchant key, then over the
#      platform routes (/api/v1/merchants...) with the admin key, so those are exercised past the scope check too;
#   4. runs every check (`--checks all`): no 5xx, responses as documented (status, content type, schema, headers),
#      schema-valid requests accepted and schema-violating ones refused (exceptions and their reasons in
#      tests/schemathesis.toml), authentication enforced; once as the admin acting for the merchant
#      (`x-merchant-id`), once with the merchant's own key;
#   5. exits non-zero on any finding.
#
# Bounded: a fixed number of examples per operation, a per-request timeout and a hard
# `timeout` around each run; the whole script stays well under 12 minutes.
#
# Environment:
#   SCHEMATHESIS_MAX_EXAMPLES      examples per operation (default 20).
#   SCHEMATHESIS_VENV              where the virtualenv lives (default ~/.cache/points-schemathesis-<version>).
#   SCHEMATHESIS_REPORT_DIR        where the JUnit reports go (default: a temporary directory).
#
# Nothing is excluded by default. Operations that could break the rest of the run (suspending a merchant, revoking or
# rotating the key in use) are safe to fuzz here: their path ids are generated at random, so they never name the
# merchant or the key this run uses, and the schema defines no links that would feed real ids into them.
set -euo pipefail

SCHEMATHESIS_VERSION="4.32.5"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-20}"
REQUEST_TIMEOUT_SECONDS=10
RUN_HARD_TIMEOUT_SECONDS=300
# Every check, including that schema-valid requests are accepted and schema-violating ones refused; the rules no
# schema can state are listed, with their reasons, in tests/schemathesis.toml.
CHECKS="all"
CONFIG="$(cd "$(dirname "$0")" && pwd)/schemathesis.toml"

if [[ $# -ne 2 ]]; then
    echo "usage: $0 <base-url> <admin-key>" >&2
    exit 2
fi
BASE_URL="${1%/}"
ADMIN_KEY="$2"

log() { printf '[schemathesis.sh] %s\n' "$*" >&2; }

VENV="${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/points-schemathesis-$SCHEMATHESIS_VERSION}"
SCHEMATHESIS="$VENV/bin/schemathesis"
if ! "$SCHEMATHESIS" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    timeout 600 "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$SCHEMATHESIS" --version >&2

# A fresh merchant for this run, so the run's writes touch nothing else.
SLUG="schemathesis-$(date +%s)-$RANDOM"
REGISTER_BODY="$(mktemp)"
trap 'rm -f "$REGISTER_BODY"' EXIT
STATUS="$(curl --silent --show-error --max-time 20 --output "$REGISTER_BODY" --write-out '%{http_code}' \
    -X POST "$BASE_URL/api/v1/merchants" \
    -H "x-api-key: $ADMIN_KEY" -H 'content-type: application/json' \
    --data "{\"slug\": \"$SLUG\", \"name\": \"Schemathesis run\"}")"
if [[ "$STATUS" != "201" ]]; then
    log "registering merchant $SLUG failed with HTTP $STATUS: $(cat "$REGISTER_BODY")"
    exit 1
fi
MERCHANT_KEY="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["api_key"]["key"])' <"$REGISTER_BODY")"
MERCHANT_ID="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["merchant"]["merchant_id"])' <"$REGISTER_BODY")"
log "registered merchant $SLUG"

REPORT_DIR="${SCHEMATHESIS_REPORT_DIR:-$(mktemp -d)}"
mkdir -p "$REPORT_DIR"
REPORT_DIR="$(cd "$REPORT_DIR" && pwd)"


# run <name> <api key> [schemathesis options...]
# One worker: with several, CPython 3.11's ast module can fail under concurrent parsing inside hypothesis ("AST
# constructor recursion depth mismatch"), a schemathesis runtime error that is not a finding; the run is fast anyway.
run() {
    local name="$1" key="$2"
    shift 2
    log "run '$name': up to $MAX_EXAMPLES examples per operation"
    # From the report directory: schemathesis keeps its crash cache (for `st replay`) under the working directory.
    cd "$REPORT_DIR"
    timeout --kill-after=10 "$RUN_HARD_TIMEOUT_SECONDS" "$SCHEMATHESIS" --config-file "$CONFIG" --no-color \
        run "$BASE_URL/openapi.json" \
        --url "$BASE_URL" \
        --header "x-api-key: $key" \
        --checks "$CHECKS" \
        --max-examples "$MAX_EXAMPLES" \
        --request-timeout "$REQUEST_TIMEOUT_SECONDS" \
        --generation-database none \
        --seed "${SCHEMATHESIS_SEED:-$RANDOM}" \
        --workers 1 \
        --report junit --report-junit-path "$REPORT_DIR/$name.xml" \
        "$@"
}

FAILED=0
# Every operation as the platform admin acting for the merchant (SPEC §9): every route past authentication.
run admin "$ADMIN_KEY" --header "x-merchant-id: $MERCHANT_ID" || FAILED=1
# Every operation with the merchant's own key: the merchant routes as merchants call them, the platform ones to 403.
run merchant "$MERCHANT_KEY" || FAILED=1

if [[ "$FAILED" != "0" ]]; then
    log "FAILED: schemathesis reported findings (JUnit reports in $REPORT_DIR)"
    exit 1
fi
log "OK: no findings (JUnit reports in $REPORT_DIR)"
