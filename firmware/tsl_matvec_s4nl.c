/* tsl_matvec_s4nl.c -- int4 codes on a non-linear grid x int8: each nibble indexes one of the
 * tensor's 16 int8 levels kv (tinyslm/int4nl.py), group scales and row scales as tsl_matvec_s4.c.
 * The portable path, the dispatch to the ISA paths (tsl_matvec_s4nl_isa.h) and the entry points. */
#include "tsl_matvec_s4nl_isa.h"
#include "tsl_epilogue.h"

/* sum over one group of TSL_S4_GROUP weights: codes packed two per byte, even k low nibble */
static int32_t tsl_dot_s4nl_group(const uint8_t *w, const int8_t *kv, const int8_t *x)
{
    int32_t acc = 0;
    for (int32_t j = 0; j < TSL_S4_GROUP / 2; j++)
        acc += (int32_t)kv[w[j] & 15] * (int32_t)x[2 * j] + (int32_t)kv[w[j] >> 4] * (int32_t)x[2 * j + 1];
    return acc;
}

/* acc[n] = sum_g gs[n][g] * (kv[w4[n][g]] . x[g]) */
__attribute__((noinline)) static void tsl_matvec_s4nl_acc(const int8_t *x, const uint8_t *w, const int8_t *kv,
                                                          const int8_t *gs, int32_t *acc, int32_t N, int32_t K)
{
    const int32_t G = K / TSL_S4_GROUP;
    int32_t g0 = 0;   /* the ISA path covers groups g < g0 of every row */
#if defined(TSL_ARM_MVE) || defined(TSL_ARM_DSP)
    g0 = tsl_s4nl_acc_arm(x, w, kv, gs, acc, N, K);
#elif defined(TSL_NEON_ANY)
    g0 = tsl_s4nl_acc_neon(x, w, kv, gs, acc, N, K);
#elif defined(TSL_X86)
    g0 = tsl_s4nl_acc_x86(x, w, kv, gs, acc, N, K);
#endif
    if (g0 == 0) for (int32_t n = 0; n < N; n++) acc[n] = 0;
    /* Portable scalar tail (every group on the portable path). */
    if (g0 < G) for (int32_t n = 0; n < N; n++) {
        const uint8_t *wr = w + (intptr_t)n * (K / 2);
        const int8_t *gr = gs + (intptr_t)n * G;
        int32_t a = acc[n];
        for (int32_t g = g0; g < G; g++)
            a += (int32_t)gr[g] * tsl_dot_s4nl_group(wr + g * (TSL_S4_GROUP / 2), kv, x + g * TSL_S4_GROUP);
        acc[n] = a;
    }
}

void tsl_matvec_s4nl_s32(const int8_t *x, const uint8_t *w, const int8_t *kv, const int8_t *gs, int32_t *dst,
                         int32_t N, int32_t K)
{
    tsl_matvec_s4nl_acc(x, w, kv, gs, dst, N, K);
}

#if defined(TSL_X86) || defined(TSL_NEON_ANY)
#define TSL_ROW_BLOCK 512   /* int32 accumulators on the stack, per block of rows */
#else
#define TSL_ROW_BLOCK 128
#endif

void tsl_matvec_s4nl_f32(const int8_t *x, float sx, const uint8_t *w, const int8_t *kv, const int8_t *gs,
                         const float *ws, const float *bias, float *dst, int32_t N, int32_t K, int32_t accumulate)
{
    int32_t acc[TSL_ROW_BLOCK];
    const int32_t G = K / TSL_S4_GROUP;
    for (int32_t n0 = 0; n0 < N; n0 += TSL_ROW_BLOCK) {
        const int32_t nb = N - n0 < TSL_ROW_BLOCK ? N - n0 : TSL_ROW_BLOCK;
        tsl_matvec_s4nl_acc(x, w + (intptr_t)n0 * (K / 2), kv, gs + (intptr_t)n0 * G, acc, nb, K);
        tsl_epilogue(acc, sx, ws + n0, bias ? bias + n0 : 0, dst + n0, nb, accumulate);
    }
}
