/* tsl_norm_f32.c -- RMSNorm and LayerNorm in float32, sums in index order. */
#include "tsl_kernels.h"

void tsl_rmsnorm_f32(const float *x, const float *g, float eps, float *y, int32_t n)
{
    float ss = 0.0f;
    for (int32_t i = 0; i < n; i++) ss = ss + x[i] * x[i];
    const float r = tsl_rsqrt(ss / (float)n + eps);
    for (int32_t i = 0; i < n; i++) y[i] = (x[i] * r) * g[i];
}

void tsl_layernorm_f32(const float *x, const float *g, const float *b, float eps, float *y, int32_t n)
{
    float s = 0.0f;
    for (int32_t i = 0; i < n; i++) s = s + x[i];
    const float mean = s / (float)n;
    float ss = 0.0f;
    for (int32_t i = 0; i < n; i++) ss = ss + (x[i] - mean) * (x[i] - mean);
    const float r = tsl_rsqrt(ss / (float)n + eps);
    for (int32_t i = 0; i < n; i++) y[i] = ((x[i] - mean) * r) * g[i] + b[i];
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
