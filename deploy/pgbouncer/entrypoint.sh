#!/bin/sh
# Writes pgbouncer's auth file from POSTGRES_PASSWORD, then runs pgbouncer in the foreground.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
mkdir -p /tmp/pgbouncer
umask 077
printf '"points" "%s"\n' "$(printf '%s' "$POSTGRES_PASSWORD" | sed 's/"/""/g')" >/tmp/pgbouncer/userlist.txt
exec pgbouncer /etc/pgbouncer/pgbouncer.ini
