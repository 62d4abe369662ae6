#!/usr/bin/env bash
# Runs the official @unkey/api SDK (see package.json) against a fresh Sigil server.
#
# Usage: scripts/sdk-check/run.sh PATH_TO_SIGIL_BINARY
#
# Starts `sigil serve` on a free local port with a throw-away SQLite database,
# takes the root key it prints on first start, runs check.mjs, and always
# stops the server afterwards. Exits with check.mjs's status.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 PATH_TO_SIGIL_BINARY" >&2
  exit 2
fi
if [[ ! -x "$1" ]]; then
  echo "run.sh: '$1' is not an executable file" >&2
  exit 2
fi
BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

if [[ ! -d node_modules ]]; then
  npm ci --no-audit --no-fund
fi

# shellcheck source=../lib/fresh-server.sh
source "$HERE/../lib/fresh-server.sh"
start_fresh_server "$BIN" sdk-check

# Keys that may only read, or only create, for the permission errors.
limited_key() {
  "$BIN" root-key create --workspace default --database "sqlite://$SERVER_TMP/sigil.db" --permission "$1" | tail -n 1
}
READ_ONLY_KEY="$(limited_key 'identity.*.read_identity')"
CREATE_ONLY_KEY="$(limited_key 'identity.*.create_identity')"

status=0
SIGIL_URL="$URL" SIGIL_ROOT_KEY="$ROOT_KEY" SIGIL_READ_ONLY_KEY="$READ_ONLY_KEY" SIGIL_CREATE_ONLY_KEY="$CREATE_ONLY_KEY" \
  node check.mjs || status=$?
if [[ "$status" -ne 0 ]]; then
  show_server_logs
fi
exit "$status"
