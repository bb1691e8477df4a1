#!/usr/bin/env bash
# Node and the npm MCP reference servers the MCP host's tests run against
# (@modelcontextprotocol/server-everything and server-filesystem, pinned in
# tests/fakes/npm_mcp/package-lock.json). Installs node from apt where it is missing and we are
# root (CI); elsewhere it says so, and those tests skip with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=tests/fakes/npm_mcp

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "» installing node and npm (the npm MCP reference servers' tests need them)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  else
    echo "note: node is missing; the npm MCP reference servers' tests will skip (sudo apt-get install nodejs npm)" >&2
    exit 0
  fi
fi
stamp="$dir/node_modules/.installed-from-lock"
if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
  echo "» npm ci: MCP reference servers"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$stamp"
fi
