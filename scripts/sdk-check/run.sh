#!/usr/bin/env bash
# Runs the official @unkey/api SDK (see package.json) against a fresh Sigil server.
#
# Usage: scripts/sdk-check/run.sh PATH_TO_SIGIL_BINARY
#
# Starts `sigil serve` on a free local port with a throw-away SQLite database,
# takes the root key it prints on first start, runs check.mjs, and always
# stops the server afterwards. Exits with check.mjs's status.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/fresh-server.sh
source "$HERE/../lib/fresh-server.sh"
sigil_binary "$@"
cd "$HERE"

if [[ ! -d node_modules ]]; then
  npm ci --no-audit --no-fund
fi

start_fresh_server "$BIN" sdk-check

# Keys that may only read, or only create, for the permission errors.
READ_ONLY_KEY="$(limited_key 'identity.*.read_identity')"
CREATE_ONLY_KEY="$(limited_key 'identity.*.create_identity')"
# Keys that may only read APIs, or only read keys, for the apis.* and keys.* permission errors.
API_READER_KEY="$(limited_key 'api.*.read_api')"
KEY_READER_KEY="$(limited_key 'api.*.read_key')"
# A key that may only verify keys, for keys.verifyKey.
VERIFIER_KEY="$(limited_key 'api.*.verify_key')"

status=0
SIGIL_URL="$URL" SIGIL_ROOT_KEY="$ROOT_KEY" SIGIL_READ_ONLY_KEY="$READ_ONLY_KEY" SIGIL_CREATE_ONLY_KEY="$CREATE_ONLY_KEY" \
  SIGIL_API_READER_KEY="$API_READER_KEY" SIGIL_KEY_READER_KEY="$KEY_READER_KEY" SIGIL_VERIFIER_KEY="$VERIFIER_KEY" \
  node check.mjs || status=$?
if [[ "$status" -ne 0 ]]; then
  show_server_logs
fi
exit "$status"
