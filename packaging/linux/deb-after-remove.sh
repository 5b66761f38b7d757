#!/bin/sh
# Runs after the Diskline deb is removed: stops the engine service and removes what deb-after-install.sh
# put outside /opt/Diskline. Repositories, restore points and the engine's state (/var/lib/diskline) stay:
# they are the user's backups.
set -e
for name in diskline.service; do
  if [ -d /run/systemd/system ] && [ -e "/lib/systemd/system/$name" ]; then
    systemctl disable --now "$name" || true
  fi
  rm -f "/lib/systemd/system/$name"
done
rm -f /usr/share/polkit-1/actions/org.diskline.*.policy
[ -L /usr/bin/diskline ] && rm -f /usr/bin/diskline
[ -L /usr/bin/diskline-desktop ] && rm -f /usr/bin/diskline-desktop
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
exit 0
