#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on 127.0.0.1 for the tests; prints the exports to eval:
#   eval "$(bash scripts/ci_postgres.sh)"   # sets MEMEX_TEST_POSTGRES_URL and MEMEX_TEST_PG_DIR
#   bash scripts/ci_postgres.sh stop "$MEMEX_TEST_PG_DIR"
# Installs Debian's postgresql when missing. As root the cluster runs as the `postgres` user.
set -euo pipefail
log() { echo "ci_postgres: $*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ "${1:-}" = stop ]; then
  as_owner "$(pg_bin)/pg_ctl" -D "$2/data" -m fast stop >&2 || true
  rm -rf "$2"
  exit 0
fi

if [ -z "$(pg_bin)" ]; then
  log "installing postgresql from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 && apt-get install -y -q postgresql >&2
fi
BIN=$(pg_bin)
DIR=$(mktemp -d /tmp/memex-pg.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
[ "$(id -u)" = 0 ] && chown postgres "$DIR"
as_owner "$BIN/initdb" -D "$DIR/data" -U memex -A trust -E UTF8 >"$DIR/initdb.log" 2>&1 \
  || { cat "$DIR/initdb.log" >&2; exit 1; }
as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-h 127.0.0.1 -p $PORT -k $DIR -c fsync=off" start >&2
as_owner "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U memex memex
log "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT ($DIR)"
echo "export MEMEX_TEST_POSTGRES_URL=postgresql+psycopg://memex@127.0.0.1:$PORT/memex"
echo "export MEMEX_TEST_PG_DIR=$DIR"
