#!/bin/sh
# Build llama.cpp's llama-perplexity and llama-quantize from the sources vendored in the
# llama-cpp-python sdist on PyPI (the issue-13 comparison), for benchmarks/quality.py.
#
#   sh benchmarks/build_llamacpp.sh [DIR]        (default DIR: build/llamacpp)
#
# AMX is off: its kernels die with SIGILL on VMs that advertise AMX without enabling it.
# Native otherwise. Nothing is installed; the binaries land in DIR/build/bin.
set -eu
DIR=${1:-build/llamacpp}
mkdir -p "$DIR"
cd "$DIR"
if ! ls llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
    pip download --no-binary llama-cpp-python --no-deps llama-cpp-python -d . \
        || { echo "build_llamacpp.sh: PyPI unreachable (pip download failed)" >&2; exit 2; }
fi
SDIST=$(ls llama_cpp_python-*.tar.gz | sort -V | tail -n 1)
SRC=${SDIST%.tar.gz}
[ -d "$SRC" ] || tar xzf "$SDIST"
cmake -S "$SRC/vendor/llama.cpp" -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF
cmake --build build -j "${JOBS:-2}" --target llama-perplexity llama-quantize
echo "built: $(pwd)/build/bin/llama-perplexity, $(pwd)/build/bin/llama-quantize; converter: $(pwd)/$SRC/vendor/llama.cpp/convert_hf_to_gguf.py"
