"""Instructions per generated token of the bundled model, per board, portable vs SIMD side by side.

    python benchmarks/bench_tokens.py [board ...]

The example is compiled (max_seq 128, int8 and int4), its decode step runs 32 times under qemu
with -icount shift=0, and the board's counter is calibrated to instructions in the same run (see
bench_kernels.py). Tokens per second = clock / instructions per token: an ESTIMATE that assumes
one instruction per cycle; real cores stall on memory (flash wait states) and dual-issue.
"""
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_kernels import CALIB, bench_boards  # noqa: E402
from tinyslm import targets  # noqa: E402
from tinyslm.boards import list_boards, load_board  # noqa: E402
from tinyslm.errors import TslError  # noqa: E402
from tinyslm.pipeline import compile_model  # noqa: E402

STEPS = 32
SRC = r"""
#include <stdio.h>
#include "tsl_model.h"
#include "tsl_platform.h"
static void spin(uint32_t n)
{
#if defined(__aarch64__)
    __asm volatile("1: subs %%w0, %%w0, #1\n b.ne 1b" : "+r"(n) : : "cc");
#elif defined(__arm__)
    __asm volatile("1: subs %%0, %%0, #1\n bne 1b" : "+r"(n) : : "cc");
#elif defined(__riscv) || defined(__XTENSA__)
    __asm volatile("1: addi %%0, %%0, -1\n bnez %%0, 1b" : "+r"(n));
#endif
}
int main(void)
{
    tsl_model *m = tsl_default_model();
    tsl_init(m, 0, m->arena, m->kv);
    tsl_cycles_init();
    uint64_t t0 = tsl_cycles(), t1 = tsl_cycles();
    printf("empty %%lu 0\n", (unsigned long)(t1 - t0));
    t0 = tsl_cycles(); spin(%(CALIB)d); t1 = tsl_cycles();
    printf("calib %%lu %%lu\n", (unsigned long)(t1 - t0), (unsigned long)(2u * %(CALIB)du));
    t0 = tsl_cycles();
    for (int32_t p = 0; p < %(STEPS)d; p++) tsl_forward(m, (p * 37) %% TSL_VOCAB, p, 0);
    t1 = tsl_cycles();
    printf("tokens %%lu %%lu\n", (unsigned long)(t1 - t0), (unsigned long)%(STEPS)d);
    return 0;
}
"""


def measure(board, build, workdir, portable):
    import json
    man = json.loads((build / "manifest.json").read_text())
    src = build / "app" / "bench_tokens.c"     # inside the build: .incbin paths resolve from there
    src.write_text(SRC % dict(CALIB=CALIB, STEPS=STEPS))
    srcs = [build / s for s in man["sources"]] + [src]
    exe = targets.build(board, srcs, [build / "runtime", build / "model"],
                        Path(workdir) / ("portable" if portable else "simd"),
                        defines={"TSL_PORTABLE": None} if portable else None, name="bench_tokens")
    rc, out = targets.run(board, exe, timeout=900, icount=True)
    rows = {p[0]: (int(p[1]), int(p[2])) for p in (l.split() for l in out.decode().splitlines()) if len(p) == 3}
    if rc or "tokens" not in rows:
        raise TslError(f"{board.name}: benchmark failed (exit {rc}): {out.decode()[-300:]}")
    per_tick = rows["calib"][1] / (rows["calib"][0] - rows["empty"][0])
    return (rows["tokens"][0] - rows["empty"][0]) * per_tick / STEPS


def main():
    names = sys.argv[1:] or [n for n in list_boards() if load_board(n).emulated and load_board(n).kind != "host"
                             and not n.startswith("virt-")]
    example = ROOT / "examples" / "tiny_llama.onnx"
    print(f"bundled example ({example.name}), instructions per token over positions 0..{STEPS - 1}, qemu -icount shift=0")
    hdr = f"{'board':<24}{'weights':>8}{'portable':>12}{'SIMD':>12}{'ratio':>7}{'clock MHz':>11}{'tok/s (est.)':>14}"
    print(hdr)
    print("-" * len(hdr))
    with tempfile.TemporaryDirectory() as td:
        for fmt in ("int8", "int4"):
            build = Path(td) / f"ex-{fmt}"
            compile_model(example, build, "host", 128, fmt, quiet=True)
            for label, b in bench_boards(names):
                clock = load_board(label.split()[0]).clock_hz
                try:
                    port = measure(b, build, Path(td) / f"{b.name}-{fmt}", True)
                    simd = measure(b, build, Path(td) / f"{b.name}-{fmt}", False)
                except TslError as e:
                    print(f"{label:<24}{fmt:>8}  skipped: {str(e).splitlines()[0][:60]}")
                    continue
                print(f"{label:<24}{fmt:>8}{port:>12,.0f}{simd:>12,.0f}{port / simd:>6.1f}x{clock / 1e6:>11.0f}"
                      f"{clock / simd:>14.1f}")
    print("\ntok/s (est.) = board clock / SIMD instructions per token, assuming 1 instruction per cycle.")


if __name__ == "__main__":
    main()
