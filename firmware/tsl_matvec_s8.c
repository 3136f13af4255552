/* tsl_matvec_s8.c -- int8 x int8 matrix-vector products, the decode hot path. */
#include "tsl_kernels.h"

/* acc = sum_k a[k] * b[k] */
static int32_t tsl_dot_s8(const int8_t *a, const int8_t *b, int32_t K)
{
    int32_t acc = 0;
    int32_t k = 0;
    /* ISA paths go here (one #if chain); each leaves k at the first unprocessed element. */
    for (; k < K; k++) acc += (int32_t)a[k] * (int32_t)b[k];
    return acc;
}

void tsl_matvec_s8_s32(const int8_t *x, const int8_t *w, int32_t *dst, int32_t N, int32_t K)
{
    for (int32_t n = 0; n < N; n++) dst[n] = tsl_dot_s8(w + (intptr_t)n * K, x, K);
}

void tsl_matvec_s8_f32(const int8_t *x, float sx, const int8_t *w, const float *ws,
                       const float *bias, float *dst, int32_t N, int32_t K, int32_t accumulate)
{
    for (int32_t n = 0; n < N; n++) {
        float v = ((float)tsl_dot_s8(w + (intptr_t)n * K, x, K) * sx) * ws[n];
        if (bias) v = v + bias[n];
        dst[n] = accumulate ? dst[n] + v : v;
    }
}
