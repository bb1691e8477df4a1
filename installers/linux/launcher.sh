#!/bin/sh
# /usr/bin/byenatos: runs the bundle installed under /opt/byenatos. The path is found relative to
# this script, so the package also works unpacked into another root (installers/linux/verify.sh).
here=$(dirname "$(readlink -f "$0")")
exec "$here/../../opt/byenatos/byenatos" "$@"
