#!/usr/bin/env bash
# Installs everything Diskline needs on a fresh Debian machine: system packages for the engine,
# its tests and benchmarks, the npm dependencies (with the pinned Node 24), and the native helper.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # interception: FUSE library and tools, loop devices (util-linux: losetup, mount; fdisk: sfdisk)
  fuse3 libfuse3-dev pkg-config util-linux fdisk
  # the repository's chunk codec: the native helper links libzstd, and uses OpenSSL (Node's own copy at run time;
  # the headers come with Node's, or from libssl-dev)
  libzstd-dev
  libssl-dev
  # file-system tools used to make and check test images
  e2fsprogs xfsprogs btrfs-progs dosfstools mtools ntfs-3g exfatprogs exfat-fuse
  # peers and load generators for tests and benchmarks
  partclone restic borgbackup fio qemu-utils zstd
  # keeps every core busy while the suite runs, to prove it passes on a loaded machine
  stress-ng
  # the renderer's end-to-end tests
  chromium xvfb
  # the machine-level test bed (vm/): qemu with virtiofsd, a static busybox for the guest's initramfs,
  # kmod to index the guest kernel's modules, dmsetup for device-mapper inside the guest
  qemu-system-x86 busybox-static kmod dmsetup
  # the boot proof: UEFI and BIOS firmware for qemu, GRUB's EFI and BIOS images for the small system disk it boots
  ovmf seabios grub-efi-amd64-bin grub-pc-bin
  # the reboot proof: initramfs-tools builds the protected system image's initramfs with the boot setup
  initramfs-tools-core
  # rescue media (diskline media): the compressed root and the hybrid ISO grub-mkrescue writes
  squashfs-tools xorriso
  # resizing partition tables (sgdisk -v checks a fitted GPT)
  gdisk
  # a real S3 store for the object-storage backend's tests and benchmarks: a one-node Ceph with radosgw
  ceph-mon ceph-osd radosgw ceph-common
  # building the native helper
  g++ make python3
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The guest kernel of the machine-level test bed (Debian's cloud kernel, unpacked into .vm/kernel).
bash scripts/vm-kernel.sh

# Electron's own postinstall downloads a binary from outside the npm registry; the shell is
# type-checked against its typings and run where a binary exists, so skip the download.
export ELECTRON_SKIP_BINARY_DOWNLOAD=1
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
npm run build
