#!/usr/bin/env bash
# Runs Unkey's v1 client (@unkey/api 0.38.0, see package.json) against a fresh Sigil server.
#
# Usage: scripts/sdk-check-v1/run.sh PATH_TO_SIGIL_BINARY
#
# Starts `sigil serve` on a free local port with a throw-away SQLite database,
# takes the root key it prints on first start, runs check.cjs, and always
# stops the server afterwards. Exits with check.cjs's status.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/fresh-server.sh
source "$HERE/../lib/fresh-server.sh"
sigil_binary "$@"
cd "$HERE"

if [[ ! -d node_modules ]]; then
  npm ci --no-audit --no-fund
fi

start_fresh_server "$BIN" sdk-check-v1

status=0
SIGIL_URL="$URL" SIGIL_ROOT_KEY="$ROOT_KEY" node check.cjs || status=$?
if [[ "$status" -ne 0 ]]; then
  show_server_logs
fi
exit "$status"
