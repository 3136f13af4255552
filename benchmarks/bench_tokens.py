"""Instructions per generated token of the bundled model, per board: portable C vs the board's kernel
path side by side, and where the instructions go.

    python benchmarks/bench_tokens.py [--no-split] [board ...]

The example is compiled (max_seq 128, int8 and int4) and its decode step runs 32 times.
Table 1: under qemu with -icount shift=0, the board's counter calibrated to instructions in the same
run (see bench_kernels.py); "kernels" is the path tsl_arch.h selects for the core (SIMD on DSP,
Helium and NEON cores; plain C or assembly on rv32imc, Xtensa, M0+ and M3). The token rate is the
board's clock / instructions per token: an UPPER BOUND where every instruction takes at least one
cycle (single-issue cores: M0+, M3, M4, M33, ESP32-C3, ESP32), ignoring flash wait states and stalls;
dual-issue cores (M7, M55) and the A72/A76 can exceed it.
Table 2: the same programs (kernel path) under the board's own emulator with the TCG plugin of
benchmarks/tcg, counted between two calls of a marker function, each instruction attributed to the
function that holds it (its own instructions only: soft-float routines are their own row). This also
counts under qemu-user (rpi5, rpi4), where -icount does not.
"""
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "tcg"))

import tcgcount  # noqa: E402
from bench_kernels import CALIB, bench_boards  # noqa: E402
from tinyslm import targets  # noqa: E402
from tinyslm.boards import list_boards, load_board  # noqa: E402
from tinyslm.errors import TslError  # noqa: E402
from tinyslm.pipeline import compile_model  # noqa: E402

STEPS = 32
SRC = r"""
#include <stdio.h>
#include "tsl_model.h"
#include "tsl_kernels.h"
#include "tsl_platform.h"
static void spin(uint32_t n)
{
#if defined(__aarch64__)
    __asm volatile("1: subs %%w0, %%w0, #1\n b.ne 1b" : "+r"(n) : : "cc");
#elif defined(__arm__)
    __asm volatile(".syntax unified\n 1: subs %%0, %%0, #1\n bne 1b" : "+r"(n) : : "cc");   /* Thumb-1 asm is divided by default */
#elif defined(__riscv) || defined(__XTENSA__)
    __asm volatile("1: addi %%0, %%0, -1\n bnez %%0, 1b" : "+r"(n));
#endif
}
/* the TCG plugin counts between the two calls (mark=) */
__attribute__((noinline)) void tsl_bench_mark(void) { __asm volatile(""); }
int main(void)
{
#if defined(TSL_ARM_MVE)
    puts("path Helium");
#elif defined(TSL_ARM_DSP)
    puts("path DSP");
#elif defined(TSL_ARM_NODSP)
    puts("path M0+/M3 words");
#elif defined(TSL_NEON_DOTPROD)
    puts("path NEON+dotprod");
#elif defined(TSL_NEON)
    puts("path NEON");
#elif defined(TSL_RISCV_SCALAR4)
    puts("path scalar rows");
#elif defined(TSL_X86)
    puts("path x86");
#else
    puts("path portable");
#endif
    tsl_model *m = tsl_default_model();
    tsl_init(m, 0, m->arena, m->kv);
    tsl_cycles_init();
    uint64_t t0 = tsl_cycles(), t1 = tsl_cycles();
    printf("empty %%lu 0\n", (unsigned long)(t1 - t0));
    t0 = tsl_cycles(); spin(%(CALIB)d); t1 = tsl_cycles();
    printf("calib %%lu %%lu\n", (unsigned long)(t1 - t0), (unsigned long)(2u * %(CALIB)du));
    tsl_bench_mark();
    t0 = tsl_cycles();
    for (int32_t p = 0; p < %(STEPS)d; p++) tsl_forward(m, (p * 37) %% TSL_VOCAB, p, 0);
    t1 = tsl_cycles();
    tsl_bench_mark();
    printf("tokens %%lu %%lu\n", (unsigned long)(t1 - t0), (unsigned long)%(STEPS)d);
    return 0;
}
"""

