#!/bin/bash
# The device-mapper guard (see watchdog.ts): reads what to undo from the engine on stdin, undoes it all when
# stdin ends without 'bye'. Run as `bash -c "$(cat guard.sh)"`: it is never read from a disk while it runs.
trap '' TERM INT HUP PIPE
export DM_DISABLE_UDEV=1
limits=() origins=() tables=() removals=() loops=() files=()
undo() {
  for l in "${limits[@]}"; do echo "${l#* } rbps=max wbps=max riops=max wiops=max" > "${l%% *}/io.max" 2>/dev/null; done
  for i in "${!origins[@]}"; do
    n=${origins[$i]}
    # Loaded while live, swapped in by one resume (which also resumes a device the engine left suspended).
    printf '%s' "${tables[$i]}" | dmsetup load "$n"
    dmsetup resume "$n"
  done
  for ((i=${#removals[@]}-1; i>=0; i--)); do dmsetup remove --retry "${removals[$i]}" 2>/dev/null; done
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null; done
  for f in "${files[@]}"; do rm -f -- "$f"; done
}
table=
while IFS= read -r line; do
  case "$line" in
    "limit "*) limits+=("${line#limit }") ;;
    "line "*) table+="${line#line }"$'\n' ;;
    "origin "*) origins+=("${line#origin }"); tables+=("$table"); table= ;;
    "remove "*) removals+=("${line#remove }") ;;
    "loop "*) loops+=("${line#loop }") ;;
    "file "*) files+=("${line#file }") ;;
    forget) limits=() origins=() tables=() removals=() loops=() files=() ;;
    bye) exit 0 ;;
  esac
done
undo
echo "diskline guard: the engine went away; undid its device-mapper and I/O-limit changes" >&2
