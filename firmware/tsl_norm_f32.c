/* tsl_norm_f32.c -- RMSNorm and LayerNorm in float32, sums in index order (scalar loops on every
 * ISA: the reference defines their order); the elementwise scaling on tsl_vec_f32.h's vectors
 * where TSL_VEC_F32, then the scalar loop for the rest. */
#include "tsl_kernels.h"
#include "tsl_vec_f32.h"

#if defined(TSL_VEC_F32)
/* y[i] = (x[i] * r) * g[i], i < the returned count */
TSL_VEC_FN int32_t tsl_rmsnorm_scale_vec(const float *x, const float *g, float r, float *y, int32_t n)
{
    const tsl_vf rv = tsl_vf_set(r);
    int32_t i = 0;
    for (; i + TSL_VW <= n; i += TSL_VW)
        tsl_vf_st(y + i, tsl_vf_mul(tsl_vf_mul(tsl_vf_ld(x + i), rv), tsl_vf_ld(g + i)));
    return i;
}

/* y[i] = ((x[i] - mean) * r) * g[i] + b[i], i < the returned count */
TSL_VEC_FN int32_t tsl_layernorm_scale_vec(const float *x, const float *g, const float *b, float mean, float r,
                                           float *y, int32_t n)
{
    const tsl_vf m = tsl_vf_set(mean), rv = tsl_vf_set(r);
    int32_t i = 0;
    for (; i + TSL_VW <= n; i += TSL_VW)
        tsl_vf_st(y + i, tsl_vf_add(tsl_vf_mul(tsl_vf_mul(tsl_vf_sub(tsl_vf_ld(x + i), m), rv), tsl_vf_ld(g + i)),
                                    tsl_vf_ld(b + i)));
    return i;
}
#endif

/* sum of x[i] * x[i] in index order, unrolled by 4: one loop test per 4 adds, each add still
 * after the one before */
static float tsl_sum_sq(const float *x, int32_t n)
{
    float s = 0.0f;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s = s + x[i] * x[i];
        s = s + x[i + 1] * x[i + 1];
        s = s + x[i + 2] * x[i + 2];
        s = s + x[i + 3] * x[i + 3];
    }
    for (; i < n; i++) s = s + x[i] * x[i];
    return s;
}

void tsl_rmsnorm_f32(const float *x, const float *g, float eps, float *y, int32_t n)
{
    const float ss = tsl_sum_sq(x, n);
    const float r = tsl_rsqrt(ss / (float)n + eps);
    int32_t i = 0;
#if defined(TSL_VEC_F32)
    if (TSL_VEC_ON) i = tsl_rmsnorm_scale_vec(x, g, r, y, n);
#endif
    for (; i < n; i++) y[i] = (x[i] * r) * g[i];
}

void tsl_layernorm_f32(const float *x, const float *g, const float *b, float eps, float *y, int32_t n)
{
    float s = 0.0f;
    for (int32_t i = 0; i < n; i++) s = s + x[i];
    const float mean = s / (float)n;
    float ss = 0.0f;
    for (int32_t i = 0; i < n; i++) ss = ss + (x[i] - mean) * (x[i] - mean);
    const float r = tsl_rsqrt(ss / (float)n + eps);
    int32_t i = 0;
#if defined(TSL_VEC_F32)
    if (TSL_VEC_ON) i = tsl_layernorm_scale_vec(x, g, b, mean, r, y, n);
#endif
    for (; i < n; i++) y[i] = ((x[i] - mean) * r) * g[i] + b[i];
}

void tsl_headnorm_f32(float *x, const float *g, const float *b, float eps, int32_t n_heads, int32_t hs,
                      int32_t layer)
{
    for (int32_t h = 0; h < n_heads; h++) {
        float *xh = x + (intptr_t)h * hs;
        if (layer) tsl_layernorm_f32(xh, g, b, eps, xh, hs);
        else tsl_rmsnorm_f32(xh, g, eps, xh, hs);
    }
}
