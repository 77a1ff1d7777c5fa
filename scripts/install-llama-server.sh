#!/usr/bin/env bash
# Installs a local OpenAI-compatible LLM server for real-LLM runs of uno:
# llama-cpp-python's server (PyPI llama-cpp-python[server], pinned), in a
# project-local virtualenv, plus the SmolLM2-135M-Instruct GGUF it serves
# (through scripts/install-models.sh --smollm2):
#
#   target/llama-venv/                          venv with llama_cpp.server
#   target/models/smollm2-135m-instruct.gguf   the model (see install-models.sh)
#
# Usage: scripts/install-llama-server.sh [--quiet]
#   --quiet    print only the venv's python path
#
# PyPI ships llama-cpp-python only as an sdist, so pip compiles llama.cpp
# from source (cmake, scikit-build-core and ninja come from PyPI as wheels;
# gcc/g++ must be installed). The build is CPU-only and trimmed to the shared
# libraries the Python bindings load: no tests, examples, tools, server
# binary, multimodal (mtmd/llava) library, BLAS, GPU backends or OpenSSL. It
# targets AVX2/FMA/F16C (x86-64-v3) rather than the building machine
# (GGML_NATIVE=OFF): with -march=native on a CPU that advertises AMX
# (amx_tile, amx_int8, amx_bf16), the server died of a general protection
# fault in libggml-cpu.so on its first completion, even for "Say hi"
# (issue 27). Expect roughly 5-10 minutes on 2 cores;
# pip's output goes to target/llama-venv-build.log. The flags are stamped
# in the venv (.uno-cmake-args): a venv built with others is rebuilt.
#
# Idempotent: returns at once when the venv's python can already
# `import llama_cpp.server` and the GGUF is in place.
#
# Environment: UNO_LLAMA_VENV (default <repo>/target/llama-venv) moves the
# venv; PYTHON (default python3) picks the interpreter; UNO_LLAMA_JOBS
# (default 2) sets the build parallelism; UNO_LLAMA_CMAKE_ARGS is appended to
# the cmake flags (e.g. -DGGML_NATIVE=ON to tune for this machine);
# UNO_LLAMA_REBUILD=1 rebuilds and reinstalls. UNO_MODELS_DIR / UNO_MODELS_VENV are passed on to
# install-models.sh.
set -euo pipefail

LLAMA_PKG="llama-cpp-python[server]==0.3.36"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${UNO_LLAMA_VENV:-$root/target/llama-venv}"
python="${PYTHON:-python3}"
jobs="${UNO_LLAMA_JOBS:-2}"

quiet=0
for arg in "$@"; do
    case "$arg" in
        --quiet) quiet=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "install-llama-server.sh: unknown argument $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

say() { [ "$quiet" = 1 ] || printf '%s\n' "$*" >&2; }

# --- the model -----------------------------------------------------------------
"$root/scripts/install-models.sh" --smollm2 --quiet >/dev/null

# --- the server ----------------------------------------------------------------
# CPU-only, smallest build that still serves: llama-cpp-python's CMakeLists
# forces LLAMA_BUILD_COMMON on and curl off; everything else optional is off.
cmake_args=(
    -DLLAVA_BUILD=OFF
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_TOOLS=OFF
    -DLLAMA_BUILD_SERVER=OFF
    -DLLAMA_BUILD_APP=OFF
    -DLLAMA_OPENSSL=OFF
    -DLLAMA_ALL_WARNINGS=OFF
    -DGGML_BLAS=OFF
    -DGGML_CUDA=OFF
    -DGGML_VULKAN=OFF
    -DGGML_METAL=OFF
    -DGGML_RPC=OFF
    -DGGML_NATIVE=OFF
    -DGGML_AVX=ON
    -DGGML_AVX2=ON
    -DGGML_FMA=ON
    -DGGML_F16C=ON
    -DGGML_AVX512=OFF
    -DGGML_AMX_TILE=OFF
    -DGGML_AMX_INT8=OFF
    -DGGML_AMX_BF16=OFF
    -DGGML_CCACHE=OFF
)
all_args="${cmake_args[*]} ${UNO_LLAMA_CMAKE_ARGS:-}"
# The flags the venv was built with: a venv built otherwise (an older
# script's -march=native build) is rebuilt rather than trusted.
stamp="$venv/.uno-cmake-args"

vpy="$venv/bin/python"
if [ "${UNO_LLAMA_REBUILD:-0}" != 1 ] && [ -x "$vpy" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$all_args" ] &&
    "$vpy" -c 'import llama_cpp.server' 2>/dev/null; then
    say "llama-cpp-python server already installed"
    echo "$vpy"
    exit 0
fi

# A venv whose interpreter no longer runs (python upgraded or removed) is rebuilt.
if ! { [ -x "$vpy" ] && "$vpy" -c 'import sys' 2>/dev/null; }; then
    say "creating $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi

command -v "${CXX:-g++}" >/dev/null || {
    echo "install-llama-server.sh: a C++ compiler (${CXX:-g++}) is needed to build llama.cpp" >&2
    exit 1
}

# pip's wheel cache does not key a wheel by the flags it was built with, so
# it is not used; an install built otherwise (or asked to be rebuilt) is
# replaced.
pip_flags=(--no-input --no-cache-dir)
if [ "${UNO_LLAMA_REBUILD:-0}" = 1 ] || "$vpy" -c 'import llama_cpp' 2>/dev/null; then
    pip_flags+=(--force-reinstall)
fi

log="$venv-build.log"
say "installing $LLAMA_PKG into $venv (compiles llama.cpp; log: $log)"
start=$SECONDS
if ! CMAKE_ARGS="$all_args" \
    CMAKE_BUILD_PARALLEL_LEVEL="$jobs" \
    MAKEFLAGS="-j$jobs" \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$vpy" -m pip install -v "${pip_flags[@]}" "$LLAMA_PKG" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "install-llama-server.sh: pip install $LLAMA_PKG failed; full log in $log" >&2
    exit 1
fi
"$vpy" -c 'import llama_cpp.server' || {
    echo "install-llama-server.sh: installed, but 'import llama_cpp.server' fails; see $log" >&2
    exit 1
}
printf '%s' "$all_args" >"$stamp"
say "installed in $((SECONDS - start))s"
echo "$vpy"
