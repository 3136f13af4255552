"""Instructions per MAC of the kernels, portable C vs the board's kernel path, per emulated board.

    python benchmarks/bench_kernels.py [--matvec NxK] [board ...]

--matvec sets the matvec shape (default 512x256; SmolLM-135M's projections are 576 and 1536 deep).

Each board's program runs under qemu with -icount shift=0 (one instruction = 1 ns of virtual time)
and reads the board's counter (tsl_platform.h: SysTick on Cortex-M, mcycle on RISC-V, PMCCNTR on
AArch64 bare metal). Instructions per counter tick are calibrated in the same run on a loop of known
length, so the table does not depend on the emulated clock. Boards whose emulator cannot count
(rpi5/rpi4 under qemu-user) are measured on their bare-metal stand-in (bench_stand_in); rp2040,
which qemu lacks, has its own (M0+) build run on the M3 of its stand-in.
Both paths of a board are built and run side by side in this run. matvec_s5nl (int5) has only the
portable path so far: its "kernels" column is the portable C built with the board's flags. "kernels" is the path tsl_arch.h
selects for the core: SIMD on DSP, Helium and NEON cores, plain C or assembly on rv32imc, Xtensa,
M0+ and M3 (named in the table). For comparison on the M3: CMSIS-NN's plain-C
arm_nn_vec_mat_mult_t_s8 (GCC 12 -O3, 512x256), 3.49 instructions per MAC, measured the same way
in issue 14 (stored figure: CMSIS-NN is not built here).
"""
import dataclasses
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinyslm import targets  # noqa: E402
from tinyslm.codegen import MATVEC_S4, MATVEC_S4NL  # noqa: E402
from tinyslm.boards import list_boards, load_board  # noqa: E402
from tinyslm.errors import TslError  # noqa: E402

N, K = 512, 256           # the matvec of the table
T, HS, H = 256, 64, 4     # attention: positions, head size, heads (one kv head per head)
CALIB = 200000            # loop iterations of the calibration (2 instructions each)
CMSIS_NN_M3 = 3.49        # issue 14: CMSIS-NN's plain C arm_nn_vec_mat_mult_t_s8, GCC 12 -O3, 512x256, qemu M3

SRC = r"""
#include <stdio.h>
#include "tsl_kernels.h"
#include "tsl_platform.h"
#define N %(N)d
#define K %(K)d
#define T %(T)d
#define HS %(HS)d
#define H %(H)d
static int8_t w8[N * K], x8[K], kc[H * T * HS], vc[H * T * HS], out8[H * HS], qq[HS];
static uint8_t w4[N * K / 2], w5[N * K * 5 / 8];
static int8_t kv[32];
static int8_t gs[N * K / TSL_S4_GROUP];
static int32_t acc[N], pw[T], pacc[H * HS];
static float ws[N], dst[N], q[H * HS], ks[H * T], vs[H * T], sc[T], ch[H];
static uint32_t rng = 12345u;
static uint32_t rnd(void) { rng = rng * 1664525u + 1013904223u; return rng >> 8; }

static void spin(uint32_t n)   /* exactly 2 n instructions */
{
#if defined(__aarch64__)
    __asm volatile("1: subs %%w0, %%w0, #1\n b.ne 1b" : "+r"(n) : : "cc");
#elif defined(__arm__)
    __asm volatile(".syntax unified\n 1: subs %%0, %%0, #1\n bne 1b" : "+r"(n) : : "cc");   /* Thumb-1 asm is divided by default */
#elif defined(__riscv) || defined(__XTENSA__)
    __asm volatile("1: addi %%0, %%0, -1\n bnez %%0, 1b" : "+r"(n));
#endif
}

#define TIME(tag, macs, call) do { call; uint64_t t0 = tsl_cycles(); call; uint64_t t1 = tsl_cycles(); \
    printf("%%s %%lu %%lu\n", tag, (unsigned long)(t1 - t0), (unsigned long)(macs)); } while (0)

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
#else
    puts("path portable");
#endif
    for (int i = 0; i < N * K; i++) w8[i] = (int8_t)(rnd() %% 255u) - 127;
    for (int i = 0; i < N * K / 2; i++) w4[i] = (uint8_t)rnd();
    for (int i = 0; i < N * K * 5 / 8; i++) w5[i] = (uint8_t)rnd();
    for (int i = 0; i < 32; i++) kv[i] = (int8_t)(i * 8 - 127);
    for (int i = 0; i < N * K / TSL_S4_GROUP; i++) gs[i] = (int8_t)(1u + rnd() %% 127u) * ((rnd() & 1u) ? 1 : -1);
    for (int i = 0; i < K; i++) x8[i] = (int8_t)(rnd() %% 255u) - 127;
    for (int i = 0; i < N; i++) ws[i] = 0.001f;
    for (int i = 0; i < H * T * HS; i++) { kc[i] = (int8_t)(rnd() %% 255u) - 127; vc[i] = (int8_t)(rnd() %% 255u) - 127; }
    for (int i = 0; i < H * HS; i++) q[i] = (float)(int32_t)(rnd() %% 200u) - 100.0f;
    for (int i = 0; i < H * T; i++) { ks[i] = 0.01f; vs[i] = 0.01f + 0.0001f * (float)(i %% 7); }
    tsl_cycles_init();
    uint64_t t0 = tsl_cycles(), t1 = tsl_cycles();
    printf("empty %%lu 0\n", (unsigned long)(t1 - t0));
    t0 = tsl_cycles(); spin(%(CALIB)d); t1 = tsl_cycles();
    printf("calib %%lu %%lu\n", (unsigned long)(t1 - t0), (unsigned long)(2u * %(CALIB)du));
    TIME("matvec_s8_s32", N * K, tsl_matvec_s8_s32(x8, w8, acc, N, K));
    TIME("matvec_s8_f32", N * K, tsl_matvec_s8_f32(x8, 0.01f, w8, ws, 0, dst, N, K, 0));
    TIME("matvec_s4_f32", N * K, tsl_matvec_s4_f32(x8, 0.01f, w4, gs, ws, 0, dst, N, K, 0));
    TIME("matvec_s4nl_f32", N * K, tsl_matvec_s4nl_f32(x8, 0.01f, w4, kv, gs, ws, 0, dst, N, K, 0));
    TIME("matvec_s5nl_f32", N * K, tsl_matvec_s5nl_f32(x8, 0.01f, w5, kv, gs, ws, 0, dst, N, K, 0));
    TIME("attention_s8", 2 * H * T * HS, tsl_attention_s8(q, kc, ks, vc, vs, out8, H, H, HS, T, T - 1, 0.125f, 0.0f, NULL, qq, sc, pw, pacc, ch));
    return 0;
}
"""
KERNELS = ["matvec_s8_s32", "matvec_s8_f32", "matvec_s4_f32", "matvec_s4nl_f32", "matvec_s5nl_f32", "attention_s8"]
FIRMWARE = ROOT / "firmware"


