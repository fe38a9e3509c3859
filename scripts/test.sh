#!/usr/bin/env bash
# Runs every test: cargo's, then the web console in a real browser. The console's image snapshots render with wgpu on Mesa's software Vulkan
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

# winit and wgpu complain without a runtime dir; the tests need no display.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

cargo test "$@"

# The web console end to end in headless Chromium (builds the bundle first; installs trunk,
# wasm-bindgen-cli, wasm-opt and chromium when missing).
scripts/web-e2e.sh
