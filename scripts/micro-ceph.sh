#!/usr/bin/env bash
# A throw-away single-node Ceph on 127.0.0.1 for tests and benches: 1 mon, 1 memstore OSD, no cephx
# unless asked (ATOLL_CEPH_AUTH=cephx: client.admin's keyring is named in ceph.conf's [client] section).
#
# Usage:  scripts/micro-ceph.sh start     # prints `export ...` lines only: eval "$(scripts/micro-ceph.sh start)"
#         scripts/micro-ceph.sh stop [--purge]
#         scripts/micro-ceph.sh status
# Knobs (environment):
#   ATOLL_CEPH_DIR     cluster directory              (default /tmp/atoll-micro-ceph)
#   ATOLL_CEPH_PORT    mon msgr2 port; msgr1 = +1     (default 13300)
#   ATOLL_CEPH_POOL    RBD pool created on start      (default atoll)
#   ATOLL_CEPH_GB      OSD capacity in GiB            (default 8; memstore uses RAM only as data is written)
#   ATOLL_CEPH_STORE   memstore | bluestore           (default memstore; bluestore on a sparse file)
#   ATOLL_CEPH_AUTH    none | cephx                   (default none)
#   ATOLL_CEPH_OWNER   a pid: when that process is gone, the cluster is stopped and purged (test sessions)
# start reuses a healthy cluster in ATOLL_CEPH_DIR; a stale one (dead daemons) is wiped and recreated, but
# only a directory this script created (marker file). stop signals only the pids in its own pid files,
# after checking that their command line names this cluster's ceph.conf: never pkill.
set -euo pipefail

DIR=${ATOLL_CEPH_DIR:-/tmp/atoll-micro-ceph}
PORT=${ATOLL_CEPH_PORT:-13300}
POOL=${ATOLL_CEPH_POOL:-atoll}
GB=${ATOLL_CEPH_GB:-8}
STORE=${ATOLL_CEPH_STORE:-memstore}
AUTH=${ATOLL_CEPH_AUTH:-none}
CONF=$DIR/ceph.conf
MARK=$DIR/.atoll-micro-ceph
# An inherited CEPH_ARGS (e.g. --conf of another cluster) beats -c: drop it.
unset CEPH_ARGS
export CEPH_CONF=$CONF

