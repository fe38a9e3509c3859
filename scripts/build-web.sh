#!/usr/bin/env bash
# Builds the web console into dist/ (served by `runboard serve` at /). Installs what it needs
# when missing: the wasm32 target, trunk, wasm-bindgen-cli at the version in Cargo.lock, and
# wasm-opt (npm's binaryen; Debian's is too old and breaks the bundle).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-unknown-unknown > /dev/null 2>&1 || true
if ! command -v trunk > /dev/null; then
  echo "installing trunk 0.21.14 (newer ones need a newer rustc)"
  cargo install trunk --version 0.21.14 --locked
fi
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2> /dev/null | awk '{print $2}')" != "$bindgen_version" ]; then
  echo "installing wasm-bindgen-cli $bindgen_version"
  # Not --locked: one locked dependency is missing from the registry mirror.
  cargo install wasm-bindgen-cli --version "$bindgen_version"
fi
if ! command -v npm > /dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm > /dev/null
  else
    echo "error: npm is needed for wasm-opt (apt-get install nodejs npm)" >&2
    exit 1
  fi
fi
(cd web-e2e && npm install --no-audit --no-fund --loglevel=error)
export PATH="$PWD/web-e2e/node_modules/.bin:$PATH"

trunk build --release
ls -l dist/*.wasm | awk '{ printf "wasm after wasm-opt: %s bytes\n", $5 }'
