#!/bin/busybox sh
# The test bed's init (pid 1 of the guest's initramfs): mounts the host's root read-only over virtiofs, lays
# tmpfs over the places a test writes, runs the test script as root in that root, prints the script's exit
# status behind the run's marker on the console, and powers off. Written for busybox's sh.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
$bb mount -t devtmpfs dev /dev
# The harness lists the modules in load order: what a module needs goes in first.
for m in $($bb cat /lib/load-order); do
  $bb insmod /lib/$m.ko || echo "test bed: could not load $m"
done
. /run-settings.sh
status=125
if $bb mount -t virtiofs host /newroot -o ro; then
  # The host's root seen whole, before tmpfs hides its /tmp and /run: a project that lives there is bound back.
  $bb mkdir -p /hostroot
  $bb mount --bind /newroot /hostroot
  for d in tmp run var/tmp; do $bb mount -t tmpfs -o mode=1777 scratch /newroot/$d; done
  case "$PROJECT" in
    /tmp/* | /run/* | /var/tmp/*)
      $bb mkdir -p "/newroot$PROJECT"
      $bb mount --bind "/hostroot$PROJECT" "/newroot$PROJECT"
      ;;
  esac
  $bb mount --bind /dev /newroot/dev
  $bb mount -t proc proc /newroot/proc
  $bb mount -t sysfs sys /newroot/sys
  $bb cp /script.sh /newroot/run/diskline-vm-script.sh
  echo
  echo "$MARKER start"
  $bb chroot /newroot /usr/bin/env -i HOME=/tmp PATH="$GUEST_PATH" DISKLINE_VM=1 DM_DISABLE_UDEV=1 \
    DISKLINE_VM_KERNEL_ROOT="$KERNEL_ROOT" DISKLINE_PROJECT="$PROJECT" \
    /bin/bash -c 'cd "$DISKLINE_PROJECT" && exec /bin/bash /run/diskline-vm-script.sh'
  status=$?
  $bb sync
else
  echo "test bed: the host's root could not be mounted over virtiofs"
fi
echo
echo "$MARKER exit $status"
$bb poweroff -f
