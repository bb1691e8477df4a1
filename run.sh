#!/usr/bin/env bash
# Sets up ByenatOS in .venv on first use (Python 3.11+), then runs it.
# With no arguments it opens the desktop app (window, tray, hotkey assistant);
# `./run.sh serve [--port 9000]` runs the headless daemon instead, as do other CLI commands.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
export LITELLM_LOCAL_MODEL_COST_MAP=True
exec .venv/bin/byenatos "$@"
