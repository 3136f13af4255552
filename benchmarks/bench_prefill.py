"""Batched prefill against the decode loop: the cost of a 128-token prompt through tsl_prefill (tiles
of the board's prefill_tile tokens, GEMM kernels) over 128 tsl_forward steps, for SmolLM-135M-shaped
layers (dim 576, MLP 1536, 9 / 3 heads) with a 1,024-token tied head, int8 and int4, one thread.
Issue 15's goal: at most 0.35x.

Prefill runs what only the logits need (the head, the last layer's attention output and MLP) for the
prompt's last token alone, which flatters a 1- or 2-layer model. So two models are measured, 1 and 2
layers (2 layers of int8 still fit the counting stand-in's 8 MiB with this head): their difference is
one middle layer, all of whose ops run for every token -- the ratio that holds for a deep model --
and a 30-layer model of this head is extrapolated as the 1-layer model plus 29 such layers.

    python benchmarks/bench_prefill.py [--tokens 128] [--counter icount|host-cpu]

Counters (one function each, COUNTERS):
  tcg       instructions of the rpi5 build (static Linux program) under qemu-aarch64 -cpu cortex-a76,
            counted by the TCG plugin of benchmarks/tcg (one run per side, counting between two
            calls of a marker function): the issue's counter.
  icount    instructions of the rpi5 build's code, counted on its stand-in virt-a76 (qemu-system
            -icount shift=0, the PMU cycle counter calibrated to instructions in the same run, as
            bench_threads.py and bench_tokens.py count): the same sources, compiler and flags as
            the rpi5 build, freestanding.
  host-cpu  CPU seconds of the host build (x86, this machine's SIMD path) through cffi: wall-clock
            CPU time, not instructions; memory traffic counts here (a GEMM reads each weight once
            per 4 tokens and once per tile from DRAM), so it is the closer stand-in for a real Pi.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks" / "tcg"))

from bench_kernels import CALIB  # noqa: E402
from bench_threads import SHAPE as SHAPE1  # noqa: E402
from tinyslm import targets  # noqa: E402
from tinyslm.boards import load_board  # noqa: E402
from tinyslm.errors import TslError  # noqa: E402

MAIN = r"""
#include <stdio.h>
#include "tsl_model.h"
#include "tsl_platform.h"
static uint8_t work[TSL_PREFILL_WORK_BYTES] TSL_ALIGNED;
static void spin(uint32_t n) { __asm volatile("1: subs %%w0, %%w0, #1\n b.ne 1b" : "+r"(n) : : "cc"); }
int main(void)
{
    static int32_t ids[%(N)d];
    for (int32_t p = 0; p < %(N)d; p++) ids[p] = (p * 37) %% TSL_VOCAB;
    const float *lg;
    tsl_model_init(0);
    tsl_cycles_init();
    uint64_t t0 = tsl_cycles(), t1 = tsl_cycles();
    printf("empty %%lu 0\n", (unsigned long)(t1 - t0));
    t0 = tsl_cycles(); spin(%(CALIB)d); t1 = tsl_cycles();
    printf("calib %%lu %%lu\n", (unsigned long)(t1 - t0), (unsigned long)(2u * %(CALIB)du));
    tsl_model_reset();
    t0 = tsl_cycles();
    for (int32_t p = 0; p < %(N)d; p++) tsl_model_forward(ids[p], p);
    t1 = tsl_cycles();
    printf("decode %%lu %%d\n", (unsigned long)(t1 - t0), %(N)d);
    tsl_model_reset();
    t0 = tsl_cycles();
    int32_t rc = tsl_prefill(tsl_default_model(), ids, %(N)d, 0, work, &lg);
    t1 = tsl_cycles();
    printf("prefill %%lu %%d\n", (unsigned long)(t1 - t0), rc == TSL_OK ? %(N)d : -1);
    return 0;
}
"""


MAIN_TCG = r"""
#include <stdio.h>
#include <string.h>
#include "tsl_model.h"
static uint8_t arena[TSL_ARENA_BYTES] TSL_ALIGNED, work[TSL_PREFILL_WORK_BYTES] TSL_ALIGNED;
static int8_t kv[TSL_KV_BYTES] TSL_ALIGNED;
/* the TCG plugin counts between the two calls (mark=) */
__attribute__((noinline)) void tsl_bench_mark(void) { __asm volatile(""); }
int main(int argc, char **argv)
{
    static int32_t ids[%(N)d];
    for (int32_t p = 0; p < %(N)d; p++) ids[p] = (p * 37) %% TSL_VOCAB;
    tsl_model m;
    const float *lg;
    int32_t rc = TSL_OK;
    if (argc < 2 || tsl_init(&m, NULL, arena, kv) != TSL_OK) return 1;
    tsl_bench_mark();
    if (!strcmp(argv[1], "prefill")) rc = tsl_prefill(&m, ids, %(N)d, 0, work, &lg);
    else for (int32_t p = 0; p < %(N)d && rc == TSL_OK; p++) rc = tsl_forward(&m, ids[p], p, &lg);
    tsl_bench_mark();
    printf("%%s %%d\n", argv[1], (int)rc);
    return rc != TSL_OK;
}
"""


def count_tcg(build, workdir, n, sides=("decode", "prefill")):
    """-> (decode, prefill) instructions of n tokens (or those of `sides`): the rpi5 build under
    qemu-aarch64 + the TCG plugin."""
    import tcgcount
    board = load_board("rpi5")
    man = json.loads((build / "manifest.json").read_text())
    src = build / "app" / "bench_prefill_tcg.c"
    src.write_text(MAIN_TCG % dict(N=n))
    workdir = Path(workdir)
    exe = targets.build(board, [build / s for s in man["sources"]] + [src], [build / "runtime", build / "model"],
                        workdir, name="bench_prefill")
    so = tcgcount.build_plugin(workdir)
    funcs = tcgcount.symbols(exe)
    mark = next(f[0] for f in funcs if f[2] == "tsl_bench_mark")
    res = []
    for side in sides:
        c = tcgcount.count(targets.emulator_cmd(board, exe) + [side], so, mark, timeout=3600)
        if c.returncode:
            raise TslError(f"{board.name}: {side} failed under the TCG plugin (exit {c.returncode})")
        res.append(c.total)
    return tuple(res)


def count_icount(build, workdir, n):
    """-> (decode, prefill) instructions of n tokens: the rpi5 build counted on virt-a76."""
    board = load_board(load_board("rpi5").bench_stand_in)
    man = json.loads((build / "manifest.json").read_text())
    src = build / "app" / "bench_prefill.c"
    src.write_text(MAIN % dict(CALIB=CALIB, N=n))
    exe = targets.build(board, [build / s for s in man["sources"]] + [src], [build / "runtime", build / "model"],
                        Path(workdir), name="bench_prefill")
    rc, out = targets.run(board, exe, timeout=3600, icount=True)
    rows = {p[0]: (int(p[1]), int(p[2])) for p in (l.split() for l in out.decode().splitlines()) if len(p) == 3}
    if rc or rows.get("prefill", (0, -1))[1] != n:
        raise TslError(f"{board.name}: benchmark failed (exit {rc}): {out.decode()[-300:]}")
    per_tick = rows["calib"][1] / (rows["calib"][0] - rows["empty"][0])
    return tuple((rows[k][0] - rows["empty"][0]) * per_tick for k in ("decode", "prefill"))


def count_host_cpu(build, workdir, n, repeat=3):
    """-> (decode, prefill) CPU seconds of n tokens on the host build (best of `repeat`)."""
    from tinyslm.hostsim import HostModel
    h = HostModel(build)
    ids = [(p * 37) % h.vocab for p in range(n)]
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        h.reset()
        t0 = time.process_time()
        for p, t in enumerate(ids):
            a = h.step(t, p)
        t1 = time.process_time()
        h.reset()
        b = h.prefill(ids)
        t2 = time.process_time()
        if a.tobytes() != b.tobytes():
            raise TslError(f"{build}: prefill's logits are not the decode loop's")
        best = [min(best[0], t1 - t0), min(best[1], t2 - t1)]
    h.close()
    return tuple(best)


SHAPE = {**SHAPE1, "vocab_size": 1024}
DEEP = 30

COUNTERS = {"tcg": ("rpi5", "instructions (rpi5 build, qemu-aarch64 -cpu cortex-a76, TCG plugin)", count_tcg),
            "icount": ("rpi5", "instructions (rpi5 build, virt-a76 -icount)", count_icount),
            "host-cpu": ("host", "CPU seconds (host build, x86; wall-clock CPU time, not instructions)", count_host_cpu)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--counter", choices=list(COUNTERS), action="append",
                    help="default: tcg and host-cpu")
    a = ap.parse_args()
    import hf_models
    from tinyslm.pipeline import compile_model
    tile = load_board("rpi5").extra.get("prefill_tile")
    print(f"SmolLM-135M-shaped layers + 1,024-token tied head, {a.tokens}-token prompt, one thread, "
          f"prefill tile {tile}: prefill vs {a.tokens} decode steps")
    with tempfile.TemporaryDirectory() as td:
        onnx = {}
        for L in (1, 2):
            onnx[L] = Path(td) / f"smol{L}.onnx"
            hf_models.export_full("llama", onnx[L], {**SHAPE, "num_hidden_layers": L}, max_t=256)
        for name in a.counter or ["tcg", "host-cpu"]:
            board, unit, fn = COUNTERS[name]
            print(f"\n{unit}, prefill / decode of {a.tokens} tokens")
            hdr = f"{'weights':<8}{'model':<26}{'decode':>16}{'prefill':>16}{'prefill/decode':>16}"
            print(hdr)
            print("-" * len(hdr))
            v = (lambda x: f"{x:.4f} s") if name == "host-cpu" else (lambda x: f"{x:,.0f}")
            for fmt in ("int8", "int4"):
                r = {}
                for L in (1, 2):
                    build = Path(td) / f"{board}-{fmt}-{L}"
                    if not build.exists():
                        compile_model(onnx[L], build, board, 256, fmt, quiet=True)
                    r[L] = fn(build, Path(td) / f"w-{name}-{fmt}-{L}", a.tokens)
                mid = (r[2][0] - r[1][0], r[2][1] - r[1][1])
                deep = (r[1][0] + (DEEP - 1) * mid[0], r[1][1] + (DEEP - 1) * mid[1])
                for label, (dec, pre) in (("1 layer + head", r[1]), ("2 layers + head", r[2]),
                                          ("a middle layer (2 - 1)", mid), (f"{DEEP} layers (extrapolated)", deep)):
                    print(f"{fmt:<8}{label:<26}{v(dec):>16}{v(pre):>16}{pre / dec:>15.3f}x")
    print("\nprefill runs the head (and the last layer's attention output and MLP) for the prompt's last token only;"
          "\nthe other ops (attention too) stay per token, split over the tile's tokens on the pool when threads > 1.")


if __name__ == "__main__":
    main()
