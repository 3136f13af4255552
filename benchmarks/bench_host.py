"""Host build: compile time, tokens per second, and arena against its lower bound.

    python benchmarks/bench_host.py [model.onnx ...]

Prints one table; every row is measured in this run, side by side. Defaults to the bundled
example model. Timings are wall-clock on this machine; compare rows, not runs.
"""
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinyslm.hostsim import HostModel  # noqa: E402
from tinyslm.pipeline import compile_model  # noqa: E402
from tinyslm.reference import Reference  # noqa: E402
from tinyslm.pipeline import load_build  # noqa: E402


def bench(model, weights, max_seq=256, steps=200):
    out = Path(tempfile.mkdtemp()) / "b"
    t0 = time.perf_counter()
    man = compile_model(model, out, "host", max_seq, weights, quiet=True)
    t_compile = time.perf_counter() - t0
    host = HostModel(out)
    host.reset()
    steps = min(steps, max_seq)
    t0 = time.perf_counter()
    for pos in range(steps):
        host.step(pos % 100, pos)
    t_c = (time.perf_counter() - t0) / steps
    _, prog = load_build(out)
    ref = Reference(prog)
    n_ref = min(16, steps)
    t0 = time.perf_counter()
    for pos in range(n_ref):
        ref.step(pos % 100, pos)
    t_ref = (time.perf_counter() - t0) / n_ref
    mem = man["memory"]
    return dict(model=Path(model).stem, weights=weights, compile_s=t_compile, tok_s=1 / t_c, ref_tok_s=1 / t_ref,
                arena=mem["arena_bytes"], lower=mem["arena_lower_bound"], kv=mem["kv_bytes"],
                flash=man["weights"]["bytes"])


def main():
    models = sys.argv[1:] or [ROOT / "examples" / "tiny_llama.onnx"]
    rows = [bench(m, w) for m in models for w in ("int8", "int4")]
    hdr = f"{'model':<16}{'weights':>8}{'compile s':>11}{'C tok/s':>10}{'numpy tok/s':>13}{'C/numpy':>9}" \
          f"{'arena B':>9}{'lower B':>9}{'ratio':>7}{'KV B':>9}{'flash B':>10}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['model']:<16}{r['weights']:>8}{r['compile_s']:>11.2f}{r['tok_s']:>10.0f}{r['ref_tok_s']:>13.1f}"
              f"{r['tok_s'] / r['ref_tok_s']:>9.0f}{r['arena']:>9}{r['lower']:>9}{r['arena'] / r['lower']:>7.2f}"
              f"{r['kv']:>9}{r['flash']:>10}")
    print("\nC tok/s: host build (cffi, -O2, portable kernels), max_seq 256, positions 0..199, 1 thread.")


if __name__ == "__main__":
    main()
