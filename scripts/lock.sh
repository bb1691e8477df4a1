#!/usr/bin/env bash
# Makes uv.lock: the exact versions, and the hashes of their files, that set-up installs
# (scripts/setup.sh) for every platform and Python the project ships. With uv, at the version the
# lock itself pins. See docs/dev/dependencies.md.
#
#   scripts/lock.sh                       after editing pyproject.toml's requirements: keeps
#                                         every pinned version that still fits
#   scripts/lock.sh --upgrade             every package to the newest version allowed; commit
#                                         uv.lock on its own, after ./test.sh passed on it
#   scripts/lock.sh --upgrade-package X   only X (and what it needs)
#   scripts/lock.sh --check               only say whether uv.lock is in step with pyproject.toml
#
# Other arguments go to `uv lock` as they are (--dry-run, --exclude-newer 2026-11-23T00:00:00Z…).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=.venv/bin
[ -d .venv/Scripts ] && bin=.venv/Scripts
uv="$bin/uv"
if [ -f uv.lock ]; then
  want="$("${PYTHON:-python3}" -m installers.lockfile pins uv | sed -n 's/^uv==\([^ ]*\).*/\1/p')"
else
  want=""  # no lock yet: any uv makes one
fi
if [ ! -x "$uv" ] || { [ -n "$want" ] && [ "$("$uv" --version | cut -d' ' -f2)" != "$want" ]; }; then
  # Not set up (or at another uv): a venv of its own for the pinned uv, hashed like the rest.
  tools=build/lock-tools
  [ -x "$tools/bin/python" ] || "${PYTHON:-python3}" -m venv "$tools"
  if [ -n "$want" ]; then
    "${PYTHON:-python3}" -m installers.lockfile pins uv > "$tools/uv.txt"
    "$tools/bin/python" -m pip install -q --require-hashes --no-deps -r "$tools/uv.txt"
  else
    "$tools/bin/python" -m pip install -q uv
  fi
  uv="$tools/bin/uv"
fi

"$uv" lock "$@"
if [[ " $* " == *" --upgrade"* ]] && [[ " $* " != *" --dry-run "* ]]; then
  cat <<'MSG'
» uv.lock upgraded. Next: ./test.sh on it, then commit uv.lock on its own, e.g.
    git commit -m "uv.lock: upgrade to the newest versions (tests pass)" uv.lock
  (docs/dev/dependencies.md says what to do when tests fail on the new versions)
MSG
fi
