#!/usr/bin/env bash
# Builds llama.cpp once, from the source that ships in the llama-cpp-python package on PyPI: its
# own server (`llama-server`, with --metrics and --slots) and its shared libraries, which
# llama-cpp-python's server then loads too (it is installed without building llama.cpp again).
# Writes two random models for them (tests/fixtures/write_tiny_gguf.py): a tiny fast one and a
# slower one. Everything lands in target/llama/ and is reused on the next run.
# Prints the paths as `export` lines for the tests (see tests/server/llama.rs).
#
# Needs python3 (with venv), a C++ compiler and PyPI; takes about 6 minutes on 2 cores the first
# time. Usage: eval "$(scripts/llama-server.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.3.36
dir="$PWD/target/llama"
# The libraries the server shares with llama-cpp-python.
lib_dir="$dir/lib"
binary="$dir/llama-server"
model="$dir/tiny.gguf"
src="$dir/llama_cpp_python-$VERSION"
mkdir -p "$dir"

log() { echo "llama-server.sh: $*" >&2; }

if [ ! -x "$dir/venv/bin/python" ]; then
  log "a Python venv with cmake, ninja, gguf and numpy"
  python3 -m venv "$dir/venv" >&2
  "$dir/venv/bin/pip" install -q cmake ninja gguf numpy >&2
fi

# The source, when something is left to build from it.
need_source() {
  [ -d "$src" ] && return
  log "downloading llama-cpp-python $VERSION (source) from PyPI"
  "$dir/venv/bin/python" - "$VERSION" "$dir/sdist.tar.gz" << 'PY' >&2
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
PY
  tar -xzf "$dir/sdist.tar.gz" -C "$dir"
  rm "$dir/sdist.tar.gz"
}

if [ ! -x "$binary" ] || [ ! -e "$lib_dir/libllama.so" ]; then
  need_source
  log "building llama-server and llama.cpp's libraries (a few minutes)"
  export PATH="$dir/venv/bin:$PATH"
  # Shared libraries, found beside what loads them ($ORIGIN) or in lib/ below it: the server
  # here, and the Python bindings once they are copied into llama-cpp-python's package below.
  # The kernels (ggml) at -O3, everything else (the server, its JSON and templates, the model
  # loader: nine tenths of what is compiled) at -O1: the build takes a third less CPU, and the
  # small model's pace on one thread was the same within the noise (median of five 200-token
  # completions, two rounds: 68.7 and 66.5 tokens/s all at -O3, 64.2 and 71.2 so).
  printf 'set(CMAKE_C_FLAGS_RELEASE "-O3 -DNDEBUG")\nset(CMAKE_CXX_FLAGS_RELEASE "-O3 -DNDEBUG")\n' \
    > "$dir/ggml-flags.cmake"
  cmake -S "$src/vendor/llama.cpp" -B "$dir/build" -G Ninja -DGGML_NATIVE=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=ON -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_C_FLAGS_RELEASE=-O1 -DNDEBUG" "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG" \
    -DCMAKE_PROJECT_ggml_INCLUDE="$dir/ggml-flags.cmake" \
    -DCMAKE_BUILD_RPATH='$ORIGIN;$ORIGIN/lib' > "$dir/cmake.log" 2>&1 \
    || { tail -30 "$dir/cmake.log" >&2; exit 1; }
  cmake --build "$dir/build" --target llama-server llama mtmd -j "$(nproc)" \
    >> "$dir/cmake.log" 2>&1 || { tail -30 "$dir/cmake.log" >&2; exit 1; }
  rm -rf "$lib_dir" "$binary"
  mkdir -p "$lib_dir"
  find "$dir/build" \( -name '*.so' -o -name '*.so.*' \) -exec cp -P {} "$lib_dir/" \;
  cp "$dir/build/bin/llama-server" "$binary"
  # The build tree is large; what is needed was copied.
  rm -rf "$dir/build"
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

# llama-cpp-python's own OpenAI-compatible server (python -m llama_cpp.server), from the same
# source but without building llama.cpp again (LLAMA_BUILD=OFF): the libraries built above go
# into its package, where its bindings load them. It behaves unlike llama-server: no usage chunk
# in streams. Its test is skipped when this cannot be installed.
if ! "$dir/venv/bin/python" -c "import llama_cpp.server" 2> /dev/null; then
  log "installing llama-cpp-python $VERSION with its server, on the libraries built above"
  if need_source \
    && CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" \
      "$dir/venv/bin/pip" install -q --no-cache-dir "$src[server]" >&2; then
    package=$("$dir/venv/bin/python" -c 'import importlib.util
print(importlib.util.find_spec("llama_cpp").submodule_search_locations[0])')
    mkdir -p "$package/lib"
    cp -P "$lib_dir"/*.so* "$package/lib/"
  else
    log "could not install llama-cpp-python; the test against its server will say so"
  fi
fi
rm -rf "$src"

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
