#!/bin/sh
# Writes pgbouncer's auth file from POSTGRES_PASSWORD (for the role POSTGRES_USER, default points), then runs
# pgbouncer in the foreground. tests/pgbouncer/run.sh runs this script with the shipped pgbouncer.ini.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
user=${POSTGRES_USER:-points}
auth_file=${PGBOUNCER_AUTH_FILE:-/tmp/pgbouncer/userlist.txt}
mkdir -p "$(dirname "$auth_file")"
umask 077
# The auth file's format: "name" "password", with a double quote inside written twice.
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
printf '%s %s\n' "$(quote "$user")" "$(quote "$POSTGRES_PASSWORD")" >"$auth_file"
exec pgbouncer "${PGBOUNCER_CONFIG:-/etc/pgbouncer/pgbouncer.ini}"
