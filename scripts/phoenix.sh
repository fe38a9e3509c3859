#!/usr/bin/env bash
# Installs Arize Phoenix (an LLM observability app that receives OTLP traces) from PyPI into a
# venv of its own, target/phoenix/, once, for the OTLP export tests (tests/server/otlp.rs).
# Phoenix brings the OpenTelemetry project's `opentelemetry-proto`, with which the tests' own
# receiver (tests/fixtures/otlp_receiver.py) decodes what runboard sends.
#
# Needs python3 with venv and PyPI; about a minute and 0.9 GB the first time.
# stdout carries only the exports for the tests:
#   eval "$(scripts/phoenix.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

# The version the tests were written against; its REST API lists a project's spans.
PHOENIX_VERSION=20.26.1
dir=target/phoenix

# Installed at the version, with the `phoenix` program and the protobuf modules the tests'
# receiver imports (not `import phoenix`: that alone takes over ten seconds).
ready() {
  [ -x "$dir/bin/phoenix" ] \
    && [ "$("$dir/bin/python" -c 'import importlib.metadata as m
import opentelemetry.proto.collector.trace.v1.trace_service_pb2
print(m.version("arize-phoenix"))' 2> /dev/null)" = "$PHOENIX_VERSION" ]
}

if ! ready; then
  echo "phoenix.sh: installing arize-phoenix $PHOENIX_VERSION into $dir" >&2
  rm -rf "$dir"
  python3 -m venv "$dir" >&2
  "$dir/bin/pip" install -q --no-cache-dir "arize-phoenix==$PHOENIX_VERSION" >&2
fi
ready
echo "export RUNBOARD_PHOENIX='$PWD/$dir/bin/phoenix'"
echo "export RUNBOARD_OTLP_PYTHON='$PWD/$dir/bin/python'"
