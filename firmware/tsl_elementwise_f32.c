/* tsl_elementwise_f32.c -- quantize, embed, RoPE, KV store, adds, caps and the MLP nonlinearities. */
#include "tsl_kernels.h"

float tsl_quant_dynamic_f32(const float *x, int8_t *q, int32_t n)
{
    float amax = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        const float a = x[i] >= 0.0f ? x[i] : -x[i];
        amax = a > amax ? a : amax;
    }
    if (amax == 0.0f) {
        for (int32_t i = 0; i < n; i++) q[i] = 0;
        return 0.0f;
    }
    const float inv = 127.0f / amax;
    for (int32_t i = 0; i < n; i++) q[i] = tsl_quant_f32(x[i] * inv);
    return amax / 127.0f;
}

void tsl_dequant_sub_f32(float *x, const int8_t *q, const float *s, int32_t n)
{
    const float sc = *s;
    for (int32_t i = 0; i < n; i++) x[i] = x[i] - (float)q[i] * sc;
}

void tsl_embed_s8(const int8_t *table, const float *scale, int32_t row, float *dst, int32_t n,
                  int32_t accumulate)
{
    const int8_t *r = table + (intptr_t)row * n;
    const float s = scale[row];
    for (int32_t i = 0; i < n; i++) {
        const float v = (float)r[i] * s;
        dst[i] = accumulate ? dst[i] + v : v;
    }
}

void tsl_rope_f32(float *v, int32_t n_heads, int32_t hs, int32_t rot, const float *cs,
                  const float *sn, int32_t interleaved)
{
    const int32_t half = rot / 2;
    for (int32_t h = 0; h < n_heads; h++) {
        float *p = v + h * hs;
        for (int32_t i = 0; i < half; i++) {
            const int32_t i0 = interleaved ? 2 * i : i;
            const int32_t i1 = interleaved ? 2 * i + 1 : i + half;
            const float a = p[i0], b = p[i1];
            p[i0] = a * cs[i] - b * sn[i];
            p[i1] = b * cs[i] + a * sn[i];
        }
    }
}

void tsl_kv_store_s8(const float *x, int8_t *cache, float *scale, int32_t n_heads, int32_t hs,
                     int32_t max_seq, int32_t pos)
{
    for (int32_t h = 0; h < n_heads; h++) {
        const intptr_t row = (intptr_t)h * max_seq + pos % max_seq;
        scale[row] = tsl_quant_dynamic_f32(x + h * hs, cache + row * hs, hs);
    }
}

static float tsl_act(float x, int32_t act)
{
    return act == TSL_ACT_SILU ? tsl_silu(x) : act == TSL_ACT_GELU_TANH ? tsl_gelu_tanh(x) :
           act == TSL_ACT_RELU ? (x > 0.0f ? x : 0.0f) : tsl_gelu_erf(x);
}

void tsl_add_f32(float *x, const float *y, int32_t n)
{
    for (int32_t i = 0; i < n; i++) x[i] = x[i] + y[i];
}

void tsl_softcap_f32(float *x, int32_t n, float cap)
{
    for (int32_t i = 0; i < n; i++) x[i] = cap * tsl_tanh(x[i] / cap);
}

void tsl_act_f32(const float *x, float *y, int32_t n, int32_t act)
{
    for (int32_t i = 0; i < n; i++) y[i] = tsl_act(x[i], act);
}

void tsl_glu_f32(const float *g, const float *u, float *h, int32_t n, int32_t act)
{
    for (int32_t i = 0; i < n; i++) h[i] = tsl_act(g[i], act) * u[i];
}
