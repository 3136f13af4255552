"""Host build: compile time, tokens per second per x86 kernel path, and arena against its lower bound.

    python benchmarks/bench_host.py [--smollm135m] [model.onnx ...]

Prints one table; every row is measured in this run, side by side. Defaults to the bundled
example model; --smollm135m adds a SmolLM-135M-shaped Llama (random weights, exported here as in
bench_compile_135m.py). The host kernels pick their path once per process, so each TSL_HOST_SIMD
value is timed in its own process on the same build. Timings are wall-clock on this machine;
compare rows, not runs.
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


def export_135m(path):
    sys.path.insert(0, str(ROOT / "tests"))
    from bench_compile_135m import SMOLLM_135M
    import hf_models
    hf_models.export_full("llama", path, SMOLLM_135M, max_t=2048)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--smollm135m", action="store_true")
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


if __name__ == "__main__":
    main()
