#!/usr/bin/env bash
# The README's screenshots, made from the committed recording assets/fleet.jsonl. A replay
# shown at a given recording second is the same picture every time (the console steps the
# recording's clock itself), so running this changes a PNG only when the UI changed.
#
#   scripts/screenshots.sh            redraw docs/screenshot.png and docs/screenshot-light.png
#   scripts/screenshots.sh --record   first record assets/fleet.jsonl again (40 s of the
#                                     synthetic generator; the pictures change with it)
#
# Needs a display: $DISPLAY, else a private Xvfb (apt-get install xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
bin=target/release/runboard
recording=assets/fleet.jsonl

if [ "${1:-}" = "--record" ]; then
  port=9391
  "$bin" serve --addr "127.0.0.1:$port" --db :memory: --seed 7 --failure-rate 0.15 \
    > /dev/null 2>&1 &
  server=$!
  trap 'kill "$server" 2> /dev/null || true' EXIT
  api="http://127.0.0.1:$port"
  until curl -sf "$api/api/health" > /dev/null; do sleep 0.2; done
  "$bin" record --api "$api" -o "$recording" --duration 40 &
  recorder=$!
  sleep 1
  "$bin" launch "draft a product description for a GPU" -n 6 --api "$api" > /dev/null
  sleep 12
  "$bin" launch "summarise the incident report" -n 4 --api "$api" > /dev/null
  wait "$recorder"
  kill "$server"
  trap - EXIT
fi

export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
if [ -z "${DISPLAY:-}" ]; then
  Xvfb :97 -screen 0 1600x1000x24 -nolisten tcp > /dev/null 2>&1 &
  xvfb=$!
  trap 'kill "$xvfb" 2> /dev/null || true' EXIT
  until [ -e /tmp/.X11-unix/X97 ]; do sleep 0.1; done
  export DISPLAY=:97
fi

shot() {
  "$bin" --replay "$recording" --after 20 --size 1440x900 "$@"
}
shot --theme dark --screenshot docs/screenshot.png
shot --theme light --screenshot docs/screenshot-light.png
