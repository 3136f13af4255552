"""Host build: compile time, tokens per second per x86 kernel path, and arena against its lower bound.

    python benchmarks/bench_host.py [--smollm135m] [--kernels] [model.onnx ...]

Prints one table; every row is measured in this run, side by side. Defaults to the bundled
example model; --smollm135m adds a SmolLM-135M-shaped Llama (random weights, exported here as in
bench_compile_135m.py). The host kernels pick their path once per process, so each TSL_HOST_SIMD
value is timed in its own process on the same build. Timings are wall-clock on this machine;
compare rows, not runs. --kernels adds the matvec kernels alone per path: CPU time per MAC
(CLOCK_PROCESS_CPUTIME_ID, so time the process spends descheduled on a shared machine is not counted).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# TSL_HOST_SIMD value -> /proc/cpuinfo flags it needs (a path the CPU lacks is not timed)
PATHS = {"portable": set(), "avx2": {"avx2"}, "avx512vnni": {"avx2", "avx512f", "avx512bw", "avx512_vnni"}}


def cpu_flags():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def time_decode(out, steps, repeats=5):
    """Tokens per second of the host build in OUT over positions 0..steps-1 (this process), the best
    of `repeats` runs (the machine may be shared)."""
    from tinyslm.hostsim import HostModel
    host = HostModel(out)
    best = float("inf")
    for _ in range(repeats):
        host.reset()
        t0 = time.perf_counter()
        for pos in range(steps):
            host.step(pos % 100, pos)
        best = min(best, time.perf_counter() - t0)
    return steps / best


def time_path(out, steps, path):
    env = dict(os.environ, TSL_HOST_SIMD=path, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, __file__, "--decode", str(out), str(steps)], env=env,
                       capture_output=True, text=True, check=True)
    return float(r.stdout.split()[-1])


def bench(model, weights, max_seq=256, steps=200, ref_steps=16):
    from tinyslm.pipeline import compile_model, load_build
    from tinyslm.reference import Reference
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "b"
        t0 = time.perf_counter()
        man = compile_model(model, out, "host", max_seq, weights, quiet=True)
        t_compile = time.perf_counter() - t0
        steps = min(steps, max_seq)
        time_decode(out, 1, 1)   # builds the library once, outside the timings
        flags = cpu_flags()
        tok = {p: time_path(out, steps, p) if need <= flags else None for p, need in PATHS.items()}
        _, prog = load_build(out)
    ref = Reference(prog)
    n_ref = min(ref_steps, steps)
    t0 = time.perf_counter()
    for pos in range(n_ref):
        ref.step(pos % 100, pos)
    t_ref = (time.perf_counter() - t0) / n_ref
    mem = man["memory"]
    return dict(model=Path(model).stem, weights=weights, compile_s=t_compile, tok=tok, ref_tok_s=1 / t_ref,
                arena=mem["arena_bytes"], lower=mem["arena_lower_bound"], flash=man["weights"]["bytes"])


KERNEL_SHAPES = [(1536, 576), (576, 1536), (128, 352), (49152, 576)]   # SmolLM-135M's, the example's, a tied head
KERNEL_SRC = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "tsl_kernels.h"
int main(int argc, char **argv)
{
    const int N = atoi(argv[1]), K = atoi(argv[2]), s4 = argv[3][0] == '4', R = atoi(argv[4]);
    int8_t *w8 = malloc((size_t)N * K), *x = malloc(K), *gs = malloc((size_t)N * K / 32);
    uint8_t *w4 = malloc((size_t)N * K / 2);
    float *ws = malloc(4 * (size_t)N), *dst = malloc(4 * (size_t)N);
    uint32_t r = 1;
    for (long i = 0; i < (long)N * K; i++) { r = r * 1664525u + 1013904223u; w8[i] = (int8_t)(r >> 24); }
    for (long i = 0; i < (long)N * K / 2; i++) w4[i] = (uint8_t)w8[i];
    for (long i = 0; i < (long)N * K / 32; i++) gs[i] = (int8_t)(w8[i] / 2);
    for (int i = 0; i < K; i++) x[i] = w8[i];
    for (int i = 0; i < N; i++) ws[i] = 0.01f;
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    for (int i = 0; i < R; i++) {
        if (s4) tsl_matvec_s4_f32(x, 0.1f, w4, gs, ws, 0, dst, N, K, 0);
        else tsl_matvec_s8_f32(x, 0.1f, w8, ws, 0, dst, N, K, 0);
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    printf("%.5f %g\n", ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec)) * 1e9 / R / N / K, dst[0]);
    return 0;
}
"""


