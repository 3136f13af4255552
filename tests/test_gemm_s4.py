"""The int4 prefill GEMM (tsl_gemm_s4_f32) against the int4 matvec, byte for byte, and the matvec's
int32 sums against a plain C mirror of the spec (tsl_kernels.h: acc_n = sum_g gs[n][g] * (w4 . x)),
on shapes that reach every edge of the AArch64 paths: token counts around the groups of four
(1..7, 16), odd row counts and rows past a block of 128 (N = 1, 5, 37, 131), K a multiple of 32 but
not of 64 or 128 (part blocks of 1, 2 and 3 groups) and K past one x chunk of 1024. One program per
board, its data from a fixed LCG (provenance: this file)."""
import pytest

from conftest_tools import require_tool, require_toolchain
from tinyslm import procs, targets
from tinyslm.boards import ROOT, load_board
from tinyslm.codegen import MATVEC_S4, MATVEC_S4NL

FIRMWARE = ROOT / "firmware"
SHAPES = [(T, N, K) for K in (0, 32, 64, 96, 160, 224, 576, 1056) for N in (1, 5, 37, 131) for T in (1, 2, 3, 4, 5, 7, 16)
          if N * K <= 131 * 576 or T <= 5]

MAIN = r"""
#include <stdio.h>
#include <string.h>
#include "tsl_gemm.h"
static uint32_t seed = 12345u;
static uint32_t rnd(void) { seed = seed * 1664525u + 1013904223u; return seed >> 8; }
static const int32_t shapes[][3] = {%(SHAPES)s};
static int8_t xs[16][1056];
static uint8_t w[131 * 1056 / 2];
static int8_t gs[131 * 1056 / 32];
static float ws[131], bias[131], want[16][131], got[16][131];
static int32_t acc[131];
int main(void)
{
    for (unsigned s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int32_t T = shapes[s][0], N = shapes[s][1], K = shapes[s][2], G = K / 32;
        for (int32_t i = 0; i < N * K / 2; i++) w[i] = (uint8_t)rnd();
        for (int32_t i = 0; i < N * G; i++) gs[i] = (int8_t)((int32_t)(rnd() %% 255) - 127);
        for (int32_t t = 0; t < T; t++) for (int32_t k = 0; k < K; k++) xs[t][k] = (int8_t)((int32_t)(rnd() %% 255) - 127);
        for (int32_t n = 0; n < N; n++) { ws[n] = (float)(rnd() %% 1000) * 1e-4f; bias[n] = (float)(rnd() %% 100) - 50.0f; }
        int bad = 0;
        for (int32_t t = 0; t < T; t++) {    /* the matvec's sums against the spec's loop */
            tsl_matvec_s4_s32(xs[t], w, gs, acc, N, K);
            for (int32_t n = 0; n < N; n++) {
                int32_t a = 0;
                for (int32_t g = 0; g < G; g++) {
                    int32_t d = 0;
                    for (int32_t k = 32 * g; k < 32 * g + 32; k++) {
                        const uint8_t b = w[(n * K + k) / 2];
                        d += (int32_t)((k & 1) ? (int8_t)b >> 4 : (int8_t)(b << 4) >> 4) * xs[t][k];
                    }
                    a += gs[n * G + g] * d;
                }
                bad |= a != acc[n];
            }
        }
        const int8_t *xp[16];
        float *gp[16];
        float sx[16];
        for (int acm = 0; acm < 2; acm++) {
            for (int32_t t = 0; t < T; t++) {
                xp[t] = xs[t]; gp[t] = got[t]; sx[t] = 0.01f * (float)(t + 1);
                for (int32_t n = 0; n < N; n++) want[t][n] = got[t][n] = (float)n;
                tsl_matvec_s4_f32(xs[t], sx[t], w, gs, ws, acm ? bias : 0, want[t], N, K, acm);
            }
            tsl_gemm_s4_f32(xp, sx, w, gs, ws, acm ? bias : 0, gp, T, N, K, acm);
            for (int32_t t = 0; t < T; t++) bad |= memcmp(want[t], got[t], sizeof(float) * (size_t)N) != 0;
        }
        printf("%%d %%d %%d %%s\n", (int)T, (int)N, (int)K, bad ? "bad" : "ok");
    }
    return 0;
}
"""


@pytest.mark.parametrize("board", ["host", "rpi5", "rpi4"])
def test_gemm_s4_is_the_matvec(board, tmp_path):
    B = load_board(board)
    require_toolchain(B)
    if B.emulator["cmd"][0] != "{elf}":
        require_tool(B.emulator["cmd"][0], B.emulator.get("install", ""))
    src = tmp_path / "gemm_s4.c"
    src.write_text(MAIN % dict(SHAPES=", ".join(f"{{{T}, {N}, {K}}}" for T, N, K in SHAPES)))
    srcs = [src, FIRMWARE / "tsl_gemm_s4.c"] + [FIRMWARE / f for f in MATVEC_S4 + MATVEC_S4NL if f.endswith(".c")]
    exe = targets.build(B, srcs, [FIRMWARE], tmp_path / "b", name="gemm_s4", extra_cflags=["-Wall", "-Werror"])
    r = procs.run(targets.emulator_cmd(B, exe, False), timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [f"{T} {N} {K} ok" for T, N, K in SHAPES]
