#!/usr/bin/env bash
# A private PostgreSQL cluster on 127.0.0.1 for tests and two-node checks (trust auth, no fsync).
#
# Usage:  scripts/postgres-test.sh start     # prints `export ...` lines only: eval "$(scripts/postgres-test.sh start)"
#         scripts/postgres-test.sh stop [--purge]
#         scripts/postgres-test.sh status
# Knobs (environment):
#   ATOLL_PG_DIR    cluster directory            (default /tmp/atoll-postgres)
#   ATOLL_PG_PORT   TCP port on 127.0.0.1        (default 15432)
#   ATOLL_PG_DB     database created on start    (default atoll_test; the superuser is "atoll")
#   ATOLL_PG_OWNER  a pid: when that process is gone, the cluster is stopped and purged (test sessions)
# As root the server runs as the postgres user (runuser), otherwise as the caller. start reuses a running
# cluster in ATOLL_PG_DIR; stop uses pg_ctl on that directory only.
set -euo pipefail

DIR=${ATOLL_PG_DIR:-/tmp/atoll-postgres}
PORT=${ATOLL_PG_PORT:-15432}
DB=${ATOLL_PG_DB:-atoll_test}
DATA=$DIR/data

log() { printf '[postgres-test] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$BIN" ] && [ -x "$BIN/pg_ctl" ] || die "PostgreSQL server binaries not found (apt-get install postgresql)"

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

running() { [ -f "$DATA/PG_VERSION" ] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

print_env() {
    echo "export ATOLL_PG_URL='postgresql://atoll@127.0.0.1:$PORT/$DB'"
    echo "export ATOLL_PG_DIR='$DIR'"
}

watch_owner() { # stop and purge once the owner process has gone (a test session killed before teardown)
    local owner=${ATOLL_PG_OWNER:-}
    [ -n "$owner" ] || return 0
    # fully detached: it must not hold the caller's stdout/stderr pipes open
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 2; done; exec "$2" stop --purge' \
        watch "$owner" "$(readlink -f "$0")" </dev/null >/dev/null 2>&1 &
}

start() {
    if running; then
        PORT=$(sed -n 's/^port = //p' "$DATA/postgresql.conf" | tail -n 1)
        log "reusing the running cluster in $DIR"
        print_env
        return
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        die "127.0.0.1:$PORT is taken: choose another ATOLL_PG_PORT"
    fi
    if [ -e "$DATA" ]; then
        [ -f "$DIR/.atoll-postgres" ] || die "$DATA exists and was not created by this script; refusing to wipe it"
        rm -rf "${DATA:?}"
    fi
    mkdir -p "$DIR"
    touch "$DIR/.atoll-postgres"
    [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
    as_owner "$BIN/initdb" -D "$DATA" -U atoll -A trust -E UTF8 --no-sync >"$DIR/initdb.log" 2>&1 \
        || die "initdb failed (see $DIR/initdb.log)"
    cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 200
# test data: durability is not the point, speed is
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 start >/dev/null \
        || die "the server did not start (see $DIR/server.log)"
    "$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U atoll -d postgres -c "CREATE DATABASE $DB" >/dev/null \
        || die "cannot create database $DB"
    log "ready on 127.0.0.1:$PORT"
    watch_owner
    print_env
}

case ${1:-} in
start) start ;;
stop)
    if running; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
        log "stopped"
    fi
    if [ "${2:-}" = --purge ] && [ -f "$DIR/.atoll-postgres" ]; then rm -rf "${DIR:?}"; fi
    ;;
status)
    if running; then
        echo "running on 127.0.0.1:$PORT ($DIR)"
    else
        echo "not running"
        exit 1
    fi
    ;;
*)
    echo "usage: $0 start | stop [--purge] | status" >&2
    exit 2
    ;;
esac
