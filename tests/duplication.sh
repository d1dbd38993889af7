#!/usr/bin/env bash
# Copy check: jscpd 5.3.2 (from npm, installed once into a cache folder) over the Rust sources of the server and the
# gateway, runs of 6 or more lines. Fails when the duplicated lines exceed DUPLICATED_LINES_MAX, so copies cannot
# creep back; lower the figure when you remove more.
#
#   tests/duplication.sh            check
#   tests/duplication.sh --report   also list every clone
set -euo pipefail
cd "$(dirname "$0")/.."

# Issue 13 measured 253 duplicated lines (23 clones) before the contract crate and the generic gateway path.
DUPLICATED_LINES_MAX=73
JSCPD_VERSION=5.3.2
TOOL_DIR="${POINTS_JSCPD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/points-jscpd-$JSCPD_VERSION}"

if [[ ! -x "$TOOL_DIR/node_modules/.bin/jscpd" ]]; then
    mkdir -p "$TOOL_DIR"
    (cd "$TOOL_DIR" && npm install --silent --no-audit --no-fund --no-save "jscpd@$JSCPD_VERSION" >/dev/null)
fi
REPORT_DIR="$(mktemp -d)"
trap 'rm -rf "$REPORT_DIR"' EXIT

jscpd=("$TOOL_DIR/node_modules/.bin/jscpd" --min-lines 6 --output "$REPORT_DIR" src gateway/src api/src)
if [[ "${1:-}" == "--report" ]]; then
    "${jscpd[@]}" --reporters json,console
else
    "${jscpd[@]}" --reporters json --silent >/dev/null
fi
python3 - "$REPORT_DIR/jscpd-report.json" "$DUPLICATED_LINES_MAX" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
total = report["statistics"]["total"]
limit = int(sys.argv[2])
print(f"duplication: {total['clones']} clones, {total['duplicatedLines']} duplicated lines "
      f"({total['percentage']:.2f}% of {total['lines']}); limit {limit} lines")
if total["duplicatedLines"] > limit:
    for clone in report["duplicates"]:
        first, second = clone["firstFile"], clone["secondFile"]
        print(f"  {first['name']}:{first['start']}-{first['end']} = {second['name']}:{second['start']}-{second['end']}")
    sys.exit(f"duplication: {total['duplicatedLines']} duplicated lines exceed the limit of {limit}")
PY
