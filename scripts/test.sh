#!/usr/bin/env bash
# Runs every test: cargo's (with the real llama.cpp server, built once), then the web console in
# a real browser. The console's image snapshots render with wgpu on Mesa's software Vulkan
# (lavapipe), and the benchmark-stream tests run the seed's Python client and curl, so Mesa,
# python3 and curl are installed first when missing (Debian/Ubuntu, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v python3 > /dev/null || missing+=(python3)
command -v curl > /dev/null || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing ${missing[*]} for the benchmark-stream client tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
  else
    echo "note: ${missing[*]} missing; tests/server_bench.rs needs them" >&2
  fi
fi

if ! ls /usr/share/vulkan/icd.d/lvp_icd.*.json > /dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing Mesa's software Vulkan and GL for the UI snapshots"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
      mesa-vulkan-drivers libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri > /dev/null
  else
    echo "note: Mesa's lavapipe is missing; the UI snapshot tests need it" >&2
    echo "      (sudo apt-get install mesa-vulkan-drivers libvulkan1 libegl1 libgl1-mesa-dri)" >&2
  fi
fi
# The store-fault tests mount a small tmpfs for a real full disk and a read-only filesystem.
# That needs root with mount rights; elsewhere they are skipped, and this says so.
if [ -z "${RUNBOARD_SKIP_MOUNT_TESTS:-}" ]; then
  probe="$(mktemp -d)"
  if mount -t tmpfs -o size=1m tmpfs "$probe" 2> /dev/null; then
    umount "$probe"
  else
    echo "note: cannot mount a tmpfs here (needs root); the full-disk and read-only tests are skipped" >&2
    export RUNBOARD_SKIP_MOUNT_TESTS=1
  fi
  rmdir "$probe"
fi

# The real llama.cpp server (tests/server/llama.rs): built once into target/llama/ from the
# source on PyPI, with a tiny model the tests write. python3 needs venv; a C++ compiler builds it.
if [ -z "${RUNBOARD_LLAMA_SERVER:-}" ]; then
  llama_missing=()
  python3 -c "import venv, ensurepip" 2> /dev/null || llama_missing+=(python3-venv)
  command -v g++ > /dev/null || llama_missing+=(g++ make)
  if [ "${#llama_missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing ${llama_missing[*]} to build llama-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${llama_missing[@]}" > /dev/null
  fi
  if llama_env="$(scripts/llama-server.sh)"; then
    eval "$llama_env"
  elif [ -n "${RUNBOARD_REQUIRE_LLAMA:-}" ]; then
    echo "error: llama-server could not be built, and RUNBOARD_REQUIRE_LLAMA is set" >&2
    exit 1
  else
    echo "note: llama-server could not be built; the test against it says so and is skipped" >&2
  fi
fi

# winit and wgpu complain without a runtime dir; the tests need no display.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

cargo test "$@"

# The web console end to end in headless Chromium (builds the bundle first; installs trunk,
# wasm-bindgen-cli, wasm-opt and chromium when missing).
scripts/web-e2e.sh
