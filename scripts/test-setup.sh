#!/usr/bin/env bash
# Installs and builds what the tests need besides runboard's own crates, each only when missing:
# the system packages in one apt-get (Debian/Ubuntu, as root), the real model servers
# (scripts/llama-server.sh) and the web console's tools (wasm-bindgen-cli, npm's wasm-opt and
# playwright-core). Elsewhere it says what is missing and which tests will skip.
#
# stdout carries only the exports of the model servers, for the tests:
#   eval "$(scripts/test-setup.sh)"
# scripts/test.sh runs it first; CI runs it once before, in the background while the lints run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each part's wall time, on stderr (CI's log lists them).
part_start=$SECONDS
took() { echo "test-setup.sh: $1 took $((SECONDS - part_start)) s" >&2; part_start=$SECONDS; }

# What each missing package is for, said when it cannot be installed.
packages=()
reasons=()
need() {
  packages+=("${@:2}")
  reasons+=("$1: ${*:2}")
}

command -v python3 > /dev/null || need "the benchmark-stream client tests" python3
command -v curl > /dev/null || need "the benchmark-stream client tests" curl
command -v openssl > /dev/null || need "the TLS tests (a certificate authority made for them)" openssl
# The console's image snapshots render with wgpu on Mesa's software Vulkan (lavapipe).
ls /usr/share/vulkan/icd.d/lvp_icd.*.json > /dev/null 2>&1 \
  || need "the UI snapshot tests" mesa-vulkan-drivers libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri
# Model text in other scripts (tests/console/snapshots.rs) is drawn from the system's fonts.
# (Not `fc-list | grep -q`: with pipefail, fc-list dying of SIGPIPE would read as no font.)
if [ -z "$(fc-list :lang=zh 2> /dev/null)" ] || [ -z "$(fc-list :lang=ko 2> /dev/null)" ]; then
  need "the script snapshots (a CJK and an emoji font)" fontconfig fonts-noto-cjk fonts-noto-color-emoji
fi
# Two screenshots of a replay in a real window (tests/cli/record.rs) start their own Xvfb.
if [ -z "${DISPLAY:-}" ] && ! command -v Xvfb > /dev/null; then
  need "the replay screenshot test" xvfb
fi
# llama.cpp is built from source in a venv.
python3 -c "import venv, ensurepip" 2> /dev/null || need "the real llama.cpp server" python3-venv
command -v g++ > /dev/null || need "the real llama.cpp server" g++ make
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" > /dev/null \
  || need "the shared-store tests on PostgreSQL" postgresql-15
command -v chromium > /dev/null || need "the web console end to end" chromium
command -v npm > /dev/null || need "the web console's wasm-opt and browser driver" nodejs npm
# A real Prometheus scrapes the server, and its promtool checks /metrics and the alert rules.
command -v promtool > /dev/null || need "the Prometheus tests" prometheus

if [ "${#packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "test-setup.sh: installing ${packages[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${packages[@]}" > /dev/null
  else
    echo "note: missing (install them as root, or the tests that need them skip):" >&2
    printf '  %s\n' "${reasons[@]}" >&2
  fi
fi

took "the system packages"

# Arize Phoenix and opentelemetry-proto, the OTLP receivers of the export tests: mostly
# downloading and unpacking, so beside the compilers below rather than after them. Its exports
# are kept for the end.
phoenix_exports=$(mktemp)
trap 'rm -f "$phoenix_exports"' EXIT
phoenix_started=$SECONDS
phoenix=""
if [ -z "${RUNBOARD_PHOENIX:-}" ]; then
  scripts/phoenix.sh > "$phoenix_exports" &
  phoenix=$!
fi

# The real llama.cpp server and llama-cpp-python's, built once into target/llama/.
if [ -z "${RUNBOARD_LLAMA_SERVER:-}" ]; then
  scripts/llama-server.sh \
    || echo "note: llama-server could not be built; the tests against it say so and skip" >&2
fi
took "the model servers (scripts/llama-server.sh)"
# The web console's tools.
scripts/build-web.sh --tools >&2
took "the web console's tools"
if [ -n "$phoenix" ]; then
  if wait "$phoenix"; then
    cat "$phoenix_exports"
  else
    echo "note: Phoenix could not be installed; the OTLP tests say so and skip" >&2
  fi
  echo "test-setup.sh: the OTLP receivers (scripts/phoenix.sh, beside the rest) took" \
    "$((SECONDS - phoenix_started)) s in all" >&2
fi
