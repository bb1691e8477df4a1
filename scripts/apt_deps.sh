#!/usr/bin/env bash
# System libraries the Qt tests need on a fresh Debian/Ubuntu machine (PySide6 wheels bring Qt
# itself, not these), plus Xvfb and the trayer tray host for the real-X11 hotkey and tray tests. Installs only what is missing,
# and only where apt-get exists and we are root (CI); elsewhere it says what is missing.
set -euo pipefail

pkgs=(libegl1 libgl1 libglib2.0-0 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libfreetype6
      libdbus-1-3 libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
      libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 libxcb-xkb1
      libxrender1 libxi6 xvfb trayer
      bubblewrap xclip libnotify-bin)  # the run-code sandbox's isolation (app/kernel/tools/sandbox); the clipboard and notification tools

command -v dpkg-query >/dev/null || exit 0  # not Debian-like: nothing to do here
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "» installing system libraries for Qt: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "note: the Qt tests may need these packages: sudo apt-get install ${missing[*]}" >&2
fi
