/* tsl_epilogue.h -- the float epilogue of the int8 and int4 matvecs (internal to the matvec and GEMM files). */
#ifndef TSL_EPILOGUE_H
#define TSL_EPILOGUE_H
#include "tsl_kernels.h"
#include "tsl_vec_f32.h"

#if defined(TSL_VEC_F32)
/* ((float)acc[i] * s) * ws[i] for one vector at acc, ws */
TSL_VFN tsl_vf tsl_epilogue_v(const int32_t *acc, tsl_vf s, const float *ws)
{
    return tsl_vf_mul(tsl_vf_mul(tsl_vi_to_f(tsl_vi_ld(acc)), s), tsl_vf_ld(ws));
}

/* tsl_epilogue for i < the returned count: elementwise IEEE ops, one lane each as the scalar loop */
TSL_VEC_FN int32_t tsl_epilogue_vec(const int32_t *acc, float sx, const float *ws, const float *bias, float *dst,
                                    int32_t n, int32_t accumulate)
{
    const tsl_vf s = tsl_vf_set(sx);
    int32_t i = 0;
    if (!bias && !accumulate)   /* the common cases without a branch per vector */
        for (; i + TSL_VW <= n; i += TSL_VW) tsl_vf_st(dst + i, tsl_epilogue_v(acc + i, s, ws + i));
    else if (!bias)
        for (; i + TSL_VW <= n; i += TSL_VW)
            tsl_vf_st(dst + i, tsl_vf_add(tsl_vf_ld(dst + i), tsl_epilogue_v(acc + i, s, ws + i)));
    else
        for (; i + TSL_VW <= n; i += TSL_VW) {
            const tsl_vf v = tsl_vf_add(tsl_epilogue_v(acc + i, s, ws + i), tsl_vf_ld(bias + i));
            tsl_vf_st(dst + i, accumulate ? tsl_vf_add(tsl_vf_ld(dst + i), v) : v);
        }
    return i;
}
#endif

/* dst[i] = (accumulate ? dst[i] : 0) + (((float)acc[i] * sx) * ws[i] (+ bias[i])), i < n. */
static inline void tsl_epilogue(const int32_t *acc, float sx, const float *ws, const float *bias, float *dst,
                                int32_t n, int32_t accumulate)
{
    int32_t i = 0;
#if defined(TSL_VEC_F32)
    if (TSL_VEC_ON) i = tsl_epilogue_vec(acc, sx, ws, bias, dst, n, accumulate);
#endif
    if (!bias && !accumulate)
        for (; i < n; i++) dst[i] = ((float)acc[i] * sx) * ws[i];
    for (; i < n; i++) {
        float v = ((float)acc[i] * sx) * ws[i];
        if (bias) v = v + bias[i];
        dst[i] = accumulate ? dst[i] + v : v;
    }
}

/* The integer path's epilogue (tsl_imatvec_s8, tsl_imatvec_s4): v = tsl_requant_sat(acc[i], sx * wfx[i]) (+ bias[i]),
 * dst[i] = accumulate ? dst[i] + v : v, saturating to +-(2^31 - 1); sx, wfx[i] (mult, shift) pairs. */
static inline void tsl_epilogue_q(const int32_t *acc, tsl_fx sx, const int32_t *wfx, const int32_t *bias,
                                  int32_t *dst, int32_t n, int32_t accumulate)
{
    for (int32_t i = 0; i < n; i++) {
        const tsl_fx w = {wfx[2 * i], wfx[2 * i + 1]};
        const tsl_fx f = tsl_fx_mul(sx, w);
        int64_t v = tsl_requant_sat(acc[i], f.m, f.s);
        if (bias) v = tsl_sat_s32(v + bias[i]);
        dst[i] = accumulate ? tsl_sat_s32((int64_t)dst[i] + v) : (int32_t)v;
    }
}

#endif
