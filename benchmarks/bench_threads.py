"""Multi-threaded decode: instructions on the longest thread against one thread, per token, for a
SmolLM-135M-shaped layer (dim 576, MLP 1536, 9 heads / 3 KV heads; 1 layer and a 2,048-token tied
head so that the weights fit the counting stand-in's 8 MiB; the head is 25 % of the MACs, 21 % in
the 30-layer model), int8 and int4, compiled for rpi5 and counted on its stand-in virt-a76.

    python benchmarks/bench_threads.py [--steps 32] [--split]

qemu-user (rpi5's emulator) has no instruction counter and this qemu has no TCG plugins, so the
longest thread is counted on one core: built with TSL_POOL_LONGEST_PART, every job of the pool
(matvecs, quantizers, GLU, ...) runs only its part 0 (the largest part of tsl_pool_split, the rule
the pool uses) and the rest of the step runs as the caller thread runs it. Not counted: the pool's
hand-off (a mutex, a condition broadcast and a wait per job) and memory bandwidth shared by the cores.
--split: where the longest thread's instructions go at 1 and 4 threads, by part of a token (the
groups of bench_tokens.py), counted with the TCG plugin of benchmarks/tcg between two calls of a
marker; "excess" is 4 threads' count minus a quarter of one thread's, what keeps 4T/1T above 0.25.
"""
import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks" / "tcg"))

from bench_kernels import CALIB  # noqa: E402
from tinyslm import targets  # noqa: E402
from tinyslm.boards import load_board  # noqa: E402
from tinyslm.errors import TslError  # noqa: E402

SHAPE = dict(vocab_size=2048, hidden_size=576, intermediate_size=1536, num_hidden_layers=1, num_attention_heads=9,
             num_key_value_heads=3, max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=True,
             rms_norm_eps=1e-5)
THREADS = (1, 2, 3, 4)

MAIN = r"""
#include <stdio.h>
#include "tsl_model.h"
#include "tsl_platform.h"
extern int32_t tsl_pool_longest_part;
/* the TCG plugin counts between the two calls (mark=); --split only */
__attribute__((noinline)) void tsl_bench_mark(void) { __asm volatile(""); }
static void spin(uint32_t n) { __asm volatile("1: subs %%w0, %%w0, #1\n b.ne 1b" : "+r"(n) : : "cc"); }
int main(void)
{
    static const int32_t threads[] = {%(THREADS)s};
    tsl_model *m = tsl_default_model();
    tsl_init(m, 0, m->arena, m->kv);
    tsl_cycles_init();
    uint64_t t0 = tsl_cycles(), t1 = tsl_cycles();
    printf("empty %%lu 0\n", (unsigned long)(t1 - t0));
    t0 = tsl_cycles(); spin(%(CALIB)d); t1 = tsl_cycles();
    printf("calib %%lu %%lu\n", (unsigned long)(t1 - t0), (unsigned long)(2u * %(CALIB)du));
    for (unsigned i = 0; i < sizeof threads / sizeof threads[0]; i++) {
        tsl_pool_longest_part = threads[i];
        tsl_reset(m);
        if (%(MARK)d) tsl_bench_mark();
        t0 = tsl_cycles();
        for (int32_t p = 0; p < %(STEPS)d; p++) tsl_forward(m, (p * 37) %% TSL_VOCAB, p, 0);
        t1 = tsl_cycles();
        if (%(MARK)d) tsl_bench_mark();
        printf("t%%d %%lu %%lu\n", (int)threads[i], (unsigned long)(t1 - t0), (unsigned long)%(STEPS)d);
    }
    return 0;
}
"""


def build_bench(build, workdir, steps, threads=THREADS, mark=False):
    import json
    board = load_board(load_board("rpi5").bench_stand_in)
    man = json.loads((build / "manifest.json").read_text())
    src = build / "app" / "bench_threads.c"
    src.write_text(MAIN % dict(CALIB=CALIB, STEPS=steps, THREADS=", ".join(map(str, threads)), MARK=int(mark)))
    srcs = [build / s for s in man["sources"]] + [src]
    exe = targets.build(board, srcs, [build / "runtime", build / "model"], Path(workdir), name="bench_threads",
                        defines={"TSL_POOL_LONGEST_PART": None})
    return board, exe