# Function name -> part of a token; first match wins. Soft-float: libgcc's (and compiler-rt's)
# float routines, __aeabi_* on Arm, __*sf3 / __*sf2 / __float* / __fix* elsewhere.
PARTS = [
    ("kernel", r"tsl_matvec_acc|tsl_matvec_s4_acc|tsl_matvec_s8_s32|tsl_(dsp|m0|m3|rv32|nodsp|swar|mve|a64|neon|avx2|vnni|x86|s4)_|tsl_dot_s4|tsl_gemm"),
    ("epilogue", r"tsl_matvec_s[48]_f32|tsl_epilogue"),
    ("quantize", r"tsl_quant|tsl_dequant|tsl_kv_store"),
    ("norms", r"tsl_(rms|layer|head)norm"),
    ("attention+softmax", r"tsl_attention"),
    ("activations", r"tsl_act|tsl_glu|tsl_softcap|tsl_silu|tsl_gelu|tsl_tanh|tsl_exp"),
    ("RoPE", r"tsl_rope"),
    ("soft-float", r"__aeabi_(f|d|[iu]2[fd]|[iu]l2[fd]|cf|cd)|__(add|sub|mul|div|neg|cmp|eq|ne|lt|le|gt|ge|unord)[sd]f[23]|"
                   r"__float|__fix|__extend|__trunc|__clz[sd]i2"),   # __clzsi2: the rv32 float routines' normalization
    ("other", r""),
]


def part_of(name):
    for part, pat in PARTS:
        if re.match(pat, name):
            return part
    return "other"


def build_bench(board, build, workdir, portable):
    import json
    man = json.loads((build / "manifest.json").read_text())
    src = build / "app" / "bench_tokens.c"     # inside the build: .incbin paths resolve from there
    src.write_text(SRC % dict(CALIB=CALIB, STEPS=STEPS))
    srcs = [build / s for s in man["sources"]] + [src]
    return targets.build(board, srcs, [build / "runtime", build / "model"],
                         Path(workdir) / ("portable" if portable else "kernels"),
                         defines={"TSL_PORTABLE": None} if portable else None, name="bench_tokens")


def measure(board, build, workdir, portable):
    """-> (instructions per token from the icount run, the kernel path's name)."""
    exe = build_bench(board, build, workdir, portable)
    rc, out = targets.run(board, exe, timeout=900, icount=True)
    lines = out.decode(errors="replace").splitlines()
    rows = {p[0]: (int(p[1]), int(p[2])) for p in (l.split() for l in lines) if len(p) == 3 and p[0] != "path"}
    if rc or "tokens" not in rows:
        raise TslError(f"{board.name}: benchmark failed (exit {rc}): {out.decode()[-300:]}")
    path = next((l[5:] for l in lines if l.startswith("path ")), "?")
    per_tick = rows["calib"][1] / (rows["calib"][0] - rows["empty"][0])
    return (rows["tokens"][0] - rows["empty"][0]) * per_tick / STEPS, path


def split(board, build, workdir, so):
    """-> ({part: instructions per token}, the same with soft-float charged to its callers,
    {function: instructions per token}) under the TCG plugin."""
    exe = build_bench(board, build, workdir, False)
    c, funcs = tcgcount.count_elf(board, exe, so, mark_symbol="tsl_bench_mark")
    if c.returncode:
        raise TslError(f"{board.name}: exit {c.returncode} under the TCG plugin")
    charged = tcgcount.charge_callees(c.per_pc, tcgcount.symbols(exe), tcgcount.call_sites(board, exe),
                                      lambda f: part_of(f) == "soft-float")
    parts, incl = {}, {}
    for name, n in funcs.items():
        parts[part_of(name)] = parts.get(part_of(name), 0) + n / STEPS
    for name, n in charged.items():
        incl[part_of(name)] = incl.get(part_of(name), 0) + n / STEPS
    return parts, incl, {k: v / STEPS for k, v in funcs.items()}


