#!/bin/busybox sh
# The rescue media's initramfs: loads the drivers that reach the media, finds the media by the id it was built
# with (a CD, a USB stick or a disk holding the image), mounts its compressed root read-only under a tmpfs
# overlay, and hands over to the rescue system. Nothing here writes to any disk.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
$bb mount -t devtmpfs dev /dev
for m in $($bb cat /lib/load-order); do $bb insmod "/lib/modules/$m.ko" 2>/dev/null; done
id=$($bb cat /media-id)
fail() {
  echo "diskline rescue: $*"
  echo "diskline rescue: dropping to a shell (exit powers off)"
  $bb sh
  $bb poweroff -f
}
$bb mkdir -p /media /lower /rw
tries=0
found=
while [ -z "$found" ]; do
  for dev in /sys/class/block/*; do
    name=${dev##*/}
    case $name in loop* | ram*) continue ;; esac
    for type in iso9660 vfat; do
      $bb mount -t $type -o ro "/dev/$name" /media 2>/dev/null || continue
      if [ "$($bb cat /media/diskline/media-id 2>/dev/null)" = "$id" ]; then
        found=$name
        break 2
      fi
      $bb umount /media
    done
  done
  [ -n "$found" ] && break
  tries=$((tries + 1))
  [ $tries -gt 300 ] && fail "the media (id $id) was not found on any disk"
  $bb sleep 0.2
done
echo "diskline rescue: media found on /dev/$found"
$bb mount -t squashfs -o loop,ro /media/diskline/root.squashfs /lower || fail "cannot mount the compressed root"
$bb mount -t tmpfs -o mode=0755 rw /rw
$bb mkdir -p /rw/upper /rw/work /newroot
$bb mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
  fail "cannot mount the root overlay"
$bb mkdir -p /newroot/run/rescue/media /newroot/run/rescue/lower
$bb mount --move /media /newroot/run/rescue/media
echo "$found" >/newroot/run/rescue/media-device
$bb umount /sys /proc
$bb mount --move /dev /newroot/dev
exec $bb switch_root /newroot /usr/lib/diskline-rescue/start
