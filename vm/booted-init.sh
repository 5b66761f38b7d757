#!/bin/busybox sh
# The test bed's init inside a booted system disk (installed there as /sbin/diskline-booted-init): the system's
# own initramfs has mounted its root and moved /dev, /proc, /sys and /run here. Records how the root came up,
# mounts the host's root read-only over virtiofs, binds the system's root in at /run/system, runs the test
# script there as root as vm/guest-init.sh does, prints its exit status behind the marker and powers off.
bb=/bin/busybox
for arg in $($bb cat /proc/cmdline); do
  case $arg in diskline.run=*) run=${arg#diskline.run=} ;; esac
done
status=125
if $bb mount -t virtiofs host /host -o ro; then
  # The run's folder is in the host's /tmp, which the tmpfs below hides: read it first.
  . "/host$run/run-settings.sh"
  $bb cp "/host$run/script.sh" /run/diskline-vm-script.sh
  $bb mkdir -p /run/hostroot
  $bb mount --bind /host /run/hostroot
  for d in tmp run var/tmp; do $bb mount -t tmpfs -o mode=1777 scratch /host/$d; done
  case "$PROJECT" in
    /tmp/* | /run/* | /var/tmp/*)
      $bb mkdir -p "/host$PROJECT"
      $bb mount --bind "/run/hostroot$PROJECT" "/host$PROJECT"
      ;;
  esac
  $bb cat /proc/self/mountinfo > /host/run/booted-mountinfo
  $bb mkdir -p /host/run/system
  $bb mount --bind / /host/run/system
  $bb mount --bind /dev /host/dev
  $bb mount -t proc proc /host/proc
  $bb mount -t sysfs sys /host/sys
  $bb cp /run/diskline-vm-script.sh /host/run/diskline-vm-script.sh
  echo
  echo "$MARKER start"
  $bb chroot /host /usr/bin/env -i HOME=/tmp PATH="$GUEST_PATH" DISKLINE_VM=1 DM_DISABLE_UDEV=1 \
    DISKLINE_VM_KERNEL_ROOT="$KERNEL_ROOT" DISKLINE_PROJECT="$PROJECT" \
    /bin/bash -c 'cd "$DISKLINE_PROJECT" && exec /bin/bash /run/diskline-vm-script.sh'
  status=$?
  $bb sync
else
  echo "booted system: the host's root could not be mounted over virtiofs"
fi
echo
echo "$MARKER exit $status"
$bb poweroff -f
