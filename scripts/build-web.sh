#!/usr/bin/env bash
# Builds the web console into dist/ (served by `runboard serve` at /, or built into the binary
# with `--features embed-web`). Three tools and no bundler: cargo builds the wasm, wasm-bindgen
# writes its JavaScript glue, wasm-opt shrinks it; the page is index.html with the script that
# loads them in place of its `runboard-loader` comment. Files get a hash of their content in their names, so
# the server can let browsers keep them (only the page is asked again).
#
# Installs what it needs when missing: the wasm32 target, wasm-bindgen-cli at the version in
# Cargo.lock, and wasm-opt (npm's binaryen; Debian's is too old and breaks the bundle).
#
# Usage: scripts/build-web.sh [--tools]   (--tools: install the tools, build nothing)
# RUNBOARD_WEB_DIST: where to write the bundle (default dist). Run again with the same wasm, it
# reuses the last wasm-bindgen and wasm-opt output (wasm-opt alone takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

dist="${RUNBOARD_WEB_DIST:-dist}"
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

rustup target add wasm32-unknown-unknown > /dev/null 2>&1 || true
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
wasm_opt="$PWD/web-e2e/node_modules/.bin/wasm-opt"
[ "${1:-}" = "--tools" ] && exit 0

started=$SECONDS
cargo build --release --target wasm32-unknown-unknown --bin runboard
echo "build-web.sh: cargo build took $((SECONDS - started)) s"

stage="$target_dir/web-bundle"
input="$target_dir/wasm32-unknown-unknown/release/runboard.wasm"
stamp="$(sha256sum "$input" | cut -c 1-64) $(wasm-bindgen --version)"
if [ "$(cat "$stage/input.stamp" 2> /dev/null)" = "$stamp" ] && [ -f "$stage/runboard_bg.opt.wasm" ]; then
  echo "build-web.sh: the wasm is unchanged since the last bundle; its wasm-opt output is reused"
else
  rm -rf "$stage"
  mkdir -p "$stage"
  wasm-bindgen --target web --no-typescript --out-dir "$stage" --out-name runboard "$input"
  before=$(stat -c %s "$stage/runboard_bg.wasm")
  started=$SECONDS
  "$wasm_opt" -Oz --output "$stage/runboard_bg.opt.wasm" "$stage/runboard_bg.wasm"
  echo "build-web.sh: wasm-opt -Oz took $((SECONDS - started)) s: $before → $(stat -c %s "$stage/runboard_bg.opt.wasm") bytes"
  echo "$stamp" > "$stage/input.stamp"
fi
after=$(stat -c %s "$stage/runboard_bg.opt.wasm")
rm -rf "$stage/out"
mkdir -p "$stage/out"

hash=$(cat "$stage/runboard_bg.opt.wasm" "$stage/runboard.js" | sha256sum | cut -c 1-16)
script="runboard-$hash.js"
wasm="runboard-${hash}_bg.wasm"
cp "$stage/runboard.js" "$stage/out/$script"
cp "$stage/runboard_bg.opt.wasm" "$stage/out/$wasm"

# The page: the loader comment becomes the preloads and the module that starts the console (the
# binary's main runs when the module is initialised). Relative paths, so the bundle also works
# under a path prefix.
loader="<link rel=\"modulepreload\" href=\"./$script\">
  <link rel=\"preload\" href=\"./$wasm\" as=\"fetch\" type=\"application/wasm\" crossorigin=\"anonymous\">
  <script type=\"module\">
    import init from \"./$script\";
    init({ module_or_path: \"./$wasm\" }).catch((error) => {
      const box = document.getElementById(\"runboard_loading\");
      box.className = \"failed\";
      box.textContent = \"runboard could not load its code: \" + error;
    });
  </script>"
LOADER="$loader" python3 - index.html "$stage/out/index.html" << 'PY'
import os, re, sys
page = open(sys.argv[1], encoding="utf-8").read()
page, count = re.subn(r"<!-- runboard-loader:[^>]*-->", lambda _: os.environ["LOADER"], page)
if count != 1:
    sys.exit("index.html: expected one <!-- runboard-loader: ... --> comment, found %d" % count)
open(sys.argv[2], "w", encoding="utf-8").write(page)
PY

rm -rf "$dist"
mkdir -p "$(dirname "$dist")"
cp -r "$stage/out" "$dist"
echo "wasm after wasm-opt: $after bytes ($dist/$wasm)"