def measure(build, workdir, steps):
    board, exe = build_bench(build, workdir, steps)
    rc, out = targets.run(board, exe, timeout=1800, icount=True)
    rows = {p[0]: (int(p[1]), int(p[2])) for p in (l.split() for l in out.decode().splitlines()) if len(p) == 3}
    if rc or f"t{THREADS[-1]}" not in rows:
        raise TslError(f"{board.name}: benchmark failed (exit {rc}): {out.decode()[-300:]}")
    per_tick = rows["calib"][1] / (rows["calib"][0] - rows["empty"][0])
    return {n: (rows[f"t{n}"][0] - rows["empty"][0]) * per_tick / steps for n in THREADS}


def split(build, workdir, steps, so, n):
    """-> {part of a token: instructions per token on the longest of n threads} (TCG plugin)"""
    import tcgcount
    from bench_tokens import part_of
    board, exe = build_bench(build, Path(workdir) / f"split{n}", steps, threads=(n,), mark=True)
    c, funcs = tcgcount.count_elf(board, exe, so, mark_symbol="tsl_bench_mark", timeout=1800)
    if c.returncode:
        raise TslError(f"{board.name}: exit {c.returncode} under the TCG plugin")
    parts = {}
    for name, k in funcs.items():
        parts[part_of(name)] = parts.get(part_of(name), 0) + k / steps
    return parts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--split", action="store_true", help="also where the instructions go at 1 and 4 threads")
    a = ap.parse_args()
    import hf_models
    from tinyslm.pipeline import compile_model
    print(f"SmolLM-135M-shaped layer + 2,048-token tied head, rpi5 build counted on virt-a76 (qemu -icount), "
          f"instructions on the longest thread per token over positions 0..{a.steps - 1}")
    hdr = f"{'weights':<8}" + "".join(f"{f'{n} thread' + ('s' if n > 1 else ''):>16}" for n in THREADS) + \
        "".join(f"{f'{n}T/1T':>8}" for n in THREADS[1:])
    print(hdr)
    print("-" * len(hdr))
    splits = []
    with tempfile.TemporaryDirectory() as td:
        onnx = Path(td) / "smol1.onnx"
        hf_models.export_full("llama", onnx, SHAPE, max_t=256)
        so = None
        if a.split:
            import tcgcount
            so = tcgcount.build_plugin(td)
        for fmt in ("int8", "int4"):
            build = Path(td) / f"b-{fmt}"
            compile_model(onnx, build, "rpi5", 128, fmt, quiet=True)
            r = measure(build, Path(td) / f"w-{fmt}", a.steps)
            print(f"{fmt:<8}" + "".join(f"{r[n]:>16,.0f}" for n in THREADS) +
                  "".join(f"{r[n] / r[1]:>7.2f}x" for n in THREADS[1:]))
            if a.split:
                splits.append((fmt, split(build, Path(td) / f"w-{fmt}", a.steps, so, 1),
                               split(build, Path(td) / f"w-{fmt}", a.steps, so, THREADS[-1])))
    if not splits:
        return
    n = THREADS[-1]
    print("\nwhere the longest thread's instructions go (TCG plugin, own instructions per function), per token")
    hdr = f"{'weights':<8}{'part':<20}{'1 thread':>12}{f'{n} threads':>12}{f'{n}T/1T':>8}{'excess':>10}"
    print(hdr)
    print("-" * len(hdr))
    for fmt, one, many in splits:
        for part in sorted(set(one) | set(many), key=lambda p: -(many.get(p, 0) - one.get(p, 0) / n)):
            a1, an = one.get(part, 0), many.get(part, 0)
            print(f"{fmt:<8}{part:<20}{a1:>12,.0f}{an:>12,.0f}{an / a1 if a1 else 0:>7.2f}x{an - a1 / n:>10,.0f}")
        t1, tn = sum(one.values()), sum(many.values())
        print(f"{fmt:<8}{'total':<20}{t1:>12,.0f}{tn:>12,.0f}{tn / t1:>7.2f}x{tn - t1 / n:>10,.0f}")


if __name__ == "__main__":
    main()
