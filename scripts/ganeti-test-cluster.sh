#!/usr/bin/env bash
# A real single-node Ganeti 3.0 cluster for Atoll's integration tests, on loopback addresses only.
#
#   scripts/ganeti-test-cluster.sh up      # idempotent: install packages if missing, init or restart
#   scripts/ganeti-test-cluster.sh down    # remove instances, destroy the cluster, undo every change
#   scripts/ganeti-test-cluster.sh gnt gnt-instance list    # run a command where Ganeti's hostname holds
#
# Needs root, PID 1 other than systemd (daemon-util then uses start-stop-daemon) and a kernel with UTS
# namespaces. The node is named $ATOLL_GNT_NODE (node1.atoll.test, 127.0.1.21) inside a persistent UTS
# namespace, so the machine's own hostname is never changed. Hypervisors: fake (the default) and kvm
# (QEMU under TCG: kvm_flag=disabled, no VNC, serial console; instances give kernel_path/initrd_path or boot
# from their disk); disk templates: ext, file, diskless. The RAPI listens on https://127.0.0.1:5080 with a certificate whose SANs cover 127.0.0.1.
# Settings for the tests are written to $STATE/env (KEY=VALUE lines).
set -euo pipefail

NODE=${ATOLL_GNT_NODE:-node1.atoll.test}
NODE_IP=${ATOLL_GNT_NODE_IP:-127.0.1.21}
CLUSTER=${ATOLL_GNT_CLUSTER:-cluster1.atoll.test}
CLUSTER_IP=${ATOLL_GNT_CLUSTER_IP:-127.0.1.20}
SSH_PORT=${ATOLL_GNT_SSH_PORT:-2223}
RAPI_USER=atoll-test
STATE=/etc/atoll-ganeti-test
RUN=/run/atoll-ganeti-test
UTS=$RUN/uts
HERE=$(cd "$(dirname "$0")" && pwd)
CLEAN=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root)
KEY_TAG=atoll-ganeti-test
# Ganeti's kvm hypervisor without hardware virtualization: QEMU's own binary (Debian's `kvm` name turns
# KVM on), TCG, the serial console on a unix socket, no VNC, no default kernel (the instance's disk boots).
KVM_PARAMS="kvm_flag=disabled,kvm_path=/usr/bin/qemu-system-x86_64,serial_console=true,vnc_bind_address=,kernel_path=,initrd_path="

