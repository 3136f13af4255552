"""tinyslm beside llama.cpp on the same models and the same token ids ((p * 37) % vocab at position
p), decode only, one thread: int8 vs Q8_0 and int4 vs Q4_0, for a SmolLM-135M-shaped model with
random weights and the bundled example (issue 15).

    python benchmarks/bench_llamacpp.py [--dir build/llamacpp] [--tokens 64] [--skip-135m | --skip-example]
                                        [--skip-a76]

Host x86: CPU time per decoded token of tinyslm's host build (through cffi) and of llama.cpp's
benchmarks/llamacpp_decode.c (llama.h, n_batch 1, one thread, weights repacked at load), best of 3,
positions 0..tokens-1; llama-bench's tg figure (wall clock, its own ids) beside as a check.
Cortex-A76: instructions per decoded token under qemu-aarch64 -cpu cortex-a76 with benchmarks/tcg's
plugin, both sides counted between two marker calls around their decode loops at 16 and 48 tokens,
the difference over 32 tokens (so setup and the first call's allocations drop out): tinyslm's rpi5
build (bench_prefill.count_tcg) and llama.cpp's static aarch64 llamacpp_decode
(-march=armv8.2-a+dotprod+fp16, no OpenMP, repacked at load).

llama.cpp comes from benchmarks/build_llamacpp.sh DIR (host) and --aarch64 DIR (cross); this script
builds neither (a missing build prints the issue's stored figures instead, marked). The models reach
GGUF through the sdist's convert_hf_to_gguf.py (f32, then llama-quantize), via
benchmarks/llamacpp_gguf.py: the 135M model is a transformers checkpoint; the example's recognized
float weights are written out as one. Neither has a tokenizer of its vocabulary size: the example's
is used (the converter pads the vocabulary); decode only ever sees ids. llama.cpp is never a
dependency of tinyslm.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "tcg"))

import llamacpp_gguf  # noqa: E402
from tinyslm.errors import TslError  # noqa: E402

EXAMPLE = ROOT / "examples" / "tiny_llama.onnx"
SMOL = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
            num_key_value_heads=3, max_position_embeddings=2048, rope_theta=10000.0, tie_word_embeddings=True,
            rms_norm_eps=1e-5)
COUNTS = (16, 48)     # A76: tokens of the two counted runs
STORED = {  # issue 15: qemu-aarch64 -cpu cortex-a76 + a TCG plugin, instructions per decoded token
    "SmolLM-135M-shaped": dict(int8=26.84e6, q8_0=32.10e6, int4=69.54e6, q4_0=38.74e6),
    "bundled example": dict(int8=0.540e6, q8_0=0.486e6, int4=0.864e6, q4_0=0.532e6),
}
STORED_HOST = "135M on x86, one thread: tinyslm host build 17.9 tokens/s (portable C), llama.cpp Q8_0 60.0 (AVX-512)"


def example_hf(folder):
    from tinyslm.frontend import frontend
    return llamacpp_gguf.hf_checkpoint(frontend(EXAMPLE, log=lambda m: None), folder)


def smol_hf(folder):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**SMOL)).eval().save_pretrained(folder, safe_serialization=True)
    return folder


def llama_cpu_tps(exe, gguf, n):
    """tokens/s of llamacpp_decode's loop (process CPU time), best of 3"""
    best = float("inf")
    for _ in range(3):
        r = subprocess.run([str(exe), str(gguf), str(n)], capture_output=True, text=True, timeout=3600)
        if r.returncode or not r.stdout.startswith("decode "):
            raise TslError(f"llamacpp_decode {gguf.name} failed: {r.stderr.strip()[-300:]}")
        best = min(best, float(r.stdout.split()[2]))
    return n / best


def llama_bench_tps(bindir, gguf, n):
    """llama-bench's tg tokens/s (wall clock, its mean over 3 repetitions), one thread; None without it"""
    exe = bindir / "llama-bench"
    if not exe.is_file():
        return None
    r = subprocess.run([str(exe), "-m", str(gguf), "-t", "1", "-p", "0", "-n", str(n), "-r", "3", "-o", "json"],
                       capture_output=True, text=True, timeout=3600)
    if r.returncode:
        raise TslError(f"llama-bench failed: {r.stderr.strip()[-300:]}")
    return float(json.loads(r.stdout)[0]["avg_ts"])


def tinyslm_tps(model, fmt, workdir, n):
    """tokens/s of the host build's decode (CPU time), one thread, positions 0..n-1, best of 3"""
    from tinyslm.hostsim import HostModel
    from tinyslm.pipeline import compile_model
    build = workdir / f"tsl-{Path(model).stem}-{fmt}"
    compile_model(model, build, "host", max(256, n + 1), fmt, quiet=True)
    h = HostModel(build)
    best = float("inf")
    for _ in range(3):
        h.reset()
        t0 = time.process_time()
        for p in range(n):
            h.step((p * 37) % h.vocab, p)
        best = min(best, time.process_time() - t0)
    h.close()
    return n / best


def tinyslm_a76(model, fmt, workdir):
    """instructions per decoded token of the rpi5 build under qemu-aarch64 + the TCG plugin"""
    from bench_prefill import count_tcg
    from tinyslm.pipeline import compile_model
    build = workdir / f"a76-{Path(model).stem}-{fmt}"
    compile_model(model, build, "rpi5", 256, fmt, quiet=True)
    c = [count_tcg(build, workdir / f"w-{build.name}-{n}", n, sides=("decode",))[0] for n in COUNTS]
    return (c[1] - c[0]) / (COUNTS[1] - COUNTS[0])


