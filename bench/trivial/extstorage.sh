#!/bin/sh
# A trivial Ganeti ExtStorage provider, the benches' floor: one sparse file per disk under $DIR and a
# loop device to attach it. Installed as one file per verb (they all run this script); no catalog, no
# clone, no customization: what Ganeti itself costs around a provider that does next to nothing.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
DIR=${TRIVIAL_DIR:-/srv/ganeti/trivial-disks}
disk="$DIR/$VOL_NAME"
devices() { losetup -j "$disk" -n -O NAME; }
case "$(basename "$0")" in
  create) mkdir -p "$DIR"; truncate -s "${VOL_SIZE}M" "$disk" ;;
  attach)
    dev=$(devices | head -n 1)
    [ -n "$dev" ] || dev=$(losetup -f --show "$disk")
    echo "$dev" ;;
  detach) for dev in $(devices); do losetup -d "$dev"; done ;;
  remove) for dev in $(devices); do losetup -d "$dev"; done; rm -f "$disk" ;;
  grow) truncate -s "${VOL_NEW_SIZE}M" "$disk"; for dev in $(devices); do losetup -c "$dev"; done ;;
  setinfo|verify|open|close) : ;;
  *) echo "trivial provider: unknown verb $(basename "$0")" >&2; exit 2 ;;
esac
