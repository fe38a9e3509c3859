#!/usr/bin/env bash
# Runs every test: cargo's (with the real llama.cpp server, built once; the server's again on a
# throwaway PostgreSQL), then the web console in a real browser. What they need besides the
# crates is installed first when missing (scripts/test-setup.sh; Debian/Ubuntu, as root).
# Arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Everything the tests need besides the crates (scripts/test-setup.sh): Mesa's software Vulkan,
# fonts, Xvfb, PostgreSQL, Chromium, the real model servers, the web console's tools.
part_start=$SECONDS
eval "$(scripts/test-setup.sh)"
if [ -n "${RUNBOARD_REQUIRE_LLAMA:-}" ] && [ ! -x "${RUNBOARD_LLAMA_SERVER:-}" ]; then
  echo "error: llama-server could not be built, and RUNBOARD_REQUIRE_LLAMA is set" >&2
  exit 1
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

mark "installing what the tests need, building the model servers"

# winit and wgpu complain without a runtime dir; the tests need no display.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

# A throwaway PostgreSQL 15 (scripts/postgres.sh: installed as root when missing, run by an
# unprivileged user on a free loopback port, removed at the end) for the shared-store tests.
pg_dir=""
web_build=""
cleanup() {
  if [ -n "$web_build" ]; then kill -- "-$web_build" 2> /dev/null || true; fi
  if [ -n "$pg_dir" ]; then scripts/postgres.sh stop "$pg_dir"; fi
}
trap cleanup EXIT
if [ -z "${RUNBOARD_TEST_POSTGRES:-}" ]; then
  if pg_env="$(scripts/postgres.sh start)"; then
    eval "$pg_env"
    pg_dir="$RUNBOARD_TEST_PG_DIR"
  elif [ -n "${RUNBOARD_REQUIRE_POSTGRES:-}" ]; then
    echo "error: PostgreSQL could not be started, and RUNBOARD_REQUIRE_POSTGRES is set" >&2
    exit 1
  else
    echo "note: PostgreSQL could not be started; the shared-store tests say so and are skipped" >&2
  fi
fi
postgres_url="${RUNBOARD_TEST_POSTGRES:-}"

mark "starting PostgreSQL"

cargo test "$@" --no-run
mark "building the tests"

# The web console's bundle builds meanwhile, at the lowest priority: the tests wait on servers,
# models and timers much of the time, and the bundle (a release build for wasm32, then minutes of
# wasm-opt on one core) takes the time they leave. The end-to-end test below uses it.
mkdir -p target
# (Not setsid: a new session is a scheduler autogroup of its own, with an equal share of the CPU
# whatever its nice value. `set -m` gives it a process group, so that it can be stopped whole.)
set -m
nice -n 19 scripts/build-web.sh > target/build-web.log 2>&1 &
web_build=$!
set +m

# Every test, the server's on SQLite files.
RUNBOARD_TEST_POSTGRES="" RUNBOARD_REQUIRE_POSTGRES="" cargo test "$@"
mark "cargo test (running the tests on SQLite)"

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

if ! wait "$web_build"; then
  cat target/build-web.log >&2
  echo "error: the web console's bundle did not build (scripts/build-web.sh)" >&2
  exit 1
fi
web_build=""
grep -E '^(build-web.sh|wasm after)' target/build-web.log || true
mark "the rest of the web console's bundle, built beside the tests"

# The web console end to end in headless Chromium (the bundle built above is reused), served
# by the binary cargo test built (when it was given no options that could build it elsewhere).
if [ "$#" -eq 0 ] && [ -x target/debug/runboard ]; then
  export RUNBOARD_E2E_BINARY=target/debug/runboard
fi
scripts/web-e2e.sh
mark "the web console end to end"
