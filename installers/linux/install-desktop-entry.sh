#!/bin/sh
# Portable build: add ByenatOS to your desktop's menu for this user (no root). Undo with --remove.
set -eu
here=$(dirname "$(readlink -f "$0")")
data=${XDG_DATA_HOME:-$HOME/.local/share}
if [ "${1:-}" = "--remove" ]; then
    rm -f "$data/applications/byenatos.desktop" "$data/icons/hicolor/scalable/apps/byenatos.svg"
    echo "removed the menu entry (your ByenatOS data is untouched)"
    exit 0
fi
mkdir -p "$data/applications" "$data/icons/hicolor/scalable/apps"
sed "s|^Exec=byenatos|Exec=$here/byenatos|" "$here/share/byenatos.desktop" >"$data/applications/byenatos.desktop"
cp "$here/share/byenatos.svg" "$data/icons/hicolor/scalable/apps/byenatos.svg"
echo "added ByenatOS to the menu ($data/applications/byenatos.desktop)"