def llama_a76(exe, gguf, workdir):
    """instructions per decoded token of the static aarch64 llamacpp_decode under the same counter"""
    import tcgcount
    from tinyslm import targets
    from tinyslm.boards import load_board
    so = tcgcount.build_plugin(workdir)
    mark = next(f[0] for f in tcgcount.symbols(exe) if f[2] == "tsl_bench_mark")
    c = []
    for n in COUNTS:
        r = tcgcount.count(targets.emulator_cmd(load_board("rpi5"), exe) + [str(gguf), str(n)], so, mark, timeout=3600)
        if r.returncode or not r.stdout.startswith(b"decode "):
            raise TslError(f"llamacpp_decode {gguf.name} under qemu-aarch64 failed (exit {r.returncode})")
        c.append(r.total)
    return (c[1] - c[0]) / (COUNTS[1] - COUNTS[0])


def row(label, a8, b8, a4, b4, unit, fmt, note=""):
    cell = lambda v: f"{v / unit:{fmt}}" if v is not None else "-"   # noqa: E731
    ratio = lambda a, b: f"{a / b:.2f}x" if a is not None and b is not None else ""   # noqa: E731
    print(f"| {label} | {cell(a8)} | {cell(b8)} | {ratio(a8, b8)} | {cell(a4)} | {cell(b4)} | {ratio(a4, b4)} |{note}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=ROOT / "build" / "llamacpp", help="benchmarks/build_llamacpp.sh's DIR")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--skip-135m", action="store_true")
    ap.add_argument("--skip-example", action="store_true")
    ap.add_argument("--skip-a76", action="store_true")
    a = ap.parse_args()
    d = a.dir.resolve()
    try:
        bindir, conv = llamacpp_gguf.find(d)
        if not (bindir / "llamacpp_decode").is_file():
            raise TslError(f"{bindir}/llamacpp_decode missing (sh benchmarks/build_llamacpp.sh {d})")
    except TslError as e:
        bindir = conv = None
        print(f"llama.cpp: {e}; llama.cpp's side below is the issue's stored figures")
    a76 = d / "build-aarch64" / "bin" / "llamacpp_decode"
    if bindir and not a76.is_file() and not a.skip_a76:
        print(f"llama.cpp aarch64: {a76} missing (sh benchmarks/build_llamacpp.sh --aarch64 {d}); "
              "its A76 columns are the issue's stored figures")
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    models = (([] if a.skip_example else [("bundled example", EXAMPLE, example_hf)])
              + ([] if a.skip_135m else [("SmolLM-135M-shaped", None, smol_hf)]))
    hdr = "| model | tinyslm int8 | llama.cpp Q8_0 | ratio | tinyslm int4 | llama.cpp Q4_0 | ratio |\n|---|---|---|---|---|---|---|"
    host, inst, checks = [], [], []
    with tempfile.TemporaryDirectory(prefix="tinyslm-llamacpp-") as td:
        td = Path(td)
        for label, onnx, to_hf in models:
            hf = to_hf(td / label.split()[-1].replace("-", "_"))
            src = onnx or hf
            g = llamacpp_gguf.to_gguf(conv, bindir, hf, td, ["Q8_0", "Q4_0"]) if bindir else None
            t8, t4 = (tinyslm_tps(src, f, td, a.tokens) for f in ("int8", "int4"))
            l8 = l4 = None
            if g:
                l8, l4 = (llama_cpu_tps(bindir / "llamacpp_decode", g[q], a.tokens) for q in ("Q8_0", "Q4_0"))
                b8, b4 = (llama_bench_tps(bindir, g[q], a.tokens) for q in ("Q8_0", "Q4_0"))
                if b8 is not None:
                    checks.append(f"{label}: llama-bench tg{a.tokens} Q8_0 {b8:.1f}, Q4_0 {b4:.1f} tokens/s")
            host.append((label, t8, l8, t4, l4))
            print(f"  host measured: {label}", flush=True)
            if a.skip_a76:
                continue
            i8, i4 = (tinyslm_a76(src, f, td) for f in ("int8", "int4"))
            st = STORED[label]
            if g and a76.is_file():
                q8, q4 = (llama_a76(a76, g[q], td) for q in ("Q8_0", "Q4_0"))
                inst.append((label, i8, q8, i4, q4, ""))
            else:
                inst.append((label, i8, st["q8_0"], i4, st["q4_0"], " llama.cpp STORED"))
            print(f"  A76 measured: {label}", flush=True)
            for f in td.glob("*.gguf"):
                f.unlink()
    print("ratio: tinyslm / llama.cpp (tokens/s: above 1 is tinyslm faster; instructions: below 1 is tinyslm cheaper)")
    print(f"\nHost x86, one thread, decode tokens/s (CPU time, best of 3, positions 0..{a.tokens - 1})\n")
    print(hdr)
    for r in host:
        row(*r, 1, ".1f")
    for c in checks:
        print(f"(check, wall clock: {c})")
    print(f"(stored, issue 15: {STORED_HOST})")
    if inst:
        print(f"\nCortex-A76 instructions per decoded token (qemu-aarch64 -cpu cortex-a76, TCG plugin, one thread; "
              f"counts at {COUNTS[0]} and {COUNTS[1]} tokens, difference / {COUNTS[1] - COUNTS[0]})\n")
        print(hdr)
        for label, i8, q8, i4, q4, note in inst:
            row(label, i8, q8, i4, q4, 1e6, ".3f", note)
        print("(values in millions of instructions)")
    print("stored, issue 15 (both sides): " + "; ".join(
        f"{k}: int8 {v['int8'] / 1e6:.2f}M vs Q8_0 {v['q8_0'] / 1e6:.2f}M, int4 {v['int4'] / 1e6:.2f}M vs Q4_0 "
        f"{v['q4_0'] / 1e6:.2f}M" for k, v in STORED.items()))


if __name__ == "__main__":
    main()
