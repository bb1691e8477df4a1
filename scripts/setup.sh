#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs ByenatOS with the extras named in $BYENATOS_EXTRAS.
# Idempotent and quick when nothing changed: a stamp file remembers what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${BYENATOS_EXTRAS:-gui,local}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      py="$cand"; break
    fi
  done
fi
[ -n "$py" ] || { echo "ByenatOS needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "» creating .venv with $py"
  "$py" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)

stamp=".venv/.byenatos-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) extras=$extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "» installing ByenatOS [$extras] into .venv"
  "${pip[@]}" install --upgrade pip wheel >/dev/null
  if [[ ",$extras," == *",local,"* ]] && ! .venv/bin/python -c 'import llama_cpp' 2>/dev/null; then
    # llama-cpp-python ships as source: build it portable (no -march=native) once;
    # pip keeps the built wheel in its cache, so later installs take seconds.
    echo "» building llama-cpp-python (first time only: ~6 min on 2 cores)"
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "${pip[@]}" install "llama-cpp-python>=0.3.0"
  fi
  "${pip[@]}" install -e ".[$extras]"
  echo "$want" > "$stamp"
fi
# The local embedding model for personal memory (~90 MB, once per machine; a no-op when present).
.venv/bin/python scripts/fetch_embedding_model.py
