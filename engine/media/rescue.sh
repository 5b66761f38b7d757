#!/bin/bash
# The rescue program: finds a Diskline repository (a location baked into the media or given on the kernel
# command line, else by scanning the attached disks), lets the user choose a point and a target disk, and
# restores through `diskline restore` — the engine's restore job, with its preview, refusals and --yes — never a
# second pipeline. Unattended when the kernel command line says diskline.restore=…, diskline.target=… and
# diskline.confirm=<the target's name>; a text menu otherwise.
set -u
CONFIG=/etc/diskline-rescue
SCAN=/run/rescue/scan
REPO=''
REPO_DEVICE=''
PASSWORD_ARGS=()
mkdir -p "$SCAN"
# The scanned file systems are left clean whatever happens (the repository's was writable).
unmount_scanned() { for dir in "$SCAN"/*; do mountpoint -q "$dir" && umount "$dir"; done; }
trap unmount_scanned EXIT

say() { echo "diskline rescue: $*"; }
cmdline_value() {
  local word
  for word in $(cat /proc/cmdline); do
    case $word in "$1="*) echo "${word#"$1="}" && return 0 ;; esac
  done
  return 1
}
# The whole disk a block device belongs to (itself for a disk), from sysfs: there is no udev to ask.
disk_of() {
  local name=${1#/dev/} path
  path=$(readlink -f "/sys/class/block/$name")
  if [ -f "$path/partition" ]; then basename "$(dirname "$path")"; else echo "$name"; fi
}
media_disk() { disk_of "$(cat /run/rescue/media-device 2>/dev/null)"; }

# Mounts every file system on the attached disks (the media's own excepted) read-only under $SCAN and prints
# "device<TAB>directory" for each Diskline repository found up to three levels down.
scan_repositories() {
  local media name fstype dir config
  media=$(media_disk)
  for name in $(ls /sys/class/block); do
    case $name in loop* | ram* | zram*) continue ;; esac
    # Probed directly (blkid -p): without udev, lsblk knows no file-system types.
    fstype=$(blkid -p -s TYPE -o value "/dev/$name" 2>/dev/null)
    [ -n "$fstype" ] || continue
    case $fstype in swap | crypto_LUKS | LVM2_member | linux_raid_member | iso9660) continue ;; esac
    [ "$(disk_of "$name")" = "$media" ] && continue
    dir=$SCAN/$name
    mkdir -p "$dir"
    mountpoint -q "$dir" || mount -o ro "/dev/$name" "$dir" 2>/dev/null || continue
    while read -r config; do
      dir=${config%/config}
      [ -d "$dir/points" ] && grep -q '"chunkSize"' "$config" 2>/dev/null && printf '%s\t%s\n' "$name" "$dir"
    done < <(find "$SCAN/$name" -maxdepth 4 -name config -type f 2>/dev/null)
  done
}

# Makes a repository found at $2 on device $1 the one to use: its file system writable (a restore registers
# itself as a reader, so no prune deletes what it reads), the other scanned file systems unmounted.
use_repository() {
  local device=$1 dir=$2 mounted
  mounted=$SCAN/$device
  for other in "$SCAN"/*; do
    [ "$other" = "$mounted" ] || umount "$other" 2>/dev/null
  done
  mount -o remount,rw "$mounted" || {
    say "cannot make /dev/$device writable for the restore's reader registration"
    return 1
  }
  REPO=$dir
  REPO_DEVICE=$device
  say "repository: $REPO (on /dev/$device)"
}

# A location as baked in with --repo or given as diskline.repo=: DEVICE[:PATH], DEVICE being /dev/…, LABEL=…,
# UUID=… or PARTUUID=…; without PATH the file system is searched.
locate_repository() {
  local spec=$1 device path name found
  device=${spec%%:*}
  path=''
  [ "$device" != "$spec" ] && path=${spec#*:}
  case $device in
    /dev/*) name=${device#/dev/} ;;
    *=*) name=$(findfs "$device" 2>/dev/null) && name=${name#/dev/} ;;
    *) name='' ;;
  esac
  [ -n "$name" ] && [ -b "/dev/$name" ] || {
    say "the repository's device $device is not attached"
    return 1
  }
  mkdir -p "$SCAN/$name"
  mountpoint -q "$SCAN/$name" || mount -o ro "/dev/$name" "$SCAN/$name" || return 1
  if [ -n "$path" ]; then
    found=$SCAN/$name/${path#/}
    [ -f "$found/config" ] || {
      say "no Diskline repository at $path on /dev/$name"
      return 1
    }
  else
    found=$(scan_repositories | awk -F '\t' -v d="$name" '$1 == d { print $2; exit }')
    [ -n "$found" ] || {
      say "no Diskline repository on /dev/$name"
      return 1
    }
  fi
  use_repository "$name" "$found"
}

# The passphrase: diskline.key= (a file on the repository's file system, or in the rescue system), else the key
# file baked into the media, else (with a terminal) asked for.
choose_key() {
  local key
  PASSWORD_ARGS=()
  if key=$(cmdline_value diskline.key); then
    [ -f "$SCAN/$REPO_DEVICE/${key#/}" ] && key=$SCAN/$REPO_DEVICE/${key#/}
    PASSWORD_ARGS=(--password-file "$key")
  elif [ -f "$CONFIG/key" ]; then
    PASSWORD_ARGS=(--password-file "$CONFIG/key")
  elif grep -q '"encryption": *{' "$REPO/config" && [ "${1:-}" = ask ]; then
    read -rs -p 'Repository passphrase: ' DISKLINE_PASSWORD
    echo
    export DISKLINE_PASSWORD
  fi
}

find_repository() {
  local spec
  if spec=$(cmdline_value diskline.repo) || spec=$(cat "$CONFIG/repo" 2>/dev/null); then
    [ "$spec" != auto ] && {
      locate_repository "$spec"
      return
    }
  fi
  local found
  found=$(scan_repositories | head -n 1)
  [ -n "$found" ] || {
    say "no Diskline repository on the attached disks"
    return 1
  }
  use_repository "${found%%$'\t'*}" "${found#*$'\t'}"
}

# Refuses a target that holds the media or the repository; the engine refuses the rest (mounted, in use, too
# small) in its preview, before a byte is written.
target_allowed() {
  local target=$1 disk
  [ -b "$target" ] || {
    say "$target is not a block device"
    return 1
  }
  disk=$(disk_of "$target")
  if [ "$disk" = "$(media_disk)" ]; then
    say "refused: $target holds this rescue media"
    return 1
  fi
  if [ -n "$REPO_DEVICE" ] && [ "$disk" = "$(disk_of "$REPO_DEVICE")" ]; then
    say "refused: $target holds the repository"
    return 1
  fi
}

unattended() {
  local point target confirm status
  point=$(cmdline_value diskline.restore)
  target=$(cmdline_value diskline.target) || {
    say 'unattended restore: diskline.target= is missing'
    return 2
  }
  confirm=$(cmdline_value diskline.confirm)
  if [ "${confirm:-}" != "${target#/dev/}" ]; then
    say "unattended restore refused: diskline.confirm= must repeat the target's name (${target#/dev/})"
    echo 'DISKLINE-RESCUE: restore refused'
    return 3
  fi
  find_repository || {
    echo 'DISKLINE-RESCUE: restore failed (no repository)'
    return 1
  }
  target_allowed "$target" || {
    echo 'DISKLINE-RESCUE: restore refused'
    return 3
  }
  choose_key
  say "restoring point $point from $REPO onto $target (starting the engine can take a while)"
  diskline restore "$point" --repo "$REPO" --to "$target" --yes "${PASSWORD_ARGS[@]}"
  status=$?
  sync
  if [ $status -eq 0 ]; then echo 'DISKLINE-RESCUE: restore done'; else echo "DISKLINE-RESCUE: restore failed (exit $status)"; fi
  return $status
}

pick_repository() {
  local lines choice
  mapfile -t lines < <(scan_repositories)
  if [ ${#lines[@]} -eq 0 ]; then
    say 'no Diskline repository on the attached disks (menu 2 takes a location)'
    return 1
  fi
  for i in "${!lines[@]}"; do printf '  %d) /dev/%s  %s\n' $((i + 1)) "${lines[$i]%%$'\t'*}" "${lines[$i]#*$'\t'}"; done
  read -r -p 'Repository number: ' choice
  [[ $choice =~ ^[0-9]+$ ]] && [ "$choice" -ge 1 ] && [ "$choice" -le ${#lines[@]} ] || return 1
  choice=${lines[$((choice - 1))]}
  use_repository "${choice%%$'\t'*}" "${choice#*$'\t'}" && choose_key ask
}

restore_menu() {
  local point target typed
  [ -n "$REPO" ] || {
    say 'choose a repository first'
    return 1
  }
  diskline points --repo "$REPO" "${PASSWORD_ARGS[@]}"
  read -r -p "Point id (or 'latest'): " point
  [ -n "$point" ] || return 1
  lsblk -dno NAME,SIZE,MODEL,SERIAL | grep -v "^$(media_disk) "
  read -r -p 'Restore onto which disk (e.g. sda, nvme0n1)? ' target
  target=/dev/${target#/dev/}
  target_allowed "$target" || return 1
  diskline restore "$point" --repo "$REPO" --to "$target" --plan "${PASSWORD_ARGS[@]}" || return 1
  echo "Everything on $target will be replaced by point $point."
  read -r -p "Type the disk's name (${target#/dev/}) to restore onto it: " typed
  [ "$typed" = "${target#/dev/}" ] || {
    say 'not confirmed: nothing was written'
    return 1
  }
  diskline restore "$point" --repo "$REPO" --to "$target" --yes "${PASSWORD_ARGS[@]}"
}

menu() {
  local choice spec
  while :; do
    echo
    echo "Diskline rescue${REPO:+ — repository $REPO}"
    echo '  1) Find repositories on the attached disks'
    echo '  2) Use a repository at a location (DEVICE[:PATH])'
    echo '  3) List restore points'
    echo '  4) Restore a point onto a disk'
    echo '  5) Show disks'
    echo '  6) Shell (the diskline command is on the PATH)'
    echo '  7) Reboot'
    echo '  8) Power off'
    read -r -p 'Choice: ' choice || return 0
    case $choice in
      1) pick_repository ;;
      2) read -r -p 'Location: ' spec && locate_repository "$spec" && choose_key ask ;;
      3) [ -n "$REPO" ] && diskline points --repo "$REPO" "${PASSWORD_ARGS[@]}" ;;
      4) restore_menu ;;
      5) lsblk -o NAME,SIZE,TYPE,MODEL,SERIAL && blkid ;;
      6) bash -i ;;
      7) sync && reboot -f ;;
      8) return 0 ;;
    esac
  done
}

if cmdline_value diskline.restore >/dev/null; then
  unattended
else
  if spec=$(cat "$CONFIG/repo" 2>/dev/null) || spec=$(cmdline_value diskline.repo); then
    [ "$spec" = auto ] || { locate_repository "$spec" && choose_key ask; }
  fi
  menu
fi
