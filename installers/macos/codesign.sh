#!/bin/bash
# Codesign hook: signs ByenatOS.app when CODESIGN_IDENTITY is set, otherwise ad-hoc signs it
# (enough to run on the build machine and on Apple Silicon; others see a Gatekeeper prompt).
# Usage: installers/macos/codesign.sh dist/ByenatOS.app
set -euo pipefail
app=${1:?usage: codesign.sh APP}
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${CODESIGN_IDENTITY:-}" ]; then
    codesign --force --deep --options runtime --timestamp \
        --entitlements "$here/entitlements.plist" --sign "$CODESIGN_IDENTITY" "$app"
else
    echo "codesign: CODESIGN_IDENTITY not set; ad-hoc signing (not for distribution)" >&2
    codesign --force --deep --sign - "$app"
fi
codesign --verify --deep --strict "$app"
