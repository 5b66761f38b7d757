#!/bin/sh
# Diskline's initramfs-tools hook: puts dmsetup, util-linux's blkid and blockdev (busybox's blkid cannot look a
# PARTUUID up) and the list of protected partitions into the initramfs, so that the local-top script can stack a
# linear device-mapper target over each before anything mounts it.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
copy_exec /sbin/dmsetup /sbin
copy_exec /sbin/blkid /sbin
copy_exec /sbin/blockdev /sbin
manual_add_modules dm-mod dm-snapshot
mkdir -p "$DESTDIR/etc/diskline"
cp /etc/diskline/protected.conf "$DESTDIR/etc/diskline/protected.conf"
