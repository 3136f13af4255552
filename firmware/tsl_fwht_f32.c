/* tsl_fwht_f32.c -- x <- H D x (tsl_fwht.h): each element one add or subtract per stage.
 *
 * Where TSL_VEC_F32 (tsl_vec_f32.h), the signs and the stages run on vectors first: per lane the
 * same negation and the same add or subtract of the same two operands as the scalar loops, so the
 * bytes are the scalar's whatever the order within a stage. Stages h >= TSL_VW go two at a time
 * (h and 2h on the same four vectors, while 4h <= block), then one; with TSL_VF_LD4 (NEON) stages
 * 1 and 2 run on de-interleaved lanes. A stage the vectors cannot take (h < TSL_VW without LD4)
 * runs in the scalar loop, in its turn. */
#include "tsl_fwht.h"
#include "tsl_vec_f32.h"

#if defined(TSL_VEC_F32)
/* stages h and 2h on four lanes' worth of a, b, c, d (x[j], x[j + h], x[j + 2h], x[j + 3h]), in place */
TSL_VFN void tsl_fwht_bfly4(tsl_vf *a, tsl_vf *b, tsl_vf *c, tsl_vf *d)
{
    const tsl_vf p = tsl_vf_add(*a, *b), q = tsl_vf_sub(*a, *b), r = tsl_vf_add(*c, *d), s = tsl_vf_sub(*c, *d);
    *a = tsl_vf_add(p, r);
    *b = tsl_vf_add(q, s);
    *c = tsl_vf_sub(p, r);
    *d = tsl_vf_sub(q, s);
}

/* the signs of x[0..i), i the returned count (a multiple of TSL_VW, TSL_VW dividing 8) */
TSL_VEC_FN int32_t tsl_fwht_signs_vec(float *x, int32_t n, const uint8_t *signs)
{
    int32_t i = 0;
    for (; i + TSL_VW <= n; i += TSL_VW)
        tsl_vf_st(x + i, tsl_vf_neg_bits(tsl_vf_ld(x + i), (uint32_t)(signs[i >> 3] >> (i & 7)) & ((1u << TSL_VW) - 1)));
    return i;
}

/* stages h, 2h, ... from h as far as the vectors take them (n a multiple of block); -> the next h */
TSL_VEC_FN int32_t tsl_fwht_stages_vec(float *x, int32_t n, int32_t block, int32_t h)
{
#if defined(TSL_VF_LD4)
    if (h == 1 && block >= 4 && n % (4 * TSL_VW) == 0) {   /* stages 1 and 2 on x[4i + 0..3] */
        for (int32_t j = 0; j < n; j += 4 * TSL_VW) {
            tsl_vf a, b, c, d;
            tsl_vf_ld4(x + j, &a, &b, &c, &d);
            tsl_fwht_bfly4(&a, &b, &c, &d);
            tsl_vf_st4(x + j, a, b, c, d);
        }
        h = 4;
    }
#endif
    if (h < TSL_VW) return h;
    for (; 4 * h <= block; h *= 4)                          /* stages h and 2h */
        for (int32_t j0 = 0; j0 < n; j0 += 4 * h)
            for (int32_t j = j0; j < j0 + h; j += TSL_VW) {
                tsl_vf a = tsl_vf_ld(x + j), b = tsl_vf_ld(x + j + h), c = tsl_vf_ld(x + j + 2 * h),
                       d = tsl_vf_ld(x + j + 3 * h);
                tsl_fwht_bfly4(&a, &b, &c, &d);
                tsl_vf_st(x + j, a);
                tsl_vf_st(x + j + h, b);
                tsl_vf_st(x + j + 2 * h, c);
                tsl_vf_st(x + j + 3 * h, d);
            }
    for (; h < block; h *= 2)
        for (int32_t j0 = 0; j0 < n; j0 += 2 * h)
            for (int32_t j = j0; j < j0 + h; j += TSL_VW) {
                const tsl_vf a = tsl_vf_ld(x + j), b = tsl_vf_ld(x + j + h);
                tsl_vf_st(x + j, tsl_vf_add(a, b));
                tsl_vf_st(x + j + h, tsl_vf_sub(a, b));
            }
    return h;
}
#endif

void tsl_fwht_f32(float *x, int32_t n, int32_t block, const uint8_t *signs)
{
    int32_t i = 0, h = 1;
#if defined(TSL_VEC_F32)
    if (TSL_VEC_ON) i = tsl_fwht_signs_vec(x, n, signs);
#endif
    for (; i < n; i++)
        if ((signs[i >> 3] >> (i & 7)) & 1) x[i] = -x[i];
    while (h < block) {
        int32_t next = h;
#if defined(TSL_VEC_F32)
        if (TSL_VEC_ON) next = tsl_fwht_stages_vec(x, n, block, h);
#endif
        if (next == h) {                                    /* a stage the vectors do not take */
            for (int32_t j0 = 0; j0 < n; j0 += 2 * h)
                for (int32_t j = j0; j < j0 + h; j++) {
                    const float a = x[j], b = x[j + h];
                    x[j] = a + b;
                    x[j + h] = a - b;
                }
            next = 2 * h;
        }
        h = next;
    }
}
