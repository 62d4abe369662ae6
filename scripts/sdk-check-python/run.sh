#!/usr/bin/env bash
# Runs Unkey's official Python client (unkey.py, see requirements.txt) against a fresh Sigil server.
#
# Usage: scripts/sdk-check-python/run.sh PATH_TO_SIGIL_BINARY
#
# Installs the client into a virtualenv of its own (.venv, once), starts `sigil serve` on a free local
# port with a throw-away SQLite database, mints root keys of one permission each beside it (identity read,
# identity create, API read, key read, key verify), runs check.py, and always stops the server afterwards. Exits with
# check.py's status.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/fresh-server.sh
source "$HERE/../lib/fresh-server.sh"
sigil_binary "$@"
cd "$HERE"

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
fi

start_fresh_server "$BIN" sdk-check-python

status=0
SIGIL_URL="$URL" SIGIL_ROOT_KEY="$ROOT_KEY" SIGIL_READ_ONLY_KEY="$(limited_key 'identity.*.read_identity')" \
  SIGIL_CREATE_ONLY_KEY="$(limited_key 'identity.*.create_identity')" \
  SIGIL_API_READER_KEY="$(limited_key 'api.*.read_api')" SIGIL_KEY_READER_KEY="$(limited_key 'api.*.read_key')" \
  SIGIL_VERIFIER_KEY="$(limited_key 'api.*.verify_key')" \
  .venv/bin/python check.py || status=$?
if [[ "$status" -ne 0 ]]; then
  show_server_logs
fi
exit "$status"
