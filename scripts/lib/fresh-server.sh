# Sourced by the scripts that drive a real server (sdk-check, schemathesis): `start_fresh_server BIN NAME`
# starts `sigil serve` on a free local port with a throw-away SQLite database, waits until it answers, and
# sets URL and ROOT_KEY (the key the server prints on its first start). The server is stopped and its files
# removed when the calling script exits.

SERVER_PID=""
SERVER_TMP=""

# `sigil_binary "$@"` sets BIN to the absolute path of the one argument, a sigil binary, or exits 2.
sigil_binary() {
  if [[ $# -ne 1 || ! -x "$1" ]]; then
    echo "usage: $0 PATH_TO_SIGIL_BINARY" >&2
    exit 2
  fi
  BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
}

# `limited_key PERMISSION`: a root key of the fresh server's workspace holding only PERMISSION.
limited_key() {
  "$BIN" root-key create --workspace default --database "sqlite://$SERVER_TMP/sigil.db" --permission "$1" | tail -n 1
}

stop_fresh_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  [[ -z "$SERVER_TMP" ]] || rm -rf "$SERVER_TMP"
}

show_server_logs() {
  echo "--- server stdout ---" >&2
  cat "$SERVER_TMP/stdout" >&2 || true
  echo "--- server stderr ---" >&2
  cat "$SERVER_TMP/stderr" >&2 || true
}

start_fresh_server() {
  local bin="$1" name="$2"
  SERVER_TMP="$(mktemp -d "${TMPDIR:-/tmp}/sigil-$name.XXXXXX")"
  trap stop_fresh_server EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  # A port that is free right now: bind port 0 and let the kernel choose.
  local port
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  URL="http://127.0.0.1:$port"
  "$bin" serve --listen "127.0.0.1:$port" --database "sqlite://$SERVER_TMP/sigil.db" \
    >"$SERVER_TMP/stdout" 2>"$SERVER_TMP/stderr" &
  SERVER_PID=$!

  for _ in $(seq 1 100); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "$name: the server exited during startup" >&2
      show_server_logs
      exit 1
    fi
    if curl -sf -o /dev/null "$URL/v2/liveness"; then
      # On a first start the server prints a notice, then the root key alone on the last line.
      ROOT_KEY="$(tail -n 1 "$SERVER_TMP/stdout" | tr -d '[:space:]')"
      if [[ -z "$ROOT_KEY" ]]; then
        echo "$name: no root key on the server's stdout" >&2
        show_server_logs
        exit 1
      fi
      return 0
    fi
    sleep 0.1
  done
  echo "$name: $URL/v2/liveness did not answer within 10 s" >&2
  show_server_logs
  exit 1
}
