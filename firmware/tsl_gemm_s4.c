/* tsl_gemm_s4.c -- int4 (group-scaled) x int8 over a tile of tokens (prefill).
 *
 * Sums per row and token are tsl_matvec_s4_f32's (sum_g gs[g] * (w4[g] . x[g]), exact integers).
 * The portable path unpacks each group's nibbles once for all the tile's tokens. Every core with an
 * int4 matvec path of its own runs that matvec per token: an intrinsics GEMM for dotprod (the
 * matvec's LD4 layout, each block unpacked once for 4 tokens) counted 0.64 instructions per MAC on
 * the A76 against the matvec's asm 0.22, so it is not here; a tiled asm kernel is still to write. */
#include "tsl_gemm.h"
#include "tsl_epilogue.h"

#define TSL_GEMM_S4_RB 32   /* rows per block: int32 acc [TSL_GEMM_MAX_T][RB] on the stack */

#if !(defined(TSL_ARM_DSP) || defined(TSL_ARM_MVE) || defined(TSL_NEON_ANY) || defined(TSL_X86) || \
      defined(TSL_RISCV_SCALAR4))
#define TSL_GEMM_S4_TILED 1   /* portable only */
#endif

#if defined(TSL_GEMM_S4_TILED)
/* acc[t * RB + n] = sum_g gs[n][g] * (w4[n][g] . x[t][g]), n < N <= RB, t < T */
static void tsl_gemm_s4_acc(const uint8_t *w, const int8_t *gs, const int8_t *const *x, int32_t T, int32_t N,
                            int32_t K, int32_t *acc)
{
    const int32_t G = K / TSL_S4_GROUP;
    const int32_t g0 = 0;   /* no ISA path: the portable loop covers every group */
    for (int32_t t = 0; t < T; t++) for (int32_t n = 0; n < N; n++) acc[t * TSL_GEMM_S4_RB + n] = 0;
    /* Portable scalar tail (every group on the portable path): a group's nibbles unpacked once. */
    if (g0 < G) for (int32_t n = 0; n < N; n++) {
        const uint8_t *wr = w + (intptr_t)n * (K / 2);
        const int8_t *gr = gs + (intptr_t)n * G;
        for (int32_t g = g0; g < G; g++) {
            int8_t w8[TSL_S4_GROUP];
            for (int32_t j = 0; j < TSL_S4_GROUP / 2; j++) {
                const uint8_t b = wr[g * (TSL_S4_GROUP / 2) + j];
                w8[2 * j] = (int8_t)((int8_t)(b << 4) >> 4);
                w8[2 * j + 1] = (int8_t)((int8_t)b >> 4);
            }
            for (int32_t t = 0; t < T; t++) {
                const int8_t *xg = x[t] + g * TSL_S4_GROUP;
                int32_t d = 0;
                for (int32_t k = 0; k < TSL_S4_GROUP; k++) d += (int32_t)w8[k] * (int32_t)xg[k];
                acc[t * TSL_GEMM_S4_RB + n] += (int32_t)gr[g] * d;
            }
        }
    }
}
#endif

void tsl_gemm_s4_f32(const int8_t *const *x, const float *sx, const uint8_t *w, const int8_t *gs,
                     const float *ws, const float *bias, float *const *dst, int32_t T, int32_t N, int32_t K,
                     int32_t accumulate)
{
#if defined(TSL_GEMM_S4_TILED)
    int32_t acc[TSL_GEMM_MAX_T * TSL_GEMM_S4_RB];
    const int32_t G = K / TSL_S4_GROUP;
    for (int32_t n0 = 0; n0 < N; n0 += TSL_GEMM_S4_RB) {
        const int32_t nb = N - n0 < TSL_GEMM_S4_RB ? N - n0 : TSL_GEMM_S4_RB;
        tsl_gemm_s4_acc(w + (intptr_t)n0 * (K / 2), gs + (intptr_t)n0 * G, x, T, nb, K, acc);
        for (int32_t t = 0; t < T; t++)
            tsl_epilogue(acc + t * TSL_GEMM_S4_RB, sx[t], ws + n0, bias ? bias + n0 : 0, dst[t] + n0, nb, accumulate);
    }
#else
    for (int32_t t = 0; t < T; t++) tsl_matvec_s4_f32(x[t], sx[t], w, gs, ws, bias, dst[t], N, K, accumulate);
#endif
}
