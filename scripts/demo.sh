#!/usr/bin/env bash
# The main job end to end on the embedded default store (local backend, SQLite catalog):
# build a small disk image, upload it (an Object), register it (an Image), clone a Volume from it,
# snapshot the volume (a Snapshot), turn the snapshot into an Image, and show the lineage.
# Re-runnable: it first removes what an earlier run left. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh >/dev/null
atoll=.venv/bin/atoll
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Leftovers of an earlier run (children first; a missing one is fine).
for v in demo-vm demo-vm2; do $atoll volume delete "$v" >/dev/null 2>&1 || true; done
$atoll image delete demo-vm-monday >/dev/null 2>&1 || true
$atoll image delete demo-debian >/dev/null 2>&1 || true
$atoll object delete images/demo-debian.raw >/dev/null 2>&1 || true

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "build a 256 MiB GPT disk with an ext4 root filesystem"
mkdir -p "$work/root/etc" "$work/root/root"
echo template > "$work/root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\ttemplate\n' > "$work/root/etc/hosts"
printf 'PRETTY_NAME="Atoll demo"\nID=debian\n' > "$work/root/etc/os-release"
truncate -s 256M "$work/disk.raw"
printf 'label: gpt\ntype=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' | sfdisk -q "$work/disk.raw"
read -r start sectors < <(partx -g -o START,SECTORS -n 1 "$work/disk.raw")
mkfs.ext4 -q -F -L root -d "$work/root" -E offset=$((start * 512)) "$work/disk.raw" $((sectors / 2))k

step "upload it: an Object"
$atoll object upload images/demo-debian.raw "$work/disk.raw" --meta source=demo

step "register it: an Image (no data moves)"
$atoll image register images/demo-debian.raw --name demo-debian \
    --property OSFAMILY=linux --property ROOT_PARTITION=1 --property USERS=root

step "clone a 1 GiB Volume from it (thin: no data copied) and customize it (hostname, grown partition)"
$atoll volume create demo-vm --from demo-debian --size 1G --hostname demo-vm

step "snapshot the volume: a read-only Snapshot"
$atoll volume snapshot demo-vm demo-vm-monday

step "turn the snapshot into an Image"
$atoll image set demo-vm-monday --unset EXCLUDE_ALL_TASKS

step "clone the new image, and show the lineage"
$atoll volume create demo-vm2 --from demo-vm-monday
$atoll resource show demo-vm2
$atoll image list --all
$atoll volume list
$atoll fsck