def measure(board, workdir, portable):
    src = Path(workdir) / "bench.c"
    src.write_text(SRC % dict(N=N, K=K, T=T, HS=HS, H=H, CALIB=CALIB))
    kern = [FIRMWARE / f for f in ("tsl_matvec_s8.c", *[s for s in MATVEC_S4 + MATVEC_S4NL if s.endswith(".c")], "tsl_attention_s8.c",
                                    "tsl_elementwise_f32.c")]
    exe = targets.build(board, [src, *kern], [FIRMWARE], Path(workdir) / ("portable" if portable else "simd"),
                        defines={"TSL_PORTABLE": None} if portable else None, name="bench")
    rc, out = targets.run(board, exe, timeout=600, icount=True)
    lines = out.decode(errors="replace").splitlines()
    rows = {p[0]: (int(p[1]), int(p[2])) for p in (l.split() for l in lines) if len(p) == 3 and p[0] != "path"}
    if rc or "calib" not in rows:
        raise TslError(f"{board.name}: benchmark failed (exit {rc}): {out.decode()[-300:]}")
    empty = rows["empty"][0]
    per_tick = rows["calib"][1] / (rows["calib"][0] - empty)           # instructions per counter tick
    path = next((l[5:] for l in lines if l.startswith("path ")), "?")
    return {k: (rows[k][0] - empty) * per_tick / rows[k][1] for k in KERNELS}, per_tick, path


def bench_boards(names):
    """Boards that can count instructions: own icount emulator, else their bench stand-in."""
    out = []
    for n in names:
        b = load_board(n)
        if b.emulator.get("icount_cmd"):
            out.append((n, b))
        elif b.bench_stand_in:
            out.append((f"{n} (as {b.bench_stand_in})", load_board(b.bench_stand_in)))
        elif b.stand_in and load_board(b.stand_in).emulator.get("icount_cmd") and b.cpu != load_board(b.stand_in).cpu:
            # a smaller core's code on a bigger one's model (rp2040's Thumb-1 on the M3): the same
            # instructions execute, so the counts are the real core's (its cycles are not)
            stand = load_board(b.stand_in)
            out.append((f"{n} (on {b.stand_in})", dataclasses.replace(
                stand, name=f"{n}-on-{stand.name}", toolchain={**stand.toolchain, "cflags": b.toolchain["cflags"]})))
    return out


def main():
    global N, K
    args = sys.argv[1:]
    if args[:1] == ["--matvec"] and len(args) >= 2:
        N, K = (int(v) for v in args[1].lower().split("x"))
        args = args[2:]
    names = args or [n for n in list_boards() if load_board(n).emulated and load_board(n).kind != "host"
                             and not n.startswith("virt-")]
    print(f"instructions per MAC, qemu -icount shift=0; matvec {N}x{K}, attention {H} heads x {T} positions x {HS}")
    hdr = f"{'board':<22}{'kernel':<17}{'portable':>10}{'kernels':>9}{'ratio':>8}  kernel path"
    print(hdr)
    print("-" * len(hdr))
    for label, b in bench_boards(names):
        with tempfile.TemporaryDirectory() as d:
            try:
                port, _, _ = measure(b, d, True)
                simd, per_tick, path = measure(b, d, False)
            except TslError as e:
                print(f"{label:<22}skipped: {str(e).splitlines()[0]}")
                continue
        for k in KERNELS:
            print(f"{label:<22}{k:<17}{port[k]:>10.3f}{simd[k]:>9.3f}{port[k] / simd[k]:>7.2f}x  {path}")
        print(f"{'':<22}({per_tick:.2f} instructions per counter tick)")
    print(f"CMSIS-NN arm_nn_vec_mat_mult_t_s8, plain C (no DSP), Cortex-M3, 512x256: {CMSIS_NN_M3} "
          "instructions per MAC (stored figure, issue 14)")


if __name__ == "__main__":
    main()
