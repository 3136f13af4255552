#!/bin/sh
# Build llama.cpp from the sources vendored in the llama-cpp-python sdist on PyPI, for the
# comparisons of benchmarks/quality.py (issue 13) and benchmarks/bench_llamacpp.py (issue 15).
#
#   sh benchmarks/build_llamacpp.sh [DIR]            host: llama-perplexity, llama-quantize,
#                                                    llama-bench, DIR/build/bin/llamacpp_decode
#   sh benchmarks/build_llamacpp.sh --aarch64 [DIR]  static aarch64 libllama and
#                                                    DIR/build-aarch64/bin/llamacpp_decode
#   (default DIR: build/llamacpp; TARGETS="..." overrides the host targets, JOBS the -j)
#
# Host: on x86 Linux, every SIMD extension /proc/cpuinfo lists except AMX (GGML_NATIVE=ON would
# let -march=native switch AMX on, and its kernels crash on VMs that advertise AMX without enabling
# it: SIGILL, or SIGSEGV in amx::tensor_traits::compute_forward for batches); native elsewhere.
# aarch64: the issue-15 counter's build: aarch64-linux-gnu-gcc/g++, -march=armv8.2-a+dotprod+fp16,
# GGML_NATIVE off, no OpenMP (ggml's own thread pool; one thread is used), -static, run under
# qemu-aarch64 -cpu cortex-a76. Only the library is built, plus benchmarks/llamacpp_decode.c.
# Nothing is installed; everything stays in DIR. Compiles run under nice.
set -eu
ARCH=host
if [ "${1:-}" = "--aarch64" ]; then ARCH=aarch64; shift; fi
DIR=${1:-build/llamacpp}
HERE=$(cd "$(dirname "$0")" && pwd)
JOBS=${JOBS:-2}
mkdir -p "$DIR"
cd "$DIR"
if ! ls llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
    pip download --no-binary llama-cpp-python --no-deps llama-cpp-python -d . \
        || { echo "build_llamacpp.sh: PyPI unreachable (pip download failed)" >&2; exit 2; }
fi
SDIST=$(ls llama_cpp_python-*.tar.gz | sort -V | tail -n 1)
SRC=${SDIST%.tar.gz}
[ -d "$SRC" ] || tar xzf "$SDIST"
LL=$SRC/vendor/llama.cpp
INC="-I$LL/include -I$LL/ggml/include"
COMMON="-DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF
    -DBUILD_SHARED_LIBS=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
# static libraries in link order (libllama needs ggml, ggml needs ggml-cpu and ggml-base)
# x86 Linux: -DGGML_<EXT>=ON|OFF for each extension in /proc/cpuinfo's flags (AMX not among them)
x86_flags() {
    f=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
    for p in sse4_2:SSE42 avx:AVX avx2:AVX2 bmi2:BMI2 fma:FMA f16c:F16C avx_vnni:AVX_VNNI avx512f:AVX512 \
             avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
        case "$f" in *" ${p%%:*} "*) v=ON ;; *) v=OFF ;; esac
        printf ' -DGGML_%s=%s' "${p#*:}" "$v"
    done
}
libs() { echo "$1/src/libllama.a $1/ggml/src/libggml.a $1/ggml/src/libggml-cpu.a $1/ggml/src/libggml-base.a"; }

if [ $ARCH = host ]; then
    case "$(uname -m)" in
        x86_64) [ -r /proc/cpuinfo ] && ISA="-DGGML_NATIVE=OFF $(x86_flags)" || ISA=-DGGML_NATIVE=ON ;;
        *) ISA=-DGGML_NATIVE=ON ;;
    esac
    # shellcheck disable=SC2086
    cmake -S "$LL" -B build $COMMON $ISA
    # shellcheck disable=SC2086
    nice cmake --build build -j "$JOBS" --target ${TARGETS:-llama-perplexity llama-quantize llama-bench llama}
    OMP=$(grep -q '^GGML_OPENMP_ENABLED:INTERNAL=ON' build/CMakeCache.txt && echo -fopenmp || true)
    # shellcheck disable=SC2046,SC2086
    nice g++ -O2 $INC -x c "$HERE/llamacpp_decode.c" -x none $(libs build) $OMP -lpthread -ldl -o build/bin/llamacpp_decode
    echo "built: $(pwd)/build/bin (llama-perplexity llama-quantize llama-bench llamacpp_decode);" \
         "converter: $(pwd)/$LL/convert_hf_to_gguf.py"
else
    # shellcheck disable=SC2086
    cmake -S "$LL" -B build-aarch64 $COMMON -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
        -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
        -DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16 -DGGML_OPENMP=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DCMAKE_EXE_LINKER_FLAGS=-static
    nice cmake --build build-aarch64 -j "$JOBS" --target llama
    mkdir -p build-aarch64/bin
    # shellcheck disable=SC2046,SC2086
    nice aarch64-linux-gnu-g++ -O2 -march=armv8.2-a+dotprod+fp16 $INC -x c "$HERE/llamacpp_decode.c" -x none \
        $(libs build-aarch64) -static -lpthread -o build-aarch64/bin/llamacpp_decode
    echo "built: $(pwd)/build-aarch64/bin/llamacpp_decode (static aarch64)"
fi