def bench_kernels():
    """ns of CPU time per MAC of the int8 and int4 matvecs, per shape and TSL_HOST_SIMD path."""
    from tinyslm import targets
    from tinyslm.codegen import MATVEC_S4
    from tinyslm.boards import load_board
    fw = ROOT / "firmware"
    with tempfile.TemporaryDirectory() as td:
        src = Path(td) / "bench_matvec.c"
        src.write_text(KERNEL_SRC)
        kern = [fw / "tsl_matvec_s8.c", *[fw / s for s in MATVEC_S4 if s.endswith(".c")]]
        exe = targets.build(load_board("host"), [src, *kern], [fw],
                            Path(td) / "b", name="bench_matvec", extra_cflags=["-std=gnu99"])
        flags = cpu_flags()
        rows = []
        for N, K in KERNEL_SHAPES:
            for dt in ("8", "4"):
                row = {}
                for p, need in PATHS.items():
                    if not need <= flags:
                        row[p] = None
                        continue
                    reps = max(1, int(3e8 / (N * K)) // (10 if p == "portable" else 1))
                    r = subprocess.run([str(exe), str(N), str(K), dt, str(reps)], capture_output=True, text=True,
                                       check=True, env=dict(os.environ, TSL_HOST_SIMD=p))
                    row[p] = float(r.stdout.split()[0])
                rows.append((f"int{dt} {N}x{K}", row))
    return rows


def export_135m(path):
    sys.path.insert(0, str(ROOT / "tests"))
    from bench_compile_135m import SMOLLM_135M
    import hf_models
    hf_models.export_full("llama", path, SMOLLM_135M, max_t=2048)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--smollm135m", action="store_true")
    ap.add_argument("--kernels", action="store_true")
    ap.add_argument("--decode", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.decode:
        print(time_decode(Path(a.decode[0]), int(a.decode[1])))
        return
    jobs = [(m, 200, 16) for m in (a.models or ([] if a.smollm135m else [ROOT / "examples" / "tiny_llama.onnx"]))]
    with tempfile.TemporaryDirectory() as td:
        if a.smollm135m:
            big = Path(td) / "smollm135m.onnx"
            export_135m(big)
            jobs.append((big, 16, 1))
        rows = [bench(m, w, steps=s, ref_steps=r) for m, s, r in jobs for w in ("int8", "int4")]
    cols = "".join(f"{'C ' + p:>14}" for p in PATHS)
    hdr = f"{'model':<16}{'weights':>8}{'compile s':>11}{cols}{'numpy':>9}{'best/numpy':>11}" \
          f"{'arena B':>9}{'lower B':>9}{'flash B':>11}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        tok = "".join(f"{v:>14.1f}" if v else f"{'-':>14}" for v in r["tok"].values())
        best = max(v for v in r["tok"].values() if v)
        print(f"{r['model']:<16}{r['weights']:>8}{r['compile_s']:>11.2f}{tok}{r['ref_tok_s']:>9.1f}"
              f"{best / r['ref_tok_s']:>11.0f}{r['arena']:>9}{r['lower']:>9}{r['flash']:>11}")
    print("\ntokens/s: host build (cffi, -O2, no -march), max_seq 256, 1 thread, best of 5; the example decodes "
          "positions 0..199, the 135M model 0..15 (numpy: 16 and 1, once). C <path>: the kernels forced to that path by "
          "TSL_HOST_SIMD ('-': this CPU lacks it).")
    if a.kernels:
        print(f"\n{'matvec f32 out':<18}" + "".join(f"{p + ' ns/MAC':>20}" for p in PATHS))
        for name, row in bench_kernels():
            print(f"{name:<18}" + "".join(f"{v:>20.4f}" if v else f"{'-':>20}" for v in row.values()))
        print("\nns/MAC: CPU time of the kernel alone (epilogue included), weights in memory as in a model.")


if __name__ == "__main__":
    main()
