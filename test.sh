#!/usr/bin/env bash
# Runs everything CI runs: set-up (venv, packages), lint, the import contract, the tests.
set -euo pipefail
cd "$(dirname "$0")"
BYENATOS_EXTRAS="gui,local,dev" scripts/setup.sh
scripts/apt_deps.sh  # system libraries the Qt tests need (installed only when missing)
scripts/node_deps.sh  # node and the npm MCP reference servers (installed only when missing)

export LITELLM_LOCAL_MODEL_COST_MAP=True QT_QPA_PLATFORM=offscreen
echo "» ruff"
.venv/bin/ruff check app tests bench
echo "» import contract (kernel stays Qt-free)"
.venv/bin/lint-imports
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
echo "» pytest: kernel, gateway, CLI"
.venv/bin/python -m pytest --ignore=tests/ui
# The desktop app's tests run in a process of their own: a QApplication and its qasync loop
# live for the whole process, and sharing it with hundreds of kernel tests' threads and
# native libraries is not what the app ever does.
echo "» pytest: desktop app"
.venv/bin/python -m pytest tests/ui
