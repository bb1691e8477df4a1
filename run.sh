#!/usr/bin/env bash
# Sets up ByenatOS in .venv on first use (Python 3.11+), then runs it.
# Until the desktop app lands, this runs the headless daemon: `byenatos serve`.
# Extra arguments go to `byenatos serve` (e.g. ./run.sh --port 9000).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
export LITELLM_LOCAL_MODEL_COST_MAP=True
exec .venv/bin/byenatos serve "$@"
