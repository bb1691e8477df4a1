#!/bin/sh
# Install the .deb into a temporary root, run it (serve, window, offline embedding), uninstall.
# Usage: installers/linux/verify.sh [--build] [--deb PATH] [--runs N] [--keep]
set -eu
cd "$(dirname "$0")/../.."
py=.venv/bin/python
[ -x "$py" ] || py=python3
exec "$py" -m installers.linux.verify "$@"
