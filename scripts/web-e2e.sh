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
cargo build --bin runboard

log=$(mktemp)
target/debug/runboard serve --addr 127.0.0.1:0 --db :memory: --web-dir dist --speed 4 \
  2> "$log" &
server=$!
trap 'kill "$server" 2> /dev/null || true; rm -f "$log"' EXIT
url=""
for _ in $(seq 1 100); do
  url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$log" | head -1 || true)
  [ -n "$url" ] && break
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "error: the server did not start:" >&2
  cat "$log" >&2
  exit 1
fi
echo "server on $url"
node web-e2e/e2e.mjs "$url/" target/web-e2e.png
echo "screenshots: target/web-e2e-live.png, target/web-e2e.png"
