#!/bin/sh
# Diskline's boot-time protection (initramfs-tools local-top, also run by hand in tests): for each line of
# /etc/diskline/protected.conf — "PARTUUID=<id> <name>" — stacks a linear device-mapper target named
# diskline-<name> over that partition, so that it is mounted from /dev/mapper/diskline-<name> and a snapshot can
# be inserted later by swapping the table. The target holds the partition open exclusively, so nothing mounts
# the partition itself. A root on a protected partition is pointed at the target through /conf/param.conf.
PREREQ="udev"
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
conf=${DISKLINE_PROTECTED_CONF:-/etc/diskline/protected.conf}
[ -r "$conf" ] || exit 0
modprobe dm-mod 2>/dev/null
while read -r id name; do
  case "$id" in PARTUUID=*) ;; *) continue ;; esac
  dev=$(blkid -l -o device -t "$id" 2>/dev/null)
  [ -n "$dev" ] || { echo "diskline: protected partition $id is not there; left as it is" >&2; continue; }
  [ -e "/dev/mapper/diskline-$name" ] && continue
  size=$(blockdev --getsz "$dev") || continue
  if dmsetup create "diskline-$name" --table "0 $size linear $dev 0"; then
    case "${ROOT:-}" in
      *=*) rootdev=$(blkid -l -o device -t "$ROOT" 2>/dev/null) ;;
      *) rootdev=$(readlink -f "${ROOT:-/nonexistent}" 2>/dev/null) ;;
    esac
    if [ "$rootdev" = "$dev" ] && [ -w /conf/param.conf ]; then
      echo "ROOT=/dev/mapper/diskline-$name" >> /conf/param.conf
    fi
  else
    echo "diskline: could not protect $dev ($id); it boots unprotected" >&2
  fi
done < "$conf"
exit 0
