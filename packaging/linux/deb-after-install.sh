#!/bin/sh
# Runs after the Diskline deb is installed (electron-builder's deb afterInstall): puts the engine's
# systemd unit and polkit policy where the system looks for them, links the CLI onto PATH, creates the
# 'diskline' group whose members may use the engine's socket, and (re)starts the service.
set -e
app=/opt/Diskline
resources="$app/resources/app"
packaging="$app/packaging/linux"

ln -sf "$resources/bin/diskline" /usr/bin/diskline
# The desktop launcher's name (the CLI owns plain 'diskline').
ln -sf "$app/diskline-desktop" /usr/bin/diskline-desktop

getent group diskline >/dev/null 2>&1 || groupadd --system diskline

for unit in "$packaging"/*.service; do
  [ -e "$unit" ] || continue
  install -m 0644 "$unit" "/lib/systemd/system/$(basename "$unit")"
done
for policy in "$packaging"/*.policy; do
  [ -e "$policy" ] || continue
  install -m 0644 "$policy" "/usr/share/polkit-1/actions/$(basename "$policy")"
done

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  for unit in "$packaging"/*.service; do
    [ -e "$unit" ] || continue
    systemctl enable "$(basename "$unit")" || true
    systemctl restart "$(basename "$unit")" || true
  done
fi
exit 0