log() { printf '[micro-ceph] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

daemon_pid() { # $1 = mon.a | osd.0: print the pid if that daemon of *this* cluster is alive
    local f=$DIR/run/$1.pid pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    [ -r "/proc/$pid/cmdline" ] || return 1
    awk '{exit ($3 == "Z")}' "/proc/$pid/stat" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$CONF" || return 1
    echo "$pid"
}

healthy() {
    [ -f "$MARK" ] && daemon_pid mon.a >/dev/null && daemon_pid osd.0 >/dev/null || return 1
    timeout 15 rados -c "$CONF" -p "$POOL" put .probe "$MARK" >/dev/null 2>&1 || return 1
    rados -c "$CONF" -p "$POOL" rm .probe >/dev/null 2>&1 || true
}

print_env() {
    echo "export CEPH_CONF='$CONF'"
    echo "export ATOLL_CEPH_DIR='$DIR'"
    echo "export ATOLL_CEPH_POOL='$POOL'"
}

stop_daemons() {
    local name pid deadline
    # osd first: stopped after the mon, it would wait for the mon's ack until its shutdown timeout
    for name in osd.0 mon.a; do
        pid=$(daemon_pid "$name") || continue
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || continue
        deadline=$((SECONDS + 5))
        while daemon_pid "$name" >/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        if daemon_pid "$name" >/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -f "$DIR"/run/*.pid "$DIR"/run/*.asok
}

write_conf() { # $1 = fsid
    local bytes=$((GB << 30))
    cat >"$CONF" <<EOF
[global]
fsid = $1
mon host = [v2:127.0.0.1:$PORT,v1:127.0.0.1:$((PORT + 1))]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = $AUTH
auth service required = $AUTH
auth client required = $AUTH
run dir = $DIR/run
crash dir = $DIR/crash
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
mon warn on insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
debug ms = 0/0
debug osd = 0/0
debug mon = 0/0
debug paxos = 0/0
debug monc = 0/0
debug objecter = 0/0
debug rados = 0/0
debug rbd = 0/0
debug bluestore = 0/0
debug bluefs = 0/0
debug rocksdb = 0/0

[mon]
mon data = $DIR/mon
mon cluster log file = $DIR/log/cluster.log
# Commit map changes (pool create, rbd snap create) at once instead of batching them for 1 s.
paxos propose interval = 0.01
paxos min wait = 0.001

[osd]
osd data = $DIR/osd
osd objectstore = $STORE
osd class load list = *
osd class default list = *
memstore device bytes = $bytes
bluestore block path = $DIR/osd-block.img
bluestore block create = true
bluestore block size = $bytes
bluestore fsck on mount = false
bluestore fsck on mkfs = false
osd memory target = 1073741824

keyring = $DIR/osd/keyring

[client]
log file =
admin socket =
keyring = $DIR/client.admin.keyring
EOF
}

make_keys() { # cephx: the mon's keyring (mon. and client.admin), client.admin's own
    local k=$DIR/client.admin.keyring
    ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool --create-keyring "$k" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
    ceph-authtool "$DIR/mon.keyring" --import-keyring "$k" >/dev/null
    chmod 600 "$DIR/mon.keyring" "$k"
}

wait_for() { # $1 = tries, $2 = sleep, rest = command
    local tries=$1 pause=$2
    shift 2
    for _ in $(seq 1 "$tries"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep "$pause"
    done
    return 1
}

watch_owner() { # stop and purge once the owner process has gone (a test session killed before teardown)
    local owner=${ATOLL_CEPH_OWNER:-}
    [ -n "$owner" ] || return 0
    # fully detached: it must not hold the caller's stdout/stderr pipes open
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 2; done; exec "$2" stop --purge' \
        watch "$owner" "$(readlink -f "$0")" </dev/null >/dev/null 2>&1 &
}

start() {
    for tool in ceph ceph-mon ceph-osd rados rbd monmaptool uuidgen; do
        command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh installs scripts/deps/ceph.apt)"
    done
    case $STORE in memstore | bluestore) ;; *) die "ATOLL_CEPH_STORE must be memstore or bluestore" ;; esac
    case $AUTH in none | cephx) ;; *) die "ATOLL_CEPH_AUTH must be none or cephx" ;; esac
    if healthy; then
        log "reusing the running cluster in $DIR"
        print_env
        return
    fi
    if [ -e "$DIR" ]; then
        if [ -f "$MARK" ]; then
            stop_daemons
            rm -rf "${DIR:?}"
        elif [ -n "$(ls -A "$DIR")" ]; then
            die "$DIR is not empty and was not created by this script; refusing to wipe it"
        fi
    fi
    for p in "$PORT" $((PORT + 1)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            die "127.0.0.1:$p is taken: choose another ATOLL_CEPH_PORT"
        fi
    done
    mkdir -p "$DIR"/{run,log,mon,osd,crash}
    touch "$MARK"
    local fsid osd_uuid
    fsid=$(uuidgen)
    write_conf "$fsid"
    local c=(-c "$CONF") mon_keyring=/dev/null
    if [ "$AUTH" = cephx ]; then
        make_keys
        mon_keyring=$DIR/mon.keyring
    fi

    log "mon: mkfs and start"
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$PORT,v1:127.0.0.1:$((PORT + 1))]" \
        "$DIR/monmap" >/dev/null
    ceph-mon "${c[@]}" -i a --mkfs --monmap "$DIR/monmap" --keyring "$mon_keyring" 2>>"$DIR/log/mon.stderr" \
        || die "ceph-mon --mkfs failed (see $DIR/log/mon.stderr)"
    ceph-mon "${c[@]}" -i a 2>>"$DIR/log/mon.stderr" || die "ceph-mon did not start (see $DIR/log/mon.stderr)"
    wait_for 100 0.2 timeout 10 ceph "${c[@]}" --connect-timeout 5 mon stat \
        || die "the mon does not answer (see $DIR/log/mon.a.log)"

    log "osd ($STORE): mkfs and start"
    osd_uuid=$(uuidgen)
    [ "$(ceph "${c[@]}" osd new "$osd_uuid")" = 0 ] || die "unexpected osd id"
    if [ "$AUTH" = cephx ]; then
        ceph "${c[@]}" auth get-or-create osd.0 mon 'allow profile osd' osd 'allow *' mgr 'allow profile osd' \
            -o "$DIR/osd/keyring" >/dev/null 2>&1 || die "cannot create osd.0's cephx key"
    fi
    ceph-osd "${c[@]}" -i 0 --mkfs --osd-uuid "$osd_uuid" 2>>"$DIR/log/osd.stderr" \
        || die "ceph-osd --mkfs failed (see $DIR/log/osd.stderr)"
    ceph-osd "${c[@]}" -i 0 2>>"$DIR/log/osd.stderr" || die "ceph-osd did not start (see $DIR/log/osd.stderr)"

    log "pool $POOL: create and init"
    ceph "${c[@]}" osd pool create "$POOL" 8 8 >/dev/null 2>&1
    ceph "${c[@]}" osd pool application enable "$POOL" rbd >/dev/null 2>&1
    wait_for 60 0.5 timeout 10 rados "${c[@]}" -p "$POOL" put .probe "$MARK" \
        || die "pool $POOL is not writable (see $DIR/log/osd.0.log)"
    rados "${c[@]}" -p "$POOL" rm .probe >/dev/null 2>&1 || true
    timeout 30 rbd "${c[@]}" pool init "$POOL" >/dev/null 2>&1 || die "rbd pool init $POOL failed"
    log "ready in ${SECONDS}s: $CONF"
    watch_owner
    print_env
}

case ${1:-} in
start) start ;;
stop)
    [ -f "$MARK" ] || {
        log "no cluster in $DIR"
        exit 0
    }
    stop_daemons
    if [ "${2:-}" = --purge ]; then rm -rf "${DIR:?}"; fi
    log "stopped"
    ;;
status)
    if healthy; then
        echo "running: $CONF"
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
