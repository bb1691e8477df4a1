#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs ByenatOS with the extras named in $BYENATOS_EXTRAS,
# at the exact versions (and file hashes) pinned in uv.lock.
# Idempotent and quick when nothing changed: a stamp file remembers what was installed.
#
#   BYENATOS_EXTRAS=gui,local   the extras (default gui,local; test.sh adds dev, the installer build dist)
#   BYENATOS_UNLOCKED=1         install the newest versions pyproject.toml allows instead of uv.lock's
#                               (also what happens when uv.lock is missing): a drift run, see
#                               docs/dev/dependencies.md
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${BYENATOS_EXTRAS:-gui,local}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.11 python3.12 python3.13 python3 python; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      py="$cand"; break
    fi
  done
fi
[ -n "$py" ] || { echo "ByenatOS needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

if [ ! -d .venv ]; then
  echo "» creating .venv with $py"
  "$py" -m venv .venv
fi
bin=.venv/bin
[ -d .venv/Scripts ] && bin=.venv/Scripts  # a venv made by a Windows Python (Git Bash on CI)
vpy="$bin/python"
pip=("$vpy" -m pip --disable-pip-version-check -q)

locked=1
if [ -n "${BYENATOS_UNLOCKED:-}" ] && [ "${BYENATOS_UNLOCKED}" != 0 ]; then
  locked=0; why="BYENATOS_UNLOCKED is set"
elif [ ! -f uv.lock ]; then
  locked=0; why="there is no uv.lock"
fi

stamp=".venv/.byenatos-installed"
if [ "$locked" = 1 ]; then
  want="$(cat pyproject.toml uv.lock scripts/setup.sh | sha256sum | cut -c1-16) extras=$extras locked"
else  # the newest versions: looked for again once a day
  want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) extras=$extras unlocked $(date -u +%F)"
fi
[ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && need=0 || need=1

build_llama_note() {
  if [[ ",$extras," == *",local,"* ]] && ! "$vpy" -c 'import llama_cpp' 2>/dev/null; then
    echo "» llama-cpp-python ships as source: pip builds it once per version and Python (~6 min on"
    echo "  2 cores) and keeps the wheel in its cache; with a cached wheel this takes seconds"
  fi
}
# llama.cpp built portable (no -march=native): the same wheel works on any CPU of the architecture.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"

if [ "$need" = 1 ] && [ "$locked" = 1 ]; then
  echo "» installing ByenatOS [$extras] into .venv, as pinned in uv.lock"
  # First the set-up tools themselves (pip, setuptools, wheel, uv: pinned and hashed in uv.lock),
  # then uv turns the lock into the requirements of these extras for that pip to install.
  setup_req=".venv/byenatos-setup-requirements.txt"
  "$vpy" -m installers.lockfile pins pip setuptools wheel uv > "$setup_req"
  "${pip[@]}" install --require-hashes --no-deps -r "$setup_req"
  args=(--no-emit-project --group setup --format requirements-txt --quiet)
  for extra in ${extras//,/ }; do args+=(--extra "$extra"); done
  locked_req=".venv/byenatos-requirements.txt"
  if ! "$bin/uv" export --locked "${args[@]}" -o "$locked_req"; then
    echo "uv.lock does not match pyproject.toml: run scripts/lock.sh (see docs/dev/dependencies.md)" >&2
    exit 1
  fi
  build_llama_note
  "${pip[@]}" install --require-hashes -r "$locked_req"
  # What these extras do not list goes, unless at its locked version (another extra's): what an
  # unlocked run or an older lock left.
  "$vpy" -m installers.lockfile extraneous "$locked_req" | while read -r name; do
    echo "» removing $name (not as uv.lock pins it, nor asked for by [$extras])"
    "${pip[@]}" uninstall -y "$name"
  done
  "${pip[@]}" install --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
elif [ "$need" = 1 ]; then
  echo "» installing ByenatOS [$extras] into .venv at the NEWEST versions ($why; not what CI tested)"
  "${pip[@]}" install --upgrade pip setuptools wheel uv
  build_llama_note
  "${pip[@]}" install --upgrade --upgrade-strategy eager -e ".${extras:+[$extras]}"
  echo "$want" > "$stamp"
fi
# The local embedding model for personal memory (~90 MB, once per machine; a no-op when present).
"$vpy" scripts/fetch_embedding_model.py