say() { printf 'ganeti-test-cluster: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

ns() {  # the prefix that runs a command with the node's hostname (inside the UTS namespace, if any)
  if findmnt -n "$UTS" >/dev/null 2>&1; then echo nsenter --uts="$UTS"; fi
}
in_ns() { $(ns) "$@"; }
daemons() { in_ns "${CLEAN[@]}" /usr/lib/ganeti/daemon-util "$@"; }
master_answers() { timeout 10 $(ns) gnt-cluster info >/dev/null 2>&1; }

install_packages() {
  local missing=() p
  for p in $(sed -e 's/#.*//' "$HERE/deps/ganeti.apt"); do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

hosts_block() {  # /etc/hosts may be bind-mounted: rewrite it in place
  local tmp; tmp=$(mktemp)
  sed "/^# BEGIN $KEY_TAG/,/^# END $KEY_TAG/d" /etc/hosts > "$tmp"
  if [ "$1" = add ]; then
    printf '# BEGIN %s\n%s %s %s\n%s %s %s\n# END %s\n' "$KEY_TAG" "$NODE_IP" "$NODE" "${NODE%%.*}" \
      "$CLUSTER_IP" "$CLUSTER" "${CLUSTER%%.*}" "$KEY_TAG" >> "$tmp"
  fi
  cat "$tmp" > /etc/hosts; rm -f "$tmp"
}

uts_namespace() {
  mkdir -p "$RUN"
  if [ "$(hostname)" != "$NODE" ] && ! findmnt -n "$UTS" >/dev/null 2>&1; then
    touch "$UTS"
    unshare --uts="$UTS" hostname "$NODE"
  fi
  local fqdn; fqdn=$(in_ns /usr/bin/python3 -c 'import socket; print(socket.getfqdn())')
  [ "$fqdn" = "$NODE" ] || die "the node's FQDN is '$fqdn', not $NODE (check /etc/hosts)"
}

ganeti_prerequisites() {
  # Daemons bind to the node's address; metad (started on demand) would take 0.0.0.0:80 otherwise.
  local d
  for d in NODED MOND CONFD METAD; do
    grep -q "^${d}_ARGS=" /etc/default/ganeti || echo "${d}_ARGS=\"\"" >> /etc/default/ganeti
    sed -i "s/^${d}_ARGS=.*/${d}_ARGS=\"-b $NODE_IP\"/" /etc/default/ganeti
  done
  mkdir -p /srv/ganeti/file-storage /srv/ganeti/extstorage /srv/ganeti/os /etc/ganeti/hooks
  grep -qx /srv/ganeti/file-storage /etc/ganeti/file-storage-paths 2>/dev/null \
    || echo /srv/ganeti/file-storage >> /etc/ganeti/file-storage-paths
  install -d -m 750 -o root -g gnt-daemons /var/log/ganeti/extstorage
  # The master IP is a 127.x address, always "up" on lo: manage it with a script that does nothing.
  install -d /etc/ganeti/scripts
  printf '#!/bin/sh\n# %s: the master IP lives on lo already\nexit 0\n' "$KEY_TAG" \
    > /etc/ganeti/scripts/master-ip-setup
  chmod 755 /etc/ganeti/scripts/master-ip-setup
}

ssh_for_verify() {  # gnt-cluster verify ssh-es to the node and checks `hostname --fqdn`
  install -d -m 700 /root/.ssh
  if [ ! -f /root/.ssh/id_rsa ]; then
    ssh-keygen -q -t rsa -b 2048 -N '' -C "$KEY_TAG" -f /root/.ssh/id_rsa
    touch "$STATE/created-root-key"
  fi
  touch /root/.ssh/authorized_keys; chmod 600 /root/.ssh/authorized_keys
  local pub; pub=$(cut -d' ' -f1,2 /root/.ssh/id_rsa.pub)
  grep -qF "$pub" /root/.ssh/authorized_keys || echo "$pub $KEY_TAG" >> /root/.ssh/authorized_keys
  mkdir -p /run/sshd
  if ! { [ -f "$RUN/sshd.pid" ] && kill -0 "$(cat "$RUN/sshd.pid")" 2>/dev/null; }; then
    in_ns /usr/sbin/sshd -o ListenAddress="$NODE_IP:$SSH_PORT" -o PidFile="$RUN/sshd.pid" \
      -o PermitRootLogin=prohibit-password
  fi
}

init_wrapper() {
  # `gnt-cluster init` refuses a node address in 127/8 and takes any 127.x as "already in use"; both
  # checks are client-side only, so this wrapper turns them off in its own process. No file of Ganeti's
  # is changed.
  cat > "$RUN/gnt-cluster-init" <<'EOF'
#!/usr/bin/python3
import os
import sys

sys.path.insert(0, "/usr/share/ganeti/default")
from ganeti import netutils  # noqa: E402

netutils.IP4Address.IsLoopback = classmethod(lambda cls, address: False)
_tcp_ping, _cluster_ip = netutils.TcpPing, os.environ["ATOLL_GNT_CLUSTER_IP"]
netutils.TcpPing = lambda target, port, *a, **k: target != _cluster_ip and _tcp_ping(target, port, *a, **k)
from ganeti.client import gnt_cluster  # noqa: E402

sys.argv[0] = "gnt-cluster"
sys.exit(gnt_cluster.Main())
EOF
  chmod 755 "$RUN/gnt-cluster-init"
}

stale_pidfiles() {  # after a reboot: start-stop-daemon refuses (exit 2) a daemon-owned pidfile it would match
  local f pid
  for f in /var/run/ganeti/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -z "$pid" ] || ! grep -qs ganeti "/proc/$pid/cmdline"; then rm -f "$f"; fi
  done
}

start_cluster() {
  if [ ! -f /var/lib/ganeti/config.data ]; then
    rm -rf /var/lib/ganeti/export/*
    say "gnt-cluster init $CLUSTER"
    in_ns "${CLEAN[@]}" ATOLL_GNT_CLUSTER_IP="$CLUSTER_IP" "$RUN/gnt-cluster-init" init \
      --enabled-hypervisors=fake,kvm -H "kvm:$KVM_PARAMS" --enabled-disk-templates=ext,file,diskless \
      --master-netdev=lo --master-netmask=32 --use-external-mip-script=yes \
      --no-etc-hosts --no-ssh-init --nic-parameters=mode=routed,link=100 \
      --node-parameters=ssh_port="$SSH_PORT" --file-storage-dir=/srv/ganeti/file-storage \
      --ipolicy-bounds-specs=min:cpu-count=1,disk-count=1,disk-size=1,memory-size=32,nic-count=0,spindle-use=1/max:cpu-count=8,disk-count=16,disk-size=1048576,memory-size=32768,nic-count=8,spindle-use=12 \
      --ipolicy-std-specs=cpu-count=1,disk-count=1,disk-size=100,memory-size=128,nic-count=0,spindle-use=1 \
      "$CLUSTER" >&2
  elif ! master_answers; then
    say "starting the Ganeti daemons"
    stale_pidfiles
    daemons start-all >&2
  fi
  local i
  for i in $(seq 1 60); do master_answers && return; sleep 1; done
  die "the Ganeti master daemons did not come up"
}

kvm_hypervisor() {  # a cluster made before kvm was enabled here gets it (idempotent)
  if ! in_ns gnt-cluster info | grep -q '^Enabled hypervisors:.*kvm'; then
    say "enabling the kvm hypervisor (TCG)"
    in_ns "${CLEAN[@]}" gnt-cluster modify --enabled-hypervisors=fake,kvm -H "kvm:$KVM_PARAMS" >&2
  fi
}

rapi_access() {
  local pass_file=$STATE/rapi-password
  [ -f "$pass_file" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$pass_file")
  local ha1
  ha1=$(printf '%s:Ganeti Remote API:%s' "$RAPI_USER" "$(cat "$pass_file")" | md5sum | cut -d' ' -f1)
  local users="$RAPI_USER {HA1}$ha1 write"
  if [ "$(cat /var/lib/ganeti/rapi/users 2>/dev/null)" != "$users" ]; then
    install -o gnt-rapi -g gnt-masterd -m 640 /dev/null /var/lib/ganeti/rapi/users
    printf '%s\n' "$users" > /var/lib/ganeti/rapi/users   # ganeti-rapi re-reads it (inotify)
  fi
  # Ganeti's own rapi.pem has no subjectAltName; `renew-crypto --rapi-certificate` is a no-op in 3.0.2,
  # so the PEM is installed directly and ganeti-rapi restarted.
  if [ ! -f "$STATE/rapi.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$CLUSTER" \
      -addext "subjectAltName=DNS:$CLUSTER,DNS:$NODE,DNS:localhost,IP:127.0.0.1,IP:$CLUSTER_IP,IP:$NODE_IP" \
      -keyout "$STATE/rapi.key" -out "$STATE/rapi-ca.crt" 2>/dev/null
    cat "$STATE/rapi.key" "$STATE/rapi-ca.crt" > "$STATE/rapi.pem"
    chmod 600 "$STATE/rapi.key" "$STATE/rapi.pem"
  fi
  if ! cmp -s "$STATE/rapi.pem" /var/lib/ganeti/rapi.pem; then
    install -o gnt-rapi -g gnt-masterd -m 440 "$STATE/rapi.pem" /var/lib/ganeti/rapi.pem
    daemons stop ganeti-rapi >&2 || true
    daemons start ganeti-rapi >&2
  fi
  local i
  for i in $(seq 1 80); do
    curl -fsS --cacert "$STATE/rapi-ca.crt" -u "$RAPI_USER:$(cat "$pass_file")" \
      https://127.0.0.1:5080/2/info >/dev/null 2>&1 && return
    sleep 0.25
  done
  die "the RAPI does not answer on https://127.0.0.1:5080"
}

up() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  [ -d /run/systemd/system ] && say "warning: systemd is running; daemon-util will use systemctl"
  install_packages
  mkdir -p "$STATE" "$RUN"
  hosts_block add
  uts_namespace
  ganeti_prerequisites
  ssh_for_verify
  init_wrapper
  start_cluster
  kvm_hypervisor
  rapi_access
  cat > "$STATE/env" <<EOF
ATOLL_GNT_NODE=$NODE
ATOLL_GNT_CLUSTER=$CLUSTER
ATOLL_GNT_UTS=$( findmnt -n "$UTS" >/dev/null 2>&1 && echo "$UTS" )
ATOLL_RAPI_URL=https://127.0.0.1:5080
ATOLL_RAPI_USER=$RAPI_USER
ATOLL_RAPI_PASSWORD_FILE=$STATE/rapi-password
ATOLL_RAPI_CA=$STATE/rapi-ca.crt
EOF
  say "cluster $CLUSTER is up (node $NODE); settings in $STATE/env"
}

down() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  if [ -f /var/lib/ganeti/config.data ]; then
    master_answers || daemons start-all >/dev/null 2>&1 || true
    local inst
    for inst in $(timeout 60 $(ns) gnt-instance list --no-headers -o name 2>/dev/null); do
      say "removing instance $inst"
      in_ns gnt-instance remove -f --ignore-failures --shutdown-timeout=0 "$inst" >&2 || true
    done
    rm -rf /var/lib/ganeti/export/*
    say "gnt-cluster destroy"
    in_ns gnt-cluster destroy --yes-do-it >&2 || say "warning: destroy failed"
  fi
  local d pid
  for d in $("${CLEAN[@]}" /usr/lib/ganeti/daemon-util list-stop-daemons 2>/dev/null); do
    pid=/var/run/ganeti/$d.pid
    if [ -f "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null; then daemons stop "$d" >&2 || true; fi
  done
  if [ -f "$RUN/sshd.pid" ]; then kill "$(cat "$RUN/sshd.pid")" 2>/dev/null || true; fi
  for d in NODED MOND CONFD; do
    sed -i "s/^${d}_ARGS=.*/${d}_ARGS=\"\"/" /etc/default/ganeti 2>/dev/null || true
  done
  sed -i '/^METAD_ARGS=/d' /etc/default/ganeti 2>/dev/null || true
  if findmnt -n "$UTS" >/dev/null 2>&1; then umount "$UTS"; fi
  rm -rf "$RUN"
  hosts_block remove
  [ -f /root/.ssh/authorized_keys ] && sed -i "/ $KEY_TAG\$/d" /root/.ssh/authorized_keys
  if [ -f "$STATE/created-root-key" ]; then rm -f /root/.ssh/id_rsa /root/.ssh/id_rsa.pub; fi
  if grep -qs "$KEY_TAG" /etc/ganeti/scripts/master-ip-setup; then rm -f /etc/ganeti/scripts/master-ip-setup; fi
  rm -rf "$STATE"
  say "cluster removed"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  gnt) shift; in_ns "$@" ;;
  *) echo "usage: $0 up|down|gnt COMMAND..." >&2; exit 2 ;;
esac
