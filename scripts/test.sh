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
# Model text in other scripts (tests/console/snapshots.rs) is drawn from the system's fonts, as
# the native console does: a CJK font and an emoji font.
if ! fc-list :lang=zh 2> /dev/null | grep -q . || ! fc-list :lang=ko 2> /dev/null | grep -q .; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing CJK and emoji fonts for the script snapshots"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends fontconfig fonts-noto-cjk fonts-noto-color-emoji > /dev/null
  else
    echo "note: no CJK font (sudo apt-get install fonts-noto-cjk fonts-noto-color-emoji); its snapshot is skipped" >&2
  fi
fi
# Two screenshots of a replay in a real window (tests/cli/record.rs) need an X server: the test
# starts its own Xvfb when DISPLAY is not set.
if [ -z "${DISPLAY:-}" ] && ! command -v Xvfb > /dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing Xvfb for the replay screenshot test"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends xvfb > /dev/null
  else
    echo "note: no DISPLAY and no Xvfb (sudo apt-get install xvfb); the replay screenshot test is skipped" >&2
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

# Wall time of each part, said as it ends (CI lists them).
mark() { printf '== test.sh: %s took %d s\n' "$1" $((SECONDS - part_start)); part_start=$SECONDS; }
part_start=0

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

mark "installing what the tests need, building the model servers"

# winit and wgpu complain without a runtime dir; the tests need no display.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

# A throwaway PostgreSQL 15 (scripts/postgres.sh: installed as root when missing, run by an
# unprivileged user on a free loopback port, removed at the end) for the shared-store tests.
pg_dir=""
if [ -z "${RUNBOARD_TEST_POSTGRES:-}" ]; then
  if pg_env="$(scripts/postgres.sh start)"; then
    eval "$pg_env"
    pg_dir="$RUNBOARD_TEST_PG_DIR"
    trap 'scripts/postgres.sh stop "$pg_dir"' EXIT
  elif [ -n "${RUNBOARD_REQUIRE_POSTGRES:-}" ]; then
    echo "error: PostgreSQL could not be started, and RUNBOARD_REQUIRE_POSTGRES is set" >&2
    exit 1
  else
    echo "note: PostgreSQL could not be started; the shared-store tests say so and are skipped" >&2
  fi
fi
postgres_url="${RUNBOARD_TEST_POSTGRES:-}"

mark "starting PostgreSQL"

# Every test, the server's on SQLite files.
RUNBOARD_TEST_POSTGRES="" RUNBOARD_REQUIRE_POSTGRES="" cargo test "$@"
mark "cargo test (building the tests and running them on SQLite)"

# The server's tests again, each on a database of its own in PostgreSQL, and the shared-store
# tests of several `runboard serve` processes on one database.
if [ -n "$postgres_url" ]; then
  echo "== the server's tests on PostgreSQL ($postgres_url)"
  # Not again: the tests of SQLite files themselves (faults, schema by sqlite3, the recorded
  # exchange), which run on SQLite whatever the backend.
  RUNBOARD_TEST_POSTGRES="$postgres_url" RUNBOARD_REQUIRE_POSTGRES=1 \
    cargo test "$@" --test server -- --skip store_faults:: --skip schema:: --skip exchange::
  RUNBOARD_TEST_POSTGRES="$postgres_url" RUNBOARD_REQUIRE_POSTGRES=1 \
    cargo test "$@" --test cli -- shared_store::
  mark "the server's tests on PostgreSQL"
fi

# The web console end to end in headless Chromium (builds the bundle first; installs trunk,
# wasm-bindgen-cli, wasm-opt and chromium when missing), served by the binary cargo test built
# (when it was given no options that could build it elsewhere).
if [ "$#" -eq 0 ] && [ -x target/debug/runboard ]; then
  export RUNBOARD_E2E_BINARY=target/debug/runboard
fi
scripts/web-e2e.sh
mark "the web console end to end"
