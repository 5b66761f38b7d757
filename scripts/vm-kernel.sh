#!/usr/bin/env bash
# Fetches the Debian kernel the machine-level test bed boots (linux-image-cloud-amd64: small, boots under qemu
# without KVM in seconds, and carries dm-mod, dm-snapshot and virtiofs as modules) into .vm/kernel, unpacked
# and with its module index built. Idempotent: an unpacked kernel is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.vm/kernel
if compgen -G "$dest/boot/vmlinuz-*" >/dev/null; then exit 0; fi
image=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')
[ -n "$image" ] || { echo "vm-kernel: no linux-image-cloud-amd64 in the package lists (run apt-get update)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# apt's sandbox user cannot write into a private temporary directory; the download itself is verified by apt.
chmod 755 "$work"
(cd "$work" && apt-get download -q "$image" 2>&1 | grep -v 'unsandboxed' || true)
deb=$(ls "$work"/*.deb)
rm -rf "$dest.partial"
mkdir -p "$dest.partial"
dpkg-deb -x "$deb" "$dest.partial"
version=$(ls "$dest.partial/lib/modules")
depmod -b "$dest.partial" "$version"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "vm-kernel: $version in $dest"
