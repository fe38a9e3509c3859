#!/usr/bin/env bash
# Builds llama.cpp's own server (`llama-server`, with --metrics and --slots) from the source that
# ships in the llama-cpp-python package on PyPI, and writes two random models for it
# (tests/fixtures/write_tiny_gguf.py): a tiny fast one and a slower one. They land in
# target/llama/ and are reused on the next run.
# Prints the paths as `export` lines for the tests (see tests/server/llama.rs).
#
# Needs python3 (with venv), a C++ compiler and PyPI; takes about 5 minutes on 2 cores the first
# time. Usage: eval "$(scripts/llama-server.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.3.36
dir="$PWD/target/llama"
binary="$dir/llama-server"
model="$dir/tiny.gguf"
mkdir -p "$dir"

log() { echo "llama-server.sh: $*" >&2; }

if [ ! -x "$dir/venv/bin/python" ]; then
  log "a Python venv with cmake, ninja, gguf and numpy"
  python3 -m venv "$dir/venv" >&2
  "$dir/venv/bin/pip" install -q cmake ninja gguf numpy >&2
fi

if [ ! -x "$binary" ]; then
  src="$dir/llama_cpp_python-$VERSION"
  if [ ! -d "$src" ]; then
    log "downloading llama-cpp-python $VERSION (source) from PyPI"
    "$dir/venv/bin/python" - "$VERSION" "$dir/sdist.tar.gz" <<'EOF' >&2
import json, sys, urllib.parse, urllib.request
version, out = sys.argv[1], sys.argv[2]
index = "https://pypi.org/pypi/llama-cpp-python/json"
meta = json.load(urllib.request.urlopen(index))
files = meta.get("releases", {}).get(version) or (
    meta["urls"] if meta["info"]["version"] == version else [])
url = next(f["url"] for f in files if f["packagetype"] == "sdist")
# PyPI answers with an absolute URL; some mirrors with a relative one that does not resolve.
tail = url.split("packages/")[-1]
for candidate in (urllib.parse.urljoin(index, url),
                  "https://files.pythonhosted.org/packages/" + tail,
                  "https://pypi.org/packages/" + tail):
    try:
        urllib.request.urlretrieve(candidate, out)
        break
    except OSError as error:
        print(f"{candidate}: {error}", file=sys.stderr)
else:
    sys.exit("could not download the llama-cpp-python source")
EOF
    tar -xzf "$dir/sdist.tar.gz" -C "$dir"
    rm "$dir/sdist.tar.gz"
  fi
  log "building llama-server (a few minutes)"
  export PATH="$dir/venv/bin:$PATH"
  cmake -S "$src/vendor/llama.cpp" -B "$dir/build" -G Ninja -DGGML_NATIVE=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF -DCMAKE_BUILD_TYPE=Release \
    > "$dir/cmake.log" 2>&1 \
    || { tail -30 "$dir/cmake.log" >&2; exit 1; }
  cmake --build "$dir/build" --target llama-server -j "$(nproc)" >> "$dir/cmake.log" 2>&1 \
    || { tail -30 "$dir/cmake.log" >&2; exit 1; }
  cp "$dir/build/bin/llama-server" "$binary"
  # The build tree is large; the binary holds llama.cpp statically (BUILD_SHARED_LIBS=OFF).
  rm -rf "$dir/build" "$src"
fi

if [ ! -f "$model" ]; then
  "$dir/venv/bin/python" tests/fixtures/write_tiny_gguf.py "$model" >&2
fi
# Wider and deeper (170 MB): about 110 tokens a second per stream on one core here, the pace of
# a real model on a GPU, for runs generated on it (tests/server/llama_runs.rs, screenshots).
small="$dir/small.gguf"
if [ ! -f "$small" ]; then
  "$dir/venv/bin/python" tests/fixtures/write_tiny_gguf.py "$small" \
    --embd 768 --blocks 6 --ff 2048 >&2
fi

# llama-cpp-python's own OpenAI-compatible server (python -m llama_cpp.server), built by pip
# from the same source (about 5 minutes the first time; pip keeps the wheel). It behaves unlike
# llama-server: no usage chunk in streams. Its test is skipped when this cannot be built.
if ! "$dir/venv/bin/python" -c "import llama_cpp.server" 2> /dev/null; then
  log "building llama-cpp-python $VERSION with its server (a few minutes)"
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
    "$dir/venv/bin/pip" install -q "llama-cpp-python[server]==$VERSION" >&2 \
    || log "could not build llama-cpp-python; the test against its server will say so"
fi
# The official `openai` package, a worker's client for the proxy's tests (tests/server/
# llama_proxy.rs): pure Python, seconds to install.
if ! "$dir/venv/bin/python" -c "import openai" 2> /dev/null; then
  log "installing the openai package"
  "$dir/venv/bin/pip" install -q "openai==3.57.0" >&2 \
    || log "could not install the openai package; the proxy's test with it will say so"
fi
if "$dir/venv/bin/python" -c "import openai" 2> /dev/null; then
  echo "export RUNBOARD_OPENAI_PYTHON='$dir/venv/bin/python'"
fi

if "$dir/venv/bin/python" -c "import llama_cpp.server" 2> /dev/null; then
  echo "export RUNBOARD_LLAMA_PYTHON='$dir/venv/bin/python'"
fi

echo "export RUNBOARD_LLAMA_SERVER='$binary'"
echo "export RUNBOARD_TINY_GGUF='$model'"
echo "export RUNBOARD_SMALL_GGUF='$small'"