def main():
    args = sys.argv[1:]
    do_split = "--no-split" not in args
    args = [a for a in args if a != "--no-split"]
    names = args or [n for n in list_boards() if load_board(n).emulated and load_board(n).kind != "host"
                     and not n.startswith("virt-")]
    example = ROOT / "examples" / "tiny_llama.onnx"
    print(f"bundled example ({example.name}), instructions per token over positions 0..{STEPS - 1}, qemu -icount shift=0")
    hdr = (f"{'board':<24}{'weights':>8}{'portable':>12}{'kernels':>12}{'ratio':>7}  {'kernel path':<18}"
           f"{'clock MHz':>10}{'tok/s <=':>10}")
    print(hdr)
    print("-" * len(hdr))
    splits = []
    with tempfile.TemporaryDirectory() as td:
        so = tcgcount.build_plugin(td) if do_split else None
        for fmt in ("int8", "int4"):
            build = Path(td) / f"ex-{fmt}"
            compile_model(example, build, "host", 128, fmt, quiet=True)
            for label, b in bench_boards(names):
                clock = load_board(label.split()[0]).clock_hz
                try:
                    port, _ = measure(b, build, Path(td) / f"{b.name}-{fmt}", True)
                    fast, path = measure(b, build, Path(td) / f"{b.name}-{fmt}", False)
                except TslError as e:
                    print(f"{label:<24}{fmt:>8}  skipped: {str(e).splitlines()[0][:60]}")
                    continue
                print(f"{label:<24}{fmt:>8}{port:>12,.0f}{fast:>12,.0f}{port / fast:>6.1f}x  {path:<18}"
                      f"{clock / 1e6:>10.0f}{clock / fast:>10.1f}")
            if do_split:
                for label, b in bench_boards(names):
                    n = label.split()[0]
                    own = load_board(n)    # its own emulator where it has one (qemu-user too), else the stand-in
                    B = own if own.emulated and own.emulator.get("cmd", ["{elf}"])[0] != "{elf}" else b
                    try:
                        splits.append((n, fmt, *split(B, build, Path(td) / f"{n}-{fmt}-tcg", so)))
                    except TslError as e:
                        print(f"{n:<24}{fmt:>8}  no split: {str(e).splitlines()[0][:60]}")
    print("\ntok/s <= : board clock / instructions per token (kernel path), an upper bound for single-issue cores.")
    if not splits:
        return
    cols = [p for p, _ in PARTS]
    print("\nwhere a token's instructions go (TCG plugin, kernel path, own instructions per function), % of the total")
    hdr = f"{'board':<14}{'weights':>8}{'instr/token':>13}" + "".join(f"{c[:11]:>12}" for c in cols)
    print(hdr)
    print("-" * len(hdr))
    for n, fmt, parts, incl, funcs in splits:
        tot = sum(parts.values())
        print(f"{n:<14}{fmt:>8}{tot:>13,.0f}" + "".join(f"{100 * parts.get(c, 0) / tot:>11.1f}%" for c in cols))
    print("\nthe same with the soft-float routines charged to their callers (by calls, an estimate), and the"
          " soft-float share of the total:")
    print(hdr)
    print("-" * len(hdr))
    for n, fmt, parts, incl, funcs in splits:
        tot = sum(parts.values())
        print(f"{n:<14}{fmt:>8}{tot:>13,.0f}" + "".join(
            f"{100 * (parts.get(c, 0) if c == 'soft-float' else incl.get(c, 0)) / tot:>11.1f}%" for c in cols))
    print("\nlargest functions per board (instructions per token), and the largest of 'other':")
    for n, fmt, parts, incl, funcs in splits:
        top = sorted(funcs.items(), key=lambda kv: -kv[1])[:8]
        other = sorted(((k, v) for k, v in funcs.items() if part_of(k) == "other"), key=lambda kv: -kv[1])[:4]
        print(f"  {n} {fmt}: " + ", ".join(f"{k} {v:,.0f}" for k, v in top))
        print(f"  {'':<{len(n) + len(fmt) + 1}}  other: " + ", ".join(f"{k} {v:,.0f}" for k, v in other))


if __name__ == "__main__":
    main()
