/* tsl_fwht_f32.c -- x <- H D x (tsl_fwht.h), portable: each element one add or subtract per stage. */
#include "tsl_fwht.h"

void tsl_fwht_f32(float *x, int32_t n, int32_t block, const uint8_t *signs)
{
    for (int32_t i = 0; i < n; i++)
        if ((signs[i >> 3] >> (i & 7)) & 1) x[i] = -x[i];
    for (int32_t h = 1; h < block; h <<= 1)
        for (int32_t j0 = 0; j0 < n; j0 += 2 * h)
            for (int32_t j = j0; j < j0 + h; j++) {
                const float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
}
