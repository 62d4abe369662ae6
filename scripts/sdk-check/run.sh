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

TMP="$(mktemp -d "${TMPDIR:-/tmp}/sigil-sdk-check.XXXXXX")"
SERVER_PID=""

cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_server_logs() {
  echo "--- server stdout ---" >&2
  cat "$TMP/stdout" >&2 || true
  echo "--- server stderr ---" >&2
  cat "$TMP/stderr" >&2 || true
}

# A port that is free right now: bind port 0 and let the kernel choose.
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
URL="http://127.0.0.1:$PORT"

"$BIN" serve --listen "127.0.0.1:$PORT" --database "sqlite://$TMP/sigil.db" \
  >"$TMP/stdout" 2>"$TMP/stderr" &
SERVER_PID=$!

ready=0
for _ in $(seq 1 100); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "run.sh: the server exited during startup" >&2
    show_server_logs
    exit 1
  fi
  if curl -sf -o /dev/null "$URL/v2/liveness"; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ "$ready" -ne 1 ]]; then
  echo "run.sh: $URL/v2/liveness did not answer within 10 s" >&2
  show_server_logs
  exit 1
fi

# On first start with an empty database the server prints a notice, then the root key alone on the last line.
ROOT_KEY="$(tail -n 1 "$TMP/stdout" | tr -d '[:space:]')"
if [[ -z "$ROOT_KEY" ]]; then
  echo "run.sh: no root key on the server's stdout" >&2
  show_server_logs
  exit 1
fi

status=0
SIGIL_URL="$URL" SIGIL_ROOT_KEY="$ROOT_KEY" node check.mjs || status=$?
if [[ "$status" -ne 0 ]]; then
  show_server_logs
fi
exit "$status"
