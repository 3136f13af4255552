/* tsl_epilogue.h -- the float epilogue of the int8 and int4 matvecs (internal to those two files). */
#ifndef TSL_EPILOGUE_H
#define TSL_EPILOGUE_H
#include "tsl_kernels.h"

/* dst[i] = (accumulate ? dst[i] : 0) + (((float)acc[i] * sx) * ws[i] (+ bias[i])), i < n.
 * Elementwise IEEE ops, so the 4-lane NEON form rounds exactly like the scalar one. */
static inline void tsl_epilogue(const int32_t *acc, float sx, const float *ws, const float *bias, float *dst,
                         int32_t n, int32_t accumulate)
{
    int32_t i = 0;
#if defined(TSL_NEON_ANY)
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vmulq_f32(vmulq_n_f32(vcvtq_f32_s32(vld1q_s32(acc + i)), sx), vld1q_f32(ws + i));
        if (bias) v = vaddq_f32(v, vld1q_f32(bias + i));
        if (accumulate) v = vaddq_f32(vld1q_f32(dst + i), v);
        vst1q_f32(dst + i, v);
    }
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
