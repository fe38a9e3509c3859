#!/usr/bin/env bash
# The web console end to end: build the bundle, serve it with the reference server, and drive
# it in headless Chromium (Debian's, through playwright-core): launch a batch from the page,
# wait for live tok/s and a finished run, save target/web-e2e.png.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium > /dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing chromium for the web end-to-end test"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium > /dev/null
  else
    echo "error: chromium is needed (apt-get install chromium)" >&2
    exit 1
  fi
fi
scripts/build-web.sh
# scripts/test.sh has just built the binary for the tests (with their features): it names it, and
# this runs it rather than building another one.
binary="${RUNBOARD_E2E_BINARY:-}"
if [ -z "$binary" ]; then
  cargo build --bin runboard
  binary=target/debug/runboard
fi

log=$(mktemp)
"$binary" serve --addr 127.0.0.1:0 --db :memory: --web-dir dist --speed 4 \
  2> "$log" &
server=$!
trap 'kill "$server" 2> /dev/null || true; rm -f "$log"' EXIT
url=""
for _ in $(seq 1 100); do
  url=$(grep -a -o 'http://127\.0\.0\.1:[0-9]*' "$log" | head -1 || true)
  [ -n "$url" ] && break
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "error: the server did not start:" >&2
  cat "$log" >&2
  exit 1
fi
echo "server on $url"
node web-e2e/e2e.mjs "$url/" target/web-e2e.png || { echo "the server's log (last 60 lines):" >&2; tail -n 60 "$log" >&2; exit 1; }
echo "screenshots: target/web-e2e-live.png, target/web-e2e.png"

# Again with runs generated on the real llama.cpp server (serve --upstream), when
# scripts/llama-server.sh has built it: real tok/s on the page.
if [ -x "${RUNBOARD_LLAMA_SERVER:-}" ] && [ -f "${RUNBOARD_SMALL_GGUF:-}" ]; then
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  llama_log=$(mktemp)
  "$RUNBOARD_LLAMA_SERVER" -m "$RUNBOARD_SMALL_GGUF" --host 127.0.0.1 --port "$port" \
    --metrics --slots -t 1 -np 4 --alias runboard-small > "$llama_log" 2>&1 &
  llama=$!
  trap 'kill "$server" "$llama" 2> /dev/null || true; rm -f "$log" "$llama_log"' EXIT
  healthy=""
  for _ in $(seq 1 600); do
    if curl -fs "http://127.0.0.1:$port/health" > /dev/null 2>&1; then healthy=1; break; fi
    kill -0 "$llama" 2> /dev/null || break
    sleep 0.1
  done
  if [ -z "$healthy" ]; then
    echo "error: llama-server did not become healthy on port $port:" >&2
    tail -n 40 "$llama_log" >&2
    exit 1
  fi
  # The first server is waited for, and the second writes to a log of its own: a server that is
  # stopping still writes ("stopping") at its own offset, and a log truncated under it fills with
  # NUL bytes that make grep call the file binary and find no URL (a CI run failed so).
  kill "$server" 2> /dev/null || true
  wait "$server" 2> /dev/null || true
  rm -f "$log"
  log=$(mktemp)
  "$binary" serve --addr 127.0.0.1:0 --db :memory: --web-dir dist \
    --upstream "llama=http://127.0.0.1:$port/v1" --upstream-max-tokens 24 2> "$log" &
  server=$!
  url=""
  for _ in $(seq 1 100); do
    url=$(grep -a -o 'http://127\.0\.0\.1:[0-9]*' "$log" | head -1 || true)
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "error: the server did not start:" >&2; cat "$log" >&2; exit 1; }
  echo "server on $url, generating on llama-server at port $port"
  # What the server read off the upstream, through its OpenAI-compatible /v1 (no run made).
  echo "models through runboard's /v1: $(curl -fsS "$url/v1/models")" \
    || { cat "$log" >&2; exit 1; }
  if ! E2E_MAX_STREAMS=3 E2E_LIVE_TIMEOUT_MS=120000 node web-e2e/e2e.mjs "$url/" target/web-e2e-real.png; then
    echo "the server's log (last 60 lines):" >&2
    tail -n 60 "$log" >&2
    echo "llama-server's log (last 40 lines):" >&2
    tail -n 40 "$llama_log" >&2
    exit 1
  fi
  echo "screenshots: target/web-e2e-real-live.png, target/web-e2e-real.png"
elif [ -n "${RUNBOARD_REQUIRE_LLAMA:-}" ]; then
  echo "error: RUNBOARD_REQUIRE_LLAMA is set but no llama-server and model for the real pass" >&2
  exit 1
else
  echo "note: no llama-server (scripts/llama-server.sh); the page's pass on a real model is skipped"
fi
