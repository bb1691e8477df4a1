#!/bin/bash
# dist/ByenatOS.app (from byenatos.spec on macOS) -> dist/ByenatOS-<version>.dmg
# Usage: installers/macos/make_dmg.sh VERSION
# Signing: set CODESIGN_IDENTITY ("Developer ID Application: Your Name (TEAMID)") to sign the app
# and the dmg with the hardened runtime; set NOTARY_PROFILE (a `xcrun notarytool store-credentials`
# profile) to notarize and staple as well. Without them the dmg is unsigned (Gatekeeper will ask).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=${1:?usage: make_dmg.sh VERSION}
app=dist/ByenatOS.app
dmg=dist/ByenatOS-$version.dmg
[ -d "$app" ] || { echo "make_dmg: $app missing; run python -m installers build" >&2; exit 1; }

installers/macos/codesign.sh "$app"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"  # drag-to-install
rm -f "$dmg"
hdiutil create -volname "ByenatOS $version" -srcfolder "$stage" -ov -format UDZO "$dmg"

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
    codesign --sign "$CODESIGN_IDENTITY" --timestamp "$dmg"
    if [ -n "${NOTARY_PROFILE:-}" ]; then
        xcrun notarytool submit "$dmg" --keychain-profile "$NOTARY_PROFILE" --wait
        xcrun stapler staple "$dmg"
    fi
fi
echo "built $dmg"
