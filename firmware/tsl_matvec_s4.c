/* tsl_matvec_s4.c -- int4 (group-scaled) x int8 matrix-vector product. */
#include "tsl_kernels.h"

/* sum over one group of TSL_S4_GROUP weights: w4 packed two per byte, even k low nibble */
static int32_t tsl_dot_s4_group(const uint8_t *w, const int8_t *x)
{
    int32_t acc = 0;
    for (int32_t j = 0; j < TSL_S4_GROUP / 2; j++) {
        const int32_t lo = (int32_t)((int8_t)(w[j] << 4) >> 4);
        const int32_t hi = (int32_t)((int8_t)w[j] >> 4);
        acc += lo * (int32_t)x[2 * j] + hi * (int32_t)x[2 * j + 1];
    }
    return acc;
}

void tsl_matvec_s4_f32(const int8_t *x, float sx, const uint8_t *w, const uint8_t *gs,
                       const float *ws, const float *bias, float *dst, int32_t N, int32_t K,
                       int32_t accumulate)
{
    const int32_t G = K / TSL_S4_GROUP;
    for (int32_t n = 0; n < N; n++) {
        const uint8_t *wr = w + (intptr_t)n * (K / 2);
        const uint8_t *gr = gs + (intptr_t)n * G;
        int32_t acc = 0;
        for (int32_t g = 0; g < G; g++)
            acc += (int32_t)gr[g] * tsl_dot_s4_group(wr + g * (TSL_S4_GROUP / 2), x + g * TSL_S4_GROUP);
        float v = ((float)acc * sx) * ws[n];
        if (bias) v = v + bias[n];
        dst[n] = accumulate ? dst[n] + v : v;
    }
}
