#!/usr/bin/env bash
# Runs every test. The console's image snapshots render with wgpu on Mesa's software Vulkan
# (lavapipe), so Mesa is installed first when it is missing (Debian/Ubuntu, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

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
# winit and wgpu complain without a runtime dir; the tests need no display.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

cargo test "$@"
