#!/bin/bash
# The rescue system's first process: mounts what the engine expects, loads the drivers a restore may need, and
# runs the rescue program on the console — unattended when the kernel command line asks for it, else its menu.
# Being process 1 it never exits: the program's end powers the machine off (or reboots it, when asked).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/opt/diskline/bin:/usr/lib/diskline-rescue/busybox
export HOME=/root TERM=${TERM:-linux}
# Compiled when the media was built, for these very paths: starting the engine under a slow CPU is mostly compiling.
export NODE_COMPILE_CACHE=/opt/diskline/compile-cache
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=0755 run-tmp /tmp
mkdir -p /dev/pts /dev/shm /run/lock /var/lib/diskline
mount -t devpts devpts /dev/pts 2>/dev/null
# devtmpfs makes device nodes only; bash's process substitution needs /dev/fd.
ln -sfn /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
ln -sf /proc/self/mounts /etc/mtab
for module in loop dm-mod dm-snapshot fuse vfat nls_cp437 nls_iso8859-1 nls_utf8 btrfs xfs ntfs3; do
  modprobe -q "$module" 2>/dev/null
done
hostname diskline-rescue
# The running system is the media, not the machine's fixed disks: the engine refuses only the media's disk as
# "the running system" (its other checks — mounted, in use, too small — stand as they are).
media=$(cat /run/rescue/media-device 2>/dev/null)
if [ -n "$media" ]; then
  path=$(readlink -f "/sys/class/block/$media")
  [ -f "$path/partition" ] && media=$(basename "$(dirname "$path")")
  export DISKLINE_SYSTEM_DISKS="/dev/$media"
fi
/usr/lib/diskline-rescue/rescue </dev/console >/dev/console 2>&1
status=$?
sync
echo "diskline rescue: finished (status $status)"
if grep -qw diskline.reboot /proc/cmdline; then reboot -f; fi
poweroff -f
# poweroff returned: stay alive so the kernel does not panic on process 1 exiting.
while :; do sleep 3600; done
